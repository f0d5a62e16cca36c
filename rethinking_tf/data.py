"""Data sets and the randomization tests (paper section 2.1, appendix A).

A registry of data sets by name (`cifar10`, `imagenet2012`, `digits`,
`image_folder`) and tf.data pipelines that apply the paper's randomizations:

* labels: `true`, `corrupted` (with probability p an example's label is
  replaced by a uniformly random class, which may equal the true one),
  `random` (p = 1);
* inputs: `original`, `shuffled_pixels` (one permutation of pixel positions for
  every train AND test image), `random_pixels` (an independent permutation per
  training image), `gaussian` (each training image replaced by Gaussian noise
  with the per-channel mean and standard deviation of the training set).

Every randomization is keyed by the example's stable index in the full
training set and drawn with stateless ops, so it is fixed across epochs,
identical across runs with the same seed and identical on every replica. Test
labels are never changed.

Choices where the paper is silent (also listed in the README's deviations):
* Gaussian noise is per channel (mean and std of each RGB channel over the
  training set, in [0, 1] pixel units), not clipped.
* Random pixels and Gaussian inputs replace training images only: the test
  set keeps the real images. Shuffled pixels permutes the test images too.
* Pixel permutations act on the stored image (32x32 for CIFAR-10), before the
  28x28 crop, so that a random crop moves over permuted images.
* `train_size=N` takes the first N/k examples of each class in data set order
  (deterministic, independent of the seed); N not divisible by k gives the
  first N mod k classes one extra example.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from rethinking_tf import image_cache as image_cache_lib
from rethinking_tf import native_stderr
from rethinking_tf import registry
# The checks that need no TensorFlow live in `sources`; re-exported here.
from rethinking_tf.sources import (  # noqa: F401  # pylint: disable=unused-import
    _KNOWN_SIZES, DataError, _folder_files, _network_available, check_available, num_test_examples)

LABEL_MODES = registry.LABEL_MODES
INPUT_MODES = registry.INPUT_MODES
CROP_SIZE = registry.CROP_SIZE
# Training batches are gathered this many at a time, then cut apart: the same
# batches, with tf.data's per-element work paid once per chunk (docs/performance.md).
CHUNK_BATCHES = 16
IMAGE_EXTENSIONS = registry.IMAGE_EXTENSIONS
DatasetInfo = registry.DatasetInfo
Randomization = registry.Randomization

# Salts that keep the independent random streams apart.
_SALT_CORRUPT, _SALT_CLASS, _SALT_PERM, _SALT_PIXELS, _SALT_GAUSS, _SALT_CROP = (11, 12, 13, 14, 15,
                                                                                 16)


@dataclasses.dataclass
class Arrays:
  """An in-memory split: uint8 images [N, H, W, 3], int64 labels, int64 indices."""
  images: np.ndarray
  labels: np.ndarray
  index: np.ndarray


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
  return Arrays(images[keep], labels[keep], np.arange(int(keep.sum()), dtype=np.int64))


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
  files, labels, classes = _folder_files(data_dir, split)
  if not files:
    raise DataError(f'--data_dir={data_dir}: no images under {split}/<class>/')
  index = np.arange(len(labels), dtype=np.int64)
  key = image_cache_lib.files_key(files, data_dir) if image_cache else None
  path = image_cache_lib.entry_path(data_dir, split) if key else None
  if key:
    cached = image_cache_lib.load(path, key, len(files))
    if (cached is not None and cached.classes == classes and np.array_equal(cached.labels, labels)):
      return Arrays(cached.images, labels, index)
  images = _decode_files(files)
  if key:
    image_cache_lib.save(path, key, image_cache_lib.Decoded(images, labels, classes))
  return Arrays(images, labels, index)


def _tfds_builder(name: str, data_dir: str | None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder(name, data_dir=data_dir)


def _is_prepared(builder) -> bool:
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
  builder = _tfds_builder('cifar10', data_dir)
  if not _is_prepared(builder):
    builder.download_and_prepare()
  ds = builder.as_dataset(split=split, shuffle_files=False)
  batch = tfds.as_numpy(ds.batch(100_000).take(1).get_single_element())
  labels = batch['label'].astype(np.int64)
  return Arrays(batch['image'], labels, np.arange(len(labels), dtype=np.int64))


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


# ---------------------------------------------------------------------------
# Randomization ops.


def _seed(seed: int, salt: int) -> tf.Tensor:
  return tf.constant([seed, salt], tf.int64)


def label_tables(num_examples: int, num_classes: int,
                 rand: Randomization) -> tuple[tf.Tensor, tf.Tensor]:
  """Per-example (redraw?, random class) tables keyed by stable index.

  Example i gets class `new[i]` when `redraw[i]`, else keeps its label.
  Drawn once with stateless ops: the same for every epoch, run and replica.
  """
  u = tf.random.stateless_uniform([num_examples], _seed(rand.seed, _SALT_CORRUPT))
  redraw = u < rand.label_prob
  new = tf.random.stateless_uniform([num_examples],
                                    _seed(rand.seed, _SALT_CLASS),
                                    minval=0,
                                    maxval=num_classes,
                                    dtype=tf.int64)
  return redraw, new


def randomize_labels(labels: tf.Tensor, index: tf.Tensor, tables: tuple[tf.Tensor,
                                                                        tf.Tensor]) -> tf.Tensor:
  """Applies the label randomization to labels with stable indices `index`."""
  redraw, new = tables
  return tf.where(tf.gather(redraw, index), tf.gather(new, index), labels)


def pixel_permutation(height: int, width: int, seed: int) -> tf.Tensor:
  """The one permutation of pixel positions used by `shuffled_pixels`."""
  return tf.random.experimental.stateless_shuffle(tf.range(height * width), _seed(seed, _SALT_PERM))


def randomize_image(image: tf.Tensor, index: tf.Tensor, rand: Randomization, mean: tf.Tensor,
                    std: tf.Tensor) -> tf.Tensor:
  """Applies the input randomization to one float image in [0, 1].

  Args:
    image: [H, W, C] float32.
    index: the example's stable index (keys the per-example randomness).
    rand: the randomization.
    mean, std: per-channel statistics of the training set (for `gaussian`).
  """
  if rand.inputs == 'original':
    return image
  h, w, c = image.shape
  key = tf.random.experimental.stateless_fold_in(_seed(rand.seed, 0), index)
  if rand.inputs == 'gaussian':
    noise = tf.random.stateless_normal([h, w, c],
                                       tf.random.experimental.stateless_fold_in(key, _SALT_GAUSS))
    return noise * std + mean
  if rand.inputs == 'shuffled_pixels':
    perm = pixel_permutation(h, w, rand.seed)
  else:  # random_pixels
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(h * w), tf.random.experimental.stateless_fold_in(key, _SALT_PIXELS))
  flat = tf.reshape(image, [h * w, c])
  return tf.reshape(tf.gather(flat, perm), [h, w, c])


def standardize(image: tf.Tensor) -> tf.Tensor:
  """Appendix A: centre crop to 28x28, then per-image standardization."""
  h, w = image.shape[-3], image.shape[-2]
  if h != CROP_SIZE or w != CROP_SIZE:
    top, left = (h - CROP_SIZE) // 2, (w - CROP_SIZE) // 2
    image = image[..., top:top + CROP_SIZE, left:left + CROP_SIZE, :]
  return tf.image.per_image_standardization(image)


# ---------------------------------------------------------------------------
# Pipelines.


@dataclasses.dataclass
class Pipelines:
  """What the trainer consumes.

  train(initial_epoch): an endless stream of shuffled global batches, epoch
    after epoch from `initial_epoch` on (each epoch's order keyed by its
    number, so a resumed run sees exactly the batches of an uninterrupted one).
  train_eval: the same randomized training set, in order, centre-cropped.
  test: the test set (labels never randomized).
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


def randomized_arrays(name: str,
                      data_dir: str | None,
                      rand: Randomization,
                      train_size: int | None = None,
                      test_size: int | None = None,
                      image_cache: bool = True) -> tuple[Arrays, Arrays, int, float]:
  """Loads a data set and applies the label randomization (arrays, not images).

  `train_size` / `test_size` keep a class-balanced subset (`balanced_subset`);
  `image_cache` as in `load_arrays`.

  Returns (train, test, num_classes, label_noise_fraction) where train.labels
  are already randomized; images are untouched uint8 (see `make_pipelines`
  for the input randomizations).
  """
  _, num_classes = check_available(name, data_dir)
  train = load_arrays(name, 'train', data_dir, image_cache)
  test = load_arrays(name, 'test', data_dir, image_cache)
  full_size = len(train.labels)
  if train_size:
    keep = balanced_subset(train.labels, train_size, num_classes)
    train = Arrays(train.images[keep], train.labels[keep], train.index[keep])
  if test_size:
    keep = balanced_subset(test.labels, test_size, num_classes, split='test')
    test = Arrays(test.images[keep], test.labels[keep], test.index[keep])
  tables = label_tables(full_size, num_classes, rand)
  new_labels = randomize_labels(tf.constant(train.labels), tf.constant(train.index), tables).numpy()
  noise = float(np.mean(new_labels != train.labels)) if len(new_labels) else 0.0
  return Arrays(train.images, new_labels, train.index), test, num_classes, noise


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 images, in [0, 1] units (exact)."""
  values = np.arange(256, dtype=np.float64) / 255.0
  mean, std = [], []
  for c in range(images.shape[-1]):
    counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
    m = counts @ values / counts.sum()
    mean.append(m)
    std.append(np.sqrt(counts @ (values - m)**2 / counts.sum()))
  return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def apply_inputs(arrays: Arrays,
                 rand: Randomization,
                 mean: np.ndarray,
                 std: np.ndarray,
                 is_train: bool,
                 batch: int = 1024) -> tf.data.Dataset:
  """Batches of (float images in [0, 1] with the input randomization, labels).

  The per-example op `randomize_image` runs on every example of a batch,
  keyed by its stable index (vectorized when the op does not depend on it).
  """
  effective = rand if is_train or rand.inputs == 'shuffled_pixels' else (dataclasses.replace(
      rand, inputs='original'))
  mean_t, std_t = tf.constant(mean), tf.constant(std)
  per_example = lambda a: randomize_image(a[0], a[1], effective, mean_t, std_t)

  def fn(images, labels, index):
    images = tf.cast(images, tf.float32) / 255.0
    if effective.inputs == 'shuffled_pixels':
      h, w, c = images.shape[1:]
      flat = tf.reshape(images, [-1, h * w, c])
      perm = pixel_permutation(h, w, effective.seed)
      images = tf.reshape(tf.gather(flat, perm, axis=1), [-1, h, w, c])
    elif effective.inputs != 'original':
      images = tf.map_fn(per_example, (images, index), fn_output_signature=tf.float32)
    return images, labels

  ds = tf.data.Dataset.from_tensor_slices((arrays.images, arrays.labels, arrays.index))
  return ds.batch(batch).map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _collect(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
  """Runs a finite batched (images, labels) pipeline once into numpy arrays."""
  xs, ys = [], []
  for x, y in ds:
    xs.append(x.numpy())
    ys.append(y.numpy())
  return np.concatenate(xs), np.concatenate(ys)


def _variable(array: np.ndarray) -> tf.Variable:
  """A materialized data set table, pinned to the host: tf.data's gathers run
  on the CPU, and without the pin TF would place it on GPU:0 when there is one."""
  with tf.device('/CPU:0'):
    return tf.Variable(array, trainable=False)


def crop_tables(images: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
  """Lookup tables that make the random crop one gather (appendix A).

  For float images [N, H, W, C] with s = W - CROP_SIZE + 1 column offsets:
  `rows[(i * s + col) * H + r]` is row r of image i cut to columns
  [col, col + CROP_SIZE), flattened; uint8 (exact) when every value is k/255,
  as for all inputs but `gaussian`, else float32. `affine[(i * t + row) * s +
  col]` (t = H - CROP_SIZE + 1 row offsets) is (a, b) such that `a * x + b`
  standardizes window (row, col) as `tf.image.per_image_standardization`
  does (mean 0, std max(std, 1/sqrt(#values))), with x the table value.
  Built once per run; they replace per-step gathers and reductions that cost
  more than the MLPs' whole step budget (docs/performance.md).
  """
  n, h, w, c = images.shape
  t, s = h - CROP_SIZE + 1, w - CROP_SIZE + 1
  chunks = range(0, n, chunk)
  as_uint8 = all(
      np.all(np.abs(scaled - np.round(scaled)) < 1e-3)
      for scaled in (images[lo:lo + chunk] * 255.0 for lo in chunks))
  dtype = np.uint8 if as_uint8 else np.float32
  rows = np.empty((n, s, h, CROP_SIZE * c), dtype)
  moments = np.empty((n, t, s, 2))  # float64 window means of x and x^2
  size = CROP_SIZE * CROP_SIZE * c
  for lo in chunks:
    x = images[lo:lo + chunk].astype(np.float64)
    for col in range(s):
      cut = x[:, :, col:col + CROP_SIZE, :].reshape(len(x), h, CROP_SIZE * c)
      rows[lo:lo + chunk, col] = np.round(cut * 255.0) if as_uint8 else cut
    # Window sums from integral images of the per-pixel sums over channels.
    for power, k in ((1, 0), (2, 1)):
      grid = np.zeros((len(x), h + 1, w + 1))
      grid[:, 1:, 1:] = (x**power).sum(-1).cumsum(1).cumsum(2)
      sums = (grid[:, CROP_SIZE:, CROP_SIZE:] - grid[:, :t, CROP_SIZE:] - grid[:, CROP_SIZE:, :s] +
              grid[:, :t, :s])
      moments[lo:lo + chunk, ..., k] = sums / size
  mean, square = moments[..., 0], moments[..., 1]
  std = np.maximum(np.sqrt(np.maximum(square - mean**2, 0.0)), 1.0 / np.sqrt(size))
  scale = 1.0 / std / (255.0 if as_uint8 else 1.0)
  affine = np.stack([scale, -mean / std], axis=-1).astype(np.float32)
  return rows.reshape(n * s * h, CROP_SIZE * c), affine.reshape(n * t * s, 2)


def crop_indices(index: tf.Tensor, offsets: tf.Tensor, height: int,
                 width: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Where the windows at (row, col) `offsets` [B, 2] of images `index` [B]
  are in `crop_tables`' tables: (row ids [B, CROP_SIZE], affine ids [B])."""
  t, s = height - CROP_SIZE + 1, width - CROP_SIZE + 1
  index, row, col = tf.cast(index, tf.int64), offsets[:, 0], offsets[:, 1]
  first = (index * s + col) * height + row
  return first[:, None] + tf.range(CROP_SIZE, dtype=tf.int64), (index * t + row) * s + col


@tf.function(jit_compile=True)
def _standardize_windows(x: tf.Tensor, ab: tf.Tensor) -> tf.Tensor:
  """a * float(x) + b per window (row), fused by XLA into one pass over the
  batch: the cast, multiply and add as three TF ops cost 3x the CPU
  (docs/performance.md)."""
  return tf.cast(x, tf.float32) * ab[:, :1] + ab[:, 1:]


def crop_from_tables(rows: tf.Tensor, affine: tf.Tensor, row_ids: tf.Tensor,
                     affine_ids: tf.Tensor) -> tf.Tensor:
  """The standardized windows [B, CROP_SIZE, CROP_SIZE, C] at `crop_indices`."""
  x = tf.gather(rows, tf.reshape(row_ids, [-1]))
  ab = tf.gather(affine, affine_ids)
  x = _standardize_windows(tf.reshape(x, [tf.shape(affine_ids)[0], -1]), ab)
  return tf.reshape(x, [-1, CROP_SIZE, CROP_SIZE, rows.shape[1] // CROP_SIZE])


def crop_batch(rows: tf.Tensor, affine: tf.Tensor, index: tf.Tensor, offsets: tf.Tensor,
               height: int, width: int) -> tf.Tensor:
  """Standardized CROP_SIZE windows at (row, col) `offsets` [B, 2] of images
  `index` [B], from `crop_tables` of images of size height x width."""
  return crop_from_tables(rows, affine, *crop_indices(index, offsets, height, width))


def random_offsets(n: tf.Tensor, height: int, width: int, seed: tf.Tensor) -> tf.Tensor:
  """Independent uniform (row, col) window offsets [n, 2], one per example."""
  t, s = height - CROP_SIZE + 1, width - CROP_SIZE + 1
  k = tf.random.stateless_uniform([n], seed, minval=0, maxval=t * s, dtype=tf.int64)
  return tf.stack([k // s, k % s], axis=1)


def chunks(tensors, size: int) -> tf.data.Dataset:
  """Consecutive chunks of `size` rows of `tensors` (a tensor or a tuple of
  tensors sharing their first dimension); the last chunk may be short.

  The same elements as `from_tensor_slices(tensors).batch(size)`, without
  tf.data's per-row batching work: on a 50,000-row epoch that work was about
  0.07 ms per 128-image training batch, a few percent of an MLP step. Used to
  cut an epoch's indices into chunks and a gathered chunk into batches.
  """
  first = tf.nest.flatten(tensors)[0]
  n = first.shape[0]  # None inside a tf.data function
  whole = (tf.shape(first)[0] if n is None else n) // size * size
  cut = lambda f: tf.nest.map_structure(f, tensors)
  out = tf.data.Dataset.from_tensor_slices(
      cut(lambda t: tf.reshape(t[:whole], [-1, size, *t.shape[1:]])))
  rest = tf.data.Dataset.from_tensors(cut(lambda t: t[whole:]))
  if n is None:  # Whether a short chunk is left is known only when it runs.
    return out.concatenate(rest.filter(lambda *r: tf.size(r[0]) > 0))
  # Static length: no filter, whose per-iterator cost showed in every
  # evaluation pass (about 6 ms each on the digits).
  return out.concatenate(rest) if whole < n else out


def make_pipelines(name: str,
                   data_dir: str | None,
                   rand: Randomization,
                   batch_size: int,
                   train_size: int | None = None,
                   random_crop: bool = False,
                   eval_batch_size: int | None = None,
                   augment: bool = False,
                   test_size: int | None = None,
                   image_cache: bool = True) -> Pipelines:
  """Builds the train, train-eval and test pipelines of a data set.

  For in-memory data sets the randomization ops run once as a tf.data pass
  and their result is kept in memory (safe because every randomization is
  fixed per example, section 2.1). Each epoch then gathers batches from it in
  an order drawn statelessly from (seed, epoch); the random crop's windows
  (a new one per example per epoch) are keyed by (seed, epoch) too. The whole
  run is reproducible.
  """
  if not DATASETS[name].info.in_memory:
    if test_size:
      raise DataError(f'--test_size applies to in-memory data sets, not --dataset={name}')
    from rethinking_tf import imagenet  # pylint: disable=g-import-not-at-top
    return imagenet.make_pipelines(data_dir, rand, batch_size, train_size, random_crop or augment,
                                   eval_batch_size)
  train, test, num_classes, noise = randomized_arrays(name, data_dir, rand, train_size, test_size,
                                                      image_cache)
  mean, std = channel_stats(train.images)
  eval_batch_size = eval_batch_size or max(batch_size, 1000)
  auto = tf.data.AUTOTUNE
  n = len(train.labels)

  centre = lambda x, y: (standardize(x), y)
  train_raw = apply_inputs(train, rand, mean, std, is_train=True)
  test_x, test_y = map(
      _variable, _collect(apply_inputs(test, rand, mean, std, is_train=False).map(centre, auto)))
  if random_crop:  # One gather per batch from crop_tables (train-eval: centre window).
    images, labels = _collect(train_raw)
    h, w = images.shape[1:3]
    rows, affine = map(_variable, crop_tables(images))
    del images
    train_y = _variable(labels)
    middle = tf.constant([(h - CROP_SIZE) // 2, (w - CROP_SIZE) // 2], tf.int64)
    eval_map = lambda i: (crop_batch(rows, affine, i, tf.tile(middle[None], [tf.shape(i)[0], 1]), h,
                                     w), tf.gather(train_y, i))
  else:
    train_x, train_y = map(_variable, _collect(train_raw.map(centre, auto)))
    eval_map = lambda i: (tf.gather(train_x, i), tf.gather(train_y, i))

  chunk = batch_size * CHUNK_BATCHES

  def epoch(e):
    key = tf.stack([tf.constant(rand.seed, tf.int64), e])
    order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key)
    if not random_crop:
      return chunks(order, chunk)
    # A window per example of the epoch, drawn and located for the whole
    # epoch at once: each chunk is then two gathers and an affine map.
    offsets = random_offsets(n, h, w, tf.random.experimental.stateless_fold_in(key, _SALT_CROP))
    return chunks((order, *crop_indices(order, offsets, h, w)), chunk)

  def gather(i, *crop_ids):
    x = crop_from_tables(rows, affine, *crop_ids) if random_crop else tf.gather(train_x, i)
    return x, tf.gather(train_y, i)

  def train_ds(initial_epoch: int) -> tf.data.Dataset:
    return (tf.data.Dataset.counter(initial_epoch).flat_map(epoch).map(
        gather, num_parallel_calls=auto,
        deterministic=True).flat_map(lambda x, y: chunks((x, y), batch_size)).prefetch(auto))

  index_batches = lambda size, b: chunks(tf.range(size, dtype=tf.int64), b)
  return Pipelines(train=train_ds,
                   train_eval=index_batches(n, eval_batch_size).map(eval_map, auto).prefetch(auto),
                   test=index_batches(len(test.labels), eval_batch_size).map(
                       lambda i: (tf.gather(test_x, i), tf.gather(test_y, i))).prefetch(auto),
                   num_train=n,
                   num_test=len(test.labels),
                   num_classes=num_classes,
                   input_shape=(CROP_SIZE, CROP_SIZE, 3),
                   label_noise_fraction=noise,
                   steps_per_epoch=-(-n // batch_size))


def numpy_arrays(
    name: str,
    data_dir: str | None,
    rand: Randomization,
    train_size: int | None = None,
    image_cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
  """The randomized, preprocessed train and test sets as numpy arrays.

  The same data the training binary sees (centre crop, standardization), for
  the non-training experiments (sections 4 and 5). Returns
  (x_train [N, 28, 28, 3] float32, y_train, x_test, y_test, label_noise_fraction).
  """
  p = make_pipelines(name,
                     data_dir,
                     rand,
                     batch_size=1000,
                     train_size=train_size,
                     image_cache=image_cache)
  xs, ys = [], []
  for ds in (p.train_eval, p.test):
    x, y = zip(*[(a.numpy(), b.numpy()) for a, b in ds])
    xs.append(np.concatenate(x))
    ys.append(np.concatenate(y))
  return xs[0], ys[0], xs[1], ys[1], p.label_noise_fraction
