"""Whether a data set can be loaded, checked without TensorFlow (section 2.1 data).

`check_available` looks at the disk (and, for a CIFAR-10 download, the
network) without reading an image, so that the binaries reject a missing or
malformed data set in the first second, before TensorFlow is imported. An
`image_folder` tree must have the same class folders under train/ and test/,
each holding at least one image; a tfds data set counts as prepared when
`<data_dir>/<name>/<version>/dataset_info.json` exists, the layout tfds
writes.
"""

from __future__ import annotations

import os
import re
import socket
import time

import numpy as np

from rethinking_tf.data import imagenet_prepare
from rethinking_tf import registry

KNOWN_SIZES = {
    'cifar10': (50_000, 10_000),
    'digits': (1_347, 450),
    'imagenet2012': (1_281_167, 50_000)
}
_VERSION = re.compile(r'^\d+\.\d+\.\d+$')


class DataError(ValueError):
  """A data set cannot be used as asked; the message says what to do."""


# The last listing of each split folder, keyed by its class names and the
# modification times of its directories: a run checks a folder, then loads
# it, listing it again.
_LISTINGS: dict[str, tuple[tuple, list[str], np.ndarray]] = {}


def folder_files(data_dir: str, split: str) -> tuple[list[str], np.ndarray, list[str]]:
  """(image paths, class indices, class names) of `<data_dir>/<split>/<class>/`.

  Listing 50,000 files takes a tenth of a second, so a folder is listed once
  per process while its directories keep their modification times (no entry
  added, removed or renamed). As git does with racy timestamps, a listing
  is kept only if its directories were last modified a second or more
  before it: a directory's time has a coarse resolution, and a change right
  after a listing could otherwise leave it unchanged.
  """
  root = os.path.join(data_dir, split)
  classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  mtimes = tuple(os.stat(os.path.join(root, d)).st_mtime_ns for d in ['', *classes])
  stamp = (tuple(classes), mtimes)
  last = _LISTINGS.get(root)
  if last and last[0] == stamp:
    return list(last[1]), last[2].copy(), classes
  listed_at = time.time_ns()
  files, labels = [], []
  for k, name in enumerate(classes):
    names = sorted(f for f in os.listdir(os.path.join(root, name))
                   if f.lower().endswith(registry.IMAGE_EXTENSIONS))
    files += [os.path.join(root, name, f) for f in names]
    labels += [k] * len(names)
  labels = np.asarray(labels, np.int64)
  if max(mtimes) < listed_at - 1_000_000_000:
    _LISTINGS[root] = (stamp, list(files), labels.copy())
  else:
    _LISTINGS.pop(root, None)
  return files, labels, classes


def _network_available(host: str, timeout: float = 3.0) -> bool:
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def tfds_root(data_dir: str | None) -> str:
  """The tfds data_dir: --data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'


def tfds_prepared(name: str, data_dir: str | None) -> bool:
  """Whether tfds has prepared `name` under the data_dir: a version folder
  holding dataset_info.json (tfds' own check also opens the files)."""
  folder = os.path.join(os.path.expanduser(tfds_root(data_dir)), name)
  try:
    versions = os.listdir(folder)
  except OSError:
    return False
  return any(
      _VERSION.match(v) and os.path.isfile(os.path.join(folder, v, 'dataset_info.json'))
      for v in versions)


def _check_image_folder(data_dir: str | None) -> tuple[int, int]:
  if not data_dir or not os.path.isdir(data_dir):
    raise DataError(f'--data_dir={data_dir!r} is not a readable directory; '
                    '--dataset=image_folder needs <data_dir>/{train,test}/<class>/<image>')
  for split in ('train', 'test'):
    if not os.access(os.path.join(data_dir, split), os.R_OK | os.X_OK):
      raise DataError(f'--data_dir={data_dir}: missing readable {split}/ '
                      '(expected <data_dir>/{train,test}/<class>/<image>)')
  files, labels, classes = folder_files(data_dir, 'train')
  _, test_labels, test_classes = folder_files(data_dir, 'test')
  for split, split_labels, names in (('train', labels, classes), ('test', test_labels,
                                                                  test_classes)):
    counts = np.bincount(split_labels, minlength=len(names))
    empty = [name for name, n in zip(names, counts) if not n]
    if empty:
      folder = os.path.join(data_dir, split, empty[0])
      raise DataError(f'--data_dir={data_dir}: class folder {folder} has no images; '
                      f'allowed: class folders holding {"/".join(registry.IMAGE_EXTENSIONS)} '
                      'files (remove the empty folder)')
  if classes != test_classes:
    only = lambda a, b, split: [f'{split}/{c}' for c in a if c not in b]
    differ = only(classes, test_classes, 'train') + only(test_classes, classes, 'test')
    raise DataError(f'--data_dir={data_dir}: train/ and test/ have different '
                    f'class folders ({len(classes)} vs {len(test_classes)}: '
                    f'{", ".join(differ)} has no counterpart); allowed: the same '
                    'class folders in both')
  if not files or len(classes) < 2:
    raise DataError(f'--data_dir={data_dir}: need images in at least 2 class '
                    'folders under train/')
  return len(files), len(classes)


def check_available(name: str, data_dir: str | None) -> tuple[int, int]:
  """Checks, without reading any image, that a data set can be loaded.

  Returns:
    (number of training examples, number of classes).
  Raises:
    DataError with a one-line message saying what to do.
  """
  if name not in registry.DATASET_INFO:
    raise DataError(f'--dataset={name} is unknown; allowed: '
                    f'{", ".join(registry.DATASET_INFO)}')
  if name == 'image_folder':
    return _check_image_folder(data_dir)
  if name == 'imagenet2012':  # Prepared, or archives in place and room to prepare them.
    if not tfds_prepared(name, data_dir) and imagenet_prepare.problem(tfds_root(data_dir)):
      raise DataError(imagenet_prepare.problem(tfds_root(data_dir)))
    return imagenet_prepare.train_examples(tfds_root(data_dir)), 1000
  if name == 'cifar10' and not tfds_prepared(name, data_dir):
    where = tfds_root(data_dir)
    manual = os.path.join(os.path.expanduser(where), 'downloads', 'manual',
                          'cifar-10-binary.tar.gz')
    if not os.path.exists(manual) and not _network_available('www.cs.toronto.edu'):
      raise DataError(f'cifar10 is not prepared in {where} and there is no network to '
                      'download it: run once with network, or place cifar-10-binary.tar.gz '
                      f'in {where}/downloads/manual/, or use --dataset=image_folder '
                      '--data_dir=<a local copy> (see BUILD.md)')
  return KNOWN_SIZES[name][0], registry.DATASET_INFO[name].num_classes


def num_test_examples(name: str, data_dir: str | None) -> int:
  """The size of a data set's test split (call `check_available` first)."""
  if name == 'image_folder':
    return len(folder_files(data_dir, 'test')[0])
  return KNOWN_SIZES[name][1]
