"""In-memory data sets by name (paper section 2.1, appendix A).

Loaders for `digits`, `cifar10` and `image_folder` returning `Arrays`
(uint8 images, labels, stable indices), the class-balanced `train_size`
subset, and `Pipelines`, what the trainer consumes (built by `pipeline` and
`imagenet`). `train_size=N` takes the first N/k examples of each class in
data set order (deterministic, independent of the seed); N not divisible by
k gives the first N mod k classes one extra example.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from rethinking_tf import native_stderr
from rethinking_tf import registry
from rethinking_tf.data import image_cache as image_cache_lib
from rethinking_tf.data.sources import DataError, folder_files

if TYPE_CHECKING:
  import tensorflow_datasets as tfds

DatasetInfo = registry.DatasetInfo


@dataclasses.dataclass
class Arrays:
  """An in-memory split: uint8 images [N, H, W, 3], int64 labels, int64 indices,
  and where the images came from, for the start-up record ('image cache',
  'decoded', ...)."""
  images: np.ndarray
  labels: np.ndarray
  index: np.ndarray
  source: str = ''


@dataclasses.dataclass
class Pipelines:
  """What the trainer consumes.

  train(initial_epoch): an endless stream of shuffled global batches, epoch
    after epoch from `initial_epoch` on (each epoch's order keyed by its
    number, so a resumed run sees exactly the batches of an uninterrupted one).
  train_eval: the same randomized training set, in order, centre-cropped.
  test: the test set (labels never randomized).
  startup: how the pipelines were made, for results.json's `startup`:
    `data_seconds` (loading, `data_from` says from where) and
    `preprocess_seconds` (statistics, randomization, the in-memory tables).
  """
  train: Callable[[int], tf.data.Dataset]
  train_eval: tf.data.Dataset
  test: tf.data.Dataset
  num_train: int
  num_test: int
  num_classes: int
  input_shape: tuple[int, int, int]
  label_noise_fraction: float
  steps_per_epoch: int
  startup: dict[str, float | str] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------
# Loaders.


def _digits(split: str, data_dir: str | None) -> Arrays:
  """scikit-learn's bundled handwritten digits at the CIFAR-10 input shape.

  The 1,797 8x8 images (values 0-16) are scaled to 0-255, resized bilinearly
  to 32x32 and repeated over 3 channels, so they go through exactly the
  CIFAR-10 preprocessing (crop 28x28, standardize). Every 4th example is in
  the test split (450 test, 1,347 train).
  """
  del data_dir
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  bunch = load_digits()
  images = bunch.images.astype(np.float32)[..., None] * (255.0 / 16.0)
  images = tf.image.resize(images, (32, 32), method='bilinear').numpy()
  images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
  labels = bunch.target.astype(np.int64)
  is_test = np.arange(len(labels)) % 4 == 0
  keep = is_test if split == 'test' else ~is_test
  return Arrays(images[keep],
                labels[keep],
                np.arange(int(keep.sum()), dtype=np.int64),
                source='scikit-learn digits')


def _decode_error(path: str, error: Exception) -> DataError:
  """One line naming an image file that cannot be decoded, and why."""
  reason = getattr(error, 'message', None) or str(error)
  reason = re.sub(r'\{\{[^}]*\}\}|\[Op:.*$', '', reason.splitlines()[0] if reason else '')
  reason = reason.strip() or type(error).__name__
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except OSError:
    raw = b''
  if raw.startswith(b'\xff\xd8') and not raw.rstrip(b'\0').endswith(b'\xff\xd9'):
    reason += ' The file ends before the JPEG end marker: it is truncated.'
  return DataError(f'{path}: cannot decode this image ({reason}); allowed: '
                   'complete JPEG, PNG, GIF or BMP files (replace or remove it)')


def _decode_file(path: str) -> tf.Tensor:
  """Decodes one image file as RGB; DataError naming the file if it cannot."""
  try:
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  except tf.errors.OpError as e:
    raise _decode_error(path, e) from None


def _decode_files(files: list[str]) -> np.ndarray:
  """Decodes image files into uint8 [N, H, W, 3] at the first file's size.

  The files are decoded by one parallel tf.data pass. If it fails, the batch
  that failed is decoded again file by file to name the file and the reason.
  """
  size = _decode_file(files[0]).shape[:2]

  def decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    if_resized = tf.cast(tf.round(tf.image.resize(image, size)), tf.uint8)
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
    return tf.cond(same, lambda: tf.ensure_shape(image, (*size, 3)),
                   lambda: tf.ensure_shape(if_resized, (*size, 3)))

  batch = 4096
  ds = tf.data.Dataset.from_tensor_slices(files).map(decode,
                                                     num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True)
  batches = []
  with native_stderr.filtered(_without_libjpeg_notes):
    try:
      for b in ds.batch(batch):
        batches.append(b.numpy())
    except tf.errors.OpError as e:
      # Batches come in order: the failure is in the next one (else anywhere).
      first = len(batches) * batch
      for path in files[first:first + batch] + files[:first] + files[first + batch:]:
        _decode_file(path)
      reason = (e.message.splitlines() or [type(e).__name__])[0]
      raise DataError(f'decoding the {len(files)} images failed ({reason})') from None
  return np.concatenate(batches)


def _without_libjpeg_notes(text: str) -> str:
  """Drops libjpeg's own notes on a bad file ("Improper call to JPEG library in
  state 201"), which it prints to fd 2 whatever the log level: the DataError
  naming the file says it instead."""
  return ''.join(line for line in text.splitlines(keepends=True)
                 if not line.startswith('Improper call to JPEG library'))


def _image_folder(split: str, data_dir: str | None, image_cache: bool = True) -> Arrays:
  """A local tree `<data_dir>/{train,test}/<class>/<image>`, classes sorted.

  Any format `tf.io.decode_image` reads; images are decoded as RGB and must
  share one size (the first image's), else they are resized to it. A file
  that cannot be decoded is a DataError naming it. With `image_cache`, the
  decoded arrays are kept in (and read back from) `image_cache.cache_dir()`.
  """
  files, labels, classes = folder_files(data_dir, split)
  if not files:
    raise DataError(f'--data_dir={data_dir}: no images under {split}/<class>/')
  index = np.arange(len(labels), dtype=np.int64)
  key = image_cache_lib.files_key(files, data_dir) if image_cache else None
  path = image_cache_lib.entry_path(data_dir, split) if key else None
  if key:
    cached = image_cache_lib.load(path, key, len(files))
    if (cached is not None and cached.classes == classes and np.array_equal(cached.labels, labels)):
      return Arrays(cached.images, labels, index, 'image cache')
  images = _decode_files(files)
  if key:
    image_cache_lib.save(path, key, image_cache_lib.Decoded(images, labels, classes))
  return Arrays(images, labels, index, 'decoded')


def tfds_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The tensorflow-datasets builder of `name` under `data_dir`."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder(name, data_dir=data_dir)


def is_prepared(builder) -> bool:
  """builder.is_prepared(), without tfds' warning about an unprepared folder."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return builder.is_prepared()
  finally:
    logging.set_verbosity(verbosity)


def _cifar10(split: str, data_dir: str | None) -> Arrays:
  """CIFAR-10 from tensorflow-datasets (downloaded on first use)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds_builder('cifar10', data_dir)
  if not is_prepared(builder):
    builder.download_and_prepare()
  ds = builder.as_dataset(split=split, shuffle_files=False)
  batch = tfds.as_numpy(ds.batch(100_000).take(1).get_single_element())
  labels = batch['label'].astype(np.int64)
  return Arrays(batch['image'],
                labels,
                np.arange(len(labels), dtype=np.int64),
                source='tensorflow-datasets')


@dataclasses.dataclass(frozen=True)
class _Entry:
  info: DatasetInfo
  load: Callable[[str, str | None], Arrays] | None


_LOADERS = {
    'cifar10': _cifar10,
    'digits': _digits,
    'image_folder': _image_folder,
    'imagenet2012': None
}  # imagenet2012 is streamed (imagenet.py).
DATASETS: dict[str, _Entry] = {
    name: _Entry(info, _LOADERS[name]) for name, info in registry.DATASET_INFO.items()
}


def load_arrays(name: str,
                split: str,
                data_dir: str | None = None,
                image_cache: bool = True) -> Arrays:
  """Loads an in-memory data set split ('train' or 'test').

  `image_cache`: keep an image_folder's decoded arrays in the user's cache
  directory and read them back when its files are unchanged (`image_cache`).
  """
  entry = DATASETS[name]
  if entry.load is None:
    raise DataError(f'{name} is streamed, not loaded into memory')
  if entry.load is _image_folder:
    return _image_folder(split, data_dir, image_cache=image_cache)
  return entry.load(split, data_dir)


def balanced_subset(labels: np.ndarray,
                    size: int,
                    num_classes: int,
                    split: str = 'train') -> np.ndarray:
  """Indices of a deterministic class-balanced subset of `size` examples.

  The first size // k examples of each class in data set order, and one more
  for the first size % k classes. Returned in data set order.
  """
  if size > len(labels):
    noun = 'training' if split == 'train' else split
    raise DataError(f'--{split}_size={size} exceeds the {len(labels)} {noun} examples')
  keep = []
  for k in range(num_classes):
    want = size // num_classes + (1 if k < size % num_classes else 0)
    members = np.flatnonzero(labels == k)
    if want > len(members):
      raise DataError(f'--{split}_size={size}: class {k} has only {len(members)} '
                      f'examples, {want} needed for a balanced subset')
    keep.append(members[:want])
  return np.sort(np.concatenate(keep))
