"""The train, train-eval and test pipelines of a run (paper section 2.1, appendix A).

For in-memory data sets (`loaders`) the randomizations (`randomize`) run once
and their result is kept in memory; each epoch gathers batches from it in an
order drawn statelessly from (seed, epoch), through the crop tables (`crop`)
for `random_crop`. `imagenet2012` is streamed (`imagenet`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from rethinking_tf import registry
from rethinking_tf.data import crop as crop_lib
from rethinking_tf.data import imagenet
from rethinking_tf.data import loaders
from rethinking_tf.data import randomize
from rethinking_tf.data import sources

CROP_SIZE = registry.CROP_SIZE
# Training batches are gathered this many at a time, then cut apart: the same
# batches, with tf.data's per-element work paid once per chunk (docs/performance.md).
CHUNK_BATCHES = 16
# tf.data converts the functions it is given with autograph unless told not
# to; these have no Python control flow on tensors, so converting them would
# only cost start-up time (parsing and rewriting their source).
_unconverted = tf.autograph.experimental.do_not_convert
Arrays = loaders.Arrays
Pipelines = loaders.Pipelines
Randomization = registry.Randomization


class DeferredTestPipelines(Pipelines):
  """`Pipelines` whose test set is standardized when `test` is first read.

  The trainer first reads it at its first evaluation, so training starts
  without waiting for the test set's copy; the seconds that copy took are
  then `startup['test_preprocess_seconds']`, measured when it happens.
  """

  def __init__(self, make_test: Callable[[], tf.data.Dataset], **fields):
    self._make_test = make_test
    super().__init__(test=None, **fields)

  @property
  def test(self) -> tf.data.Dataset:
    """The test set's dataset, made (and timed) at the first read."""
    if self._test is None:
      start = time.perf_counter()
      self._test = self._make_test()
      self.startup['test_preprocess_seconds'] = time.perf_counter() - start
    return self._test

  @test.setter
  def test(self, value: tf.data.Dataset | None) -> None:
    self._test = value


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
  _, num_classes = sources.check_available(name, data_dir)
  train = loaders.load_arrays(name, 'train', data_dir, image_cache)
  test = loaders.load_arrays(name, 'test', data_dir, image_cache)
  full_size = len(train.labels)
  if train_size:
    keep = loaders.balanced_subset(train.labels, train_size, num_classes)
    train = Arrays(train.images[keep], train.labels[keep], train.index[keep], source=train.source)
  if test_size:
    keep = loaders.balanced_subset(test.labels, test_size, num_classes, split='test')
    test = Arrays(test.images[keep], test.labels[keep], test.index[keep], source=test.source)
  tables = randomize.label_tables(full_size, num_classes, rand)
  new_labels = randomize.randomize_labels(tf.constant(train.labels), tf.constant(train.index),
                                          tables).numpy()
  noise = float(np.mean(new_labels != train.labels)) if len(new_labels) else 0.0
  return dataclasses.replace(train, labels=new_labels), test, num_classes, noise


def _input_fn_is_scaling(rand: Randomization, is_train: bool) -> bool:
  """Whether `_input_fn(rand, ..., is_train)` only scales the images to [0, 1]."""
  return rand.inputs == 'original' or not (is_train or rand.inputs == 'shuffled_pixels')


def _input_fn(
    rand: Randomization, mean: np.ndarray | None, std: np.ndarray | None,
    is_train: bool) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
  """(uint8 images, labels, index) -> (float images in [0, 1], randomized; labels)."""
  effective = rand if is_train or rand.inputs == 'shuffled_pixels' else (dataclasses.replace(
      rand, inputs='original'))
  mean_t, std_t = (None, None) if mean is None else (tf.constant(mean), tf.constant(std))
  per_example = lambda a: randomize.randomize_image(a[0], a[1], effective, mean_t, std_t)

  def fn(images, labels, index):
    images = tf.cast(images, tf.float32) / 255.0
    if effective.inputs == 'shuffled_pixels':
      h, w, c = images.shape[1:]
      flat = tf.reshape(images, [-1, h * w, c])
      perm = randomize.pixel_permutation(h, w, effective.seed)
      images = tf.reshape(tf.gather(flat, perm, axis=1), [-1, h, w, c])
    elif effective.inputs != 'original':
      images = tf.map_fn(per_example, (images, index), fn_output_signature=tf.float32)
    return images, labels

  return fn


def apply_inputs(arrays: Arrays,
                 rand: Randomization,
                 mean: np.ndarray | None,
                 std: np.ndarray | None,
                 is_train: bool,
                 batch: int = 1024) -> tf.data.Dataset:
  """Batches of (float images in [0, 1] with the input randomization, labels).

  The per-example op `randomize_image` runs on every example of a batch,
  keyed by its stable index (vectorized when the op does not depend on it).
  `mean`, `std`: the training set's `channel_stats`, which only `gaussian`
  inputs use (None otherwise).
  """
  ds = tf.data.Dataset.from_tensor_slices((arrays.images, arrays.labels, arrays.index))
  return ds.batch(batch).map(_input_fn(rand, mean, std, is_train),
                             num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)


def materialize(arrays: Arrays,
                rand: Randomization,
                mean: np.ndarray | None,
                std: np.ndarray | None,
                is_train: bool,
                centre: bool = True,
                batch: int = 1024) -> tuple[tf.Tensor, tf.Tensor]:
  """The whole randomized set as two host tensors: (images, labels).

  The same ops, in the same batches, as `apply_inputs` (then `standardize`
  when `centre`), run eagerly batch after batch into one tensor: no tf.data
  pass, numpy copy or concatenation in between (section 2.1's
  randomizations are fixed per example, so this runs once per run).
  """
  fn = _input_fn(rand, mean, std, is_train)
  # Without an input randomization the images are only scaled, elementwise:
  # cropping the uint8 images first gives the same numbers with less work.
  crop_first = centre and _input_fn_is_scaling(rand, is_train)

  def step(x, y, i):
    x, y = fn(randomize.centre_crop(x) if crop_first else x, y, i)
    return (randomize.standardize(x) if centre else x), y

  if is_train and rand.inputs in ('gaussian', 'random_pixels'):  # per-example ops: traced once
    shape = arrays.images.shape[1:]
    step = tf.function(step,
                       autograph=False,
                       input_signature=(tf.TensorSpec(
                           (None, *shape), tf.uint8), tf.TensorSpec((None,), arrays.labels.dtype),
                                        tf.TensorSpec((None,), arrays.index.dtype)))
  n = len(arrays.labels)
  with tf.device('/CPU:0'):
    parts = [
        step(arrays.images[s:s + batch], arrays.labels[s:s + batch], arrays.index[s:s + batch])
        for s in range(0, max(n, 1), batch)
    ]
    if len(parts) == 1:
      return tuple(tf.convert_to_tensor(t) for t in parts[0])
    return tf.concat([p[0] for p in parts], 0), tf.concat([p[1] for p in parts], 0)


def _variable(array: np.ndarray | tf.Tensor) -> tf.Variable:
  """A materialized data set table, pinned to the host: tf.data's gathers run
  on the CPU, and without the pin TF would place it on GPU:0 when there is one."""
  with tf.device('/CPU:0'):
    return tf.Variable(array, trainable=False)


def chunks(tensors: tf.Tensor | tuple[tf.Tensor, ...], size: int) -> tf.data.Dataset:
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
    return out.concatenate(rest.filter(_unconverted(lambda *r: tf.size(r[0]) > 0)))
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

  For in-memory data sets the randomization ops run once (`materialize`)
  and their result is kept in memory (safe because every randomization is
  fixed per example, section 2.1); the test set's, when `test` is first read
  (`DeferredTestPipelines`). Each epoch then gathers batches from it in
  an order drawn statelessly from (seed, epoch); the random crop's windows
  (a new one per example per epoch) are keyed by (seed, epoch) too. The whole
  run is reproducible.
  """
  if not loaders.DATASETS[name].info.in_memory:
    if test_size:
      raise sources.DataError(f'--test_size applies to in-memory data sets, not --dataset={name}')
    return imagenet.make_pipelines(data_dir, rand, batch_size, train_size, random_crop or augment,
                                   eval_batch_size)
  start = time.perf_counter()
  train, test, num_classes, noise = randomized_arrays(name, data_dir, rand, train_size, test_size,
                                                      image_cache)
  loaded = time.perf_counter()
  # The channel statistics shape the gaussian inputs only.
  mean, std = randomize.channel_stats(train.images) if rand.inputs == 'gaussian' else (None, None)
  eval_batch_size = eval_batch_size or max(batch_size, 1000)
  auto = tf.data.AUTOTUNE
  n = len(train.labels)

  if random_crop:  # One gather per batch from crop_tables (train-eval: centre window).
    images, labels = (
        np.asarray(t) for t in materialize(train, rand, mean, std, True, centre=False))
    h, w = images.shape[1:3]
    rows, affine = map(_variable, crop_lib.crop_tables(images))
    del images
    train_y = _variable(labels)
    middle = tf.constant([(h - CROP_SIZE) // 2, (w - CROP_SIZE) // 2], tf.int64)
    eval_map = _unconverted(lambda i: (crop_lib.crop_batch(
        rows, affine, i, tf.tile(middle[None], [tf.shape(i)[0], 1]), h, w), tf.gather(train_y, i)))
  else:
    train_x, train_y = map(_variable, materialize(train, rand, mean, std, is_train=True))
    eval_map = _unconverted(lambda i: (tf.gather(train_x, i), tf.gather(train_y, i)))

  chunk = batch_size * CHUNK_BATCHES

  @_unconverted
  def epoch(e):
    key = tf.stack([tf.constant(rand.seed, tf.int64), e])
    order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key)
    if not random_crop:
      return chunks(order, chunk)
    # A window per example of the epoch, drawn and located for the whole
    # epoch at once: each chunk is then two gathers and an affine map.
    offsets = crop_lib.random_offsets(
        n, h, w, tf.random.experimental.stateless_fold_in(key, randomize.SALT_CROP))
    return chunks((order, *crop_lib.crop_indices(order, offsets, h, w)), chunk)

  @_unconverted
  def gather(i, *crop_ids):
    x = crop_lib.crop_from_tables(rows, affine, *crop_ids) if random_crop else tf.gather(train_x, i)
    return x, tf.gather(train_y, i)

  def train_ds(initial_epoch: int) -> tf.data.Dataset:
    return (tf.data.Dataset.counter(initial_epoch).flat_map(epoch).map(
        gather, num_parallel_calls=auto, deterministic=True).flat_map(
            _unconverted(lambda x, y: chunks((x, y), batch_size))).prefetch(auto))

  index_batches = lambda size, b: chunks(tf.range(size, dtype=tf.int64), b)
  train_eval = index_batches(n, eval_batch_size).map(eval_map, auto).prefetch(auto)

  def test_ds() -> tf.data.Dataset:
    test_x, test_y = map(_variable, materialize(test, rand, mean, std, is_train=False))
    return index_batches(len(test.labels), eval_batch_size).map(
        _unconverted(lambda i: (tf.gather(test_x, i), tf.gather(test_y, i)))).prefetch(auto)

  origins = dict.fromkeys((train.source, test.source))
  return DeferredTestPipelines(test_ds,
                               train=train_ds,
                               train_eval=train_eval,
                               num_train=n,
                               num_test=len(test.labels),
                               num_classes=num_classes,
                               input_shape=(CROP_SIZE, CROP_SIZE, 3),
                               label_noise_fraction=noise,
                               steps_per_epoch=-(-n // batch_size),
                               startup={
                                   'data_seconds': loaded - start,
                                   'data_from': (', '.join(origins) if len(origins) == 1 else
                                                 f'train: {train.source}, test: {test.source}'),
                                   'preprocess_seconds': time.perf_counter() - loaded
                               })


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
