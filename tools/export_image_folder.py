#!/usr/bin/env python
"""CIFAR-10 (section 3's data set) as an `image_folder` tree, for offline runs.

    python tools/export_image_folder.py --archive=cifar-10-python.tar.gz --out=DIR
    python tools/export_image_folder.py --archive=cifar-10-binary.tar.gz --out=DIR
    python tools/export_image_folder.py --source=tfds [--data_dir=TFDS_DIR] --out=DIR

writes `DIR/{train,test}/<class>/<NNNNN>.png`, the layout that
`python -m rethinking_tf.train --dataset=image_folder --data_dir=DIR` reads:

* Sources: the official CIFAR-10 archive from www.cs.toronto.edu/~kriz/cifar.html
  (the python or the binary version, recognised by its contents; read with
  tarfile and NumPy, no network), or tensorflow-datasets' `cifar10` (needs the
  network once to download it into `--data_dir`, or a prepared copy there).
* Class folders are CIFAR-10's label names. Their alphabetical order (airplane
  automobile bird cat deer dog frog horse ship truck) is the label order, and
  `image_folder` numbers classes in sorted order, so labels are unchanged; a
  source whose names are not in alphabetical order is refused.
* `<NNNNN>` is the image's index in its split of the source, so sorted file
  names keep the source's order within each class.
* PNG is lossless: the decoded pixels equal the source's exactly. Encoder:
  `tf.io.encode_png`, TensorFlow's libpng, already installed with the package
  (Pillow is not a declared dependency, and matplotlib's `imsave` goes through
  Pillow); it is the same library that decodes the tree in the pipeline.
  About 0.15 ms per image, 60,000 images in well under a minute.
* Atomic: the tree is written to `DIR.partial-XXXX` beside DIR and renamed to
  DIR when every image is written, so DIR exists only complete. An export that
  is killed leaves only the `.partial-` directory (delete it). A non-empty DIR
  is refused unless `--overwrite`, which replaces only an earlier export (a
  directory holding nothing but train/ and test/).
* The python archive is a pickle: it is read with an unpickler that accepts
  only NumPy arrays, lists, dicts, numbers and strings
  (it cannot run code).

Bad flags and unreadable sources are one `error:` line on stderr, exit 2,
before anything is written.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rethinking_tf import cli  # noqa: E402  # pylint: disable=wrong-import-position

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                   'truck')
TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_BATCH = 'test_batch'
IMAGE_BYTES = 32 * 32 * 3
SPLITS = ('train', 'test')

Split = tuple[np.ndarray, np.ndarray]  # images (N, 32, 32, 3) uint8, labels (N,)


class ExportError(Exception):
  """A source or destination that cannot be used; the message is one line."""


class _Parser(argparse.ArgumentParser):

  def error(self, message: str):
    sys.stderr.write(f'error: {message}\n')
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
  p = _Parser(description='Writes CIFAR-10 as <out>/{train,test}/<class>/<NNNNN>.png '
              'for --dataset=image_folder.')
  p.add_argument('--source',
                 choices=('archive', 'tfds'),
                 default='archive',
                 help='archive: the official CIFAR-10 archive (--archive); tfds: '
                 "tensorflow-datasets' cifar10 (downloaded once into --data_dir)")
  p.add_argument('--archive', help='cifar-10-python.tar.gz or cifar-10-binary.tar.gz')
  p.add_argument('--data_dir',
                 help='tensorflow-datasets data_dir for --source=tfds '
                 '(default ~/tensorflow_datasets)')
  p.add_argument('--out', required=True, help='the image folder to create')
  p.add_argument('--overwrite', action='store_true', help='replace an earlier export at --out')
  return p


def _check_flags(args: argparse.Namespace) -> None:
  """Raises ExportError for flags that cannot work, before any data is read."""
  if args.source == 'archive':
    if not args.archive:
      raise ExportError('--source=archive needs --archive; allowed: the path of '
                        'cifar-10-python.tar.gz or cifar-10-binary.tar.gz')
    if not os.path.isfile(args.archive) or not os.access(args.archive, os.R_OK):
      raise ExportError(f'--archive={args.archive} is not a readable file; allowed: '
                        'the path of cifar-10-python.tar.gz or cifar-10-binary.tar.gz')
    if args.data_dir:
      raise ExportError('--data_dir is for --source=tfds; allowed with '
                        '--source=archive: --archive')
  elif args.archive:
    raise ExportError('--archive is for --source=archive; allowed with --source=tfds: '
                      '--data_dir')
  out = os.path.abspath(args.out)
  parent = os.path.dirname(out)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise ExportError(f'--out={args.out}: {parent} is not a writable directory; '
                      'allowed: a new or empty directory in a writable one')
  if os.path.lexists(out):
    if not os.path.isdir(out) or os.path.islink(out):
      raise ExportError(f'--out={args.out} exists and is not a directory; allowed: '
                        'a new or empty directory')
    contents = set(os.listdir(out))
    if contents and not args.overwrite:
      raise ExportError(f'--out={args.out} is not empty; allowed: a new or empty '
                        'directory, or --overwrite to replace an earlier export')
    if contents - set(SPLITS):
      raise ExportError(f'--out={args.out} holds more than train/ and test/, so it is '
                        'not an earlier export; allowed: a new or empty directory')


class _NumpyUnpickler(pickle.Unpickler):
  """Unpickles the python archive's dicts of NumPy arrays and nothing else."""
  _ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode'),
              ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
              ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
              ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer')}

  def find_class(self, module: str, name: str):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'{module}.{name} is not allowed')
    return super().find_class(module, name)


def _chw_to_hwc(rows: np.ndarray) -> np.ndarray:
  """CIFAR-10's rows (1024 red, 1024 green, 1024 blue bytes) as (N, 32, 32, 3)."""
  return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _python_batch(f) -> Split:
  d = _NumpyUnpickler(f, encoding='bytes').load()
  rows = np.asarray(d[b'data'], np.uint8).reshape(-1, IMAGE_BYTES)
  return _chw_to_hwc(rows), np.asarray(d[b'labels'], np.int64)


def _binary_batch(f) -> Split:
  raw = np.frombuffer(f.read(), np.uint8)
  if raw.size % (IMAGE_BYTES + 1):
    raise ValueError(f'{raw.size} bytes is not a whole number of 3073-byte records')
  records = raw.reshape(-1, IMAGE_BYTES + 1)
  return _chw_to_hwc(records[:, 1:]), records[:, 0].astype(np.int64)


def read_archive(path: str) -> tuple[dict[str, Split], tuple[str, ...]]:
  """The official CIFAR-10 archive, python or binary version.

  Returns:
    ({'train': (images, labels), 'test': ...}, label names in label order).
  Raises:
    ExportError if it is not one of the two archives.
  """
  allowed = 'allowed: cifar-10-python.tar.gz or cifar-10-binary.tar.gz'
  try:
    with tarfile.open(path) as tar:
      members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
      if {'batches.meta', *TRAIN_BATCHES, TEST_BATCH} <= members.keys():
        read, suffix = _python_batch, ''
        meta = _NumpyUnpickler(tar.extractfile(members['batches.meta']), encoding='bytes').load()
        names = tuple(n.decode() for n in meta[b'label_names'])
      elif {'batches.meta.txt',
            *(b + '.bin' for b in (*TRAIN_BATCHES, TEST_BATCH))} <= members.keys():
        read, suffix = _binary_batch, '.bin'
        text = tar.extractfile(members['batches.meta.txt']).read().decode()
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
      else:
        raise ExportError(f'--archive={path} holds no CIFAR-10 batches (data_batch_1..5, '
                          f'test_batch, batches.meta); {allowed}')
      parts = {
          split: [read(tar.extractfile(members[b + suffix])) for b in batches]
          for split, batches in (('train', TRAIN_BATCHES), ('test', (TEST_BATCH,)))
      }
  except (tarfile.TarError, OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError,
          UnicodeDecodeError) as e:
    reason = ' '.join(str(e).split()) or type(e).__name__
    raise ExportError(f'--archive={path} cannot be read ({reason}); {allowed}') from e
  splits = {
      s: (np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps]))
      for s, ps in parts.items()
  }
  for split, (images, labels) in splits.items():
    if len(images) != len(labels) or (labels.size and
                                      not 0 <= labels.min() <= labels.max() < len(names)):
      raise ExportError(f'--archive={path}: {split} labels do not match the images or '
                        f'the {len(names)} label names; {allowed}')
  return splits, names


def read_tfds(data_dir: str | None) -> tuple[dict[str, Split], tuple[str, ...]]:
  """tensorflow-datasets' cifar10, downloaded into data_dir on first use."""
  cli.import_tensorflow()  # Before `data` imports it, without the start-up lines.
  from rethinking_tf.data import loaders  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import sources  # pylint: disable=g-import-not-at-top
  try:
    sources.check_available('cifar10', data_dir)
  except sources.DataError as e:
    raise ExportError(str(e)) from e
  splits = {}
  for split in SPLITS:
    arrays = loaders.load_arrays('cifar10', split, data_dir)
    splits[split] = (arrays.images, arrays.labels)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = tuple(tfds.builder('cifar10', data_dir=data_dir).info.features['label'].names)
  if names == tuple(str(k) for k in range(len(names))):  # names not recorded
    names = CIFAR10_CLASSES
  return splits, names


def _check_names(names: Sequence[str]) -> None:
  if (len(set(names)) != len(names) or list(names) != sorted(names) or
      any(not n or os.sep in n or n.startswith('.') for n in names)):
    raise ExportError(f'label names {", ".join(names)} are not distinct folder names '
                      'in alphabetical order, so image_folder would renumber them; '
                      f'allowed: CIFAR-10\'s {" ".join(CIFAR10_CLASSES)}')


def write_tree(root: str, splits: dict[str, Split], names: Sequence[str]) -> None:
  """Writes root/<split>/<class>/<index>.png for every image."""
  tf = cli.import_tensorflow()  # Without TensorFlow's CPU-only start-up lines.
  for split, (images, labels) in splits.items():
    for name in names:
      os.makedirs(os.path.join(root, split, name))
    for i, (image, label) in enumerate(zip(images, labels)):
      with open(os.path.join(root, split, names[label], f'{i:05d}.png'), 'wb') as f:
        f.write(tf.io.encode_png(image).numpy())


def export(splits: dict[str, Split], names: Sequence[str], out: str, overwrite: bool) -> None:
  """Writes the tree beside `out` and renames it to `out` once complete."""
  out = os.path.abspath(out)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + '.partial-', dir=os.path.dirname(out))
  try:
    write_tree(tmp, splits, names)
    old = None
    if os.path.isdir(out):
      if os.listdir(out) and overwrite:
        old = tempfile.mkdtemp(prefix=os.path.basename(out) + '.old-', dir=os.path.dirname(out))
        os.rename(out, os.path.join(old, 'tree'))
      else:
        os.rmdir(out)
    os.rename(tmp, out)
    if old:
      shutil.rmtree(old)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _summary(splits: dict[str, Split], names: Sequence[str]) -> str:
  lines = []
  for split, (_, labels) in splits.items():
    counts = np.bincount(labels, minlength=len(names))
    each = (f'{counts[0]:,} per class' if len(set(counts)) == 1 else 'per class ' +
            ' '.join(f'{n} {c:,}' for n, c in zip(names, counts)))
    lines.append(f'  {split}: {len(labels):,} images ({each})')
  return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Exports CIFAR-10 as an image_folder tree; returns the exit code."""
  args = _parser().parse_args(argv)
  try:
    _check_flags(args)
    if args.source == 'archive':
      splits, names = read_archive(args.archive)
    else:
      splits, names = read_tfds(args.data_dir)
    _check_names(names)
  except ExportError as e:
    sys.stderr.write(f'error: {e}\n')
    return 2
  export(splits, names, args.out, args.overwrite)
  source = args.archive if args.source == 'archive' else 'tensorflow-datasets cifar10'
  print(f'wrote {os.path.abspath(args.out)} from {source}, lossless PNG, '
        f'{len(names)} classes ({" ".join(names)}):\n{_summary(splits, names)}\n'
        f'train on it with --dataset=image_folder --data_dir={args.out}')
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
