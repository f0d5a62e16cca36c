"""ImageNet pipelines for Table 2 (paper section 2.2), streamed from tensorflow-datasets.

The `imagenet2012` builder's prepared split is read as encoded JPEGs and
decoded once per use, with Inception preprocessing at 299x299 (TF-slim's):

* evaluation (and training without `augment`): the central 87.5% of the
  decoded image, resized once;
* training with `augment` (Table 2's "data augmentation"): a distorted
  bounding box sampled on the decoded original (area 5-100%, aspect
  3/4-4/3, at least 10% of the image), cut out while decoding, resized
  once, flipped left-right half of the time.

Pixels are then scaled to [-1, 1].

Every example has a stable id: the FarmHash Fingerprint64 of tfds'
`file_name` feature (e.g. `n01440764_10026.JPEG`), the same in every
preparation, shard order, machine and worker. All per-example randomness is
stateless and keyed by it: the label randomization by (seed, id), the
pixel randomizations by (seed, id) (they act on the evaluation-style image,
before augmentation, as in `randomize`), and the augmentation by (seed, id,
epoch). Epoch e's order is tfds' file order through a shuffle buffer seeded
by (seed, e), batched within the epoch; so `train(k)` is exactly what an
uninterrupted run sees from epoch k on, and a resumed run matches it.
Gaussian inputs use ImageNet's per-channel statistics (mean 0.485, 0.456,
0.406; std 0.229, 0.224, 0.225 in [0, 1] units).

Under several workers (`sharding`, `training.loop.Loop.distribute`) each
worker still forms every global batch from the encoded examples (reading all
JPEG bytes, in the same order as a one-worker run) but decodes and augments
only the examples of its own replicas: the decoding, the costly part, is
divided by the number of workers, the reading is not, and the batches are
those of a one-worker run for any number of workers (tfds' per-worker file
sharding would divide the reading too, but change the order with the
number of workers). The same holds for the train-eval and test passes.

`train_size`: a class-balanced subset of the classes present in the
prepared split, the examples of smallest id in each class, chosen from a
pass over (file_name, label) with the images left encoded, and filtered
before decoding. That pass also measures `label_noise_fraction` when labels
are randomized. The data set is prepared first if only its archives are in
place (`imagenet_prepare`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rethinking_tf import registry
from rethinking_tf.data import imagenet_prepare
from rethinking_tf.data import loaders
from rethinking_tf.data import randomize
from rethinking_tf.data import sharding
from rethinking_tf.data import sources

IMAGE_SIZE = 299
NUM_CLASSES = 1000
CENTRAL_FRACTION = 0.875
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SHUFFLE_BUFFER = 10_000
_SALT_CORRUPT, _SALT_CLASS, _SALT_AUGMENT, _SALT_ORDER = 21, 22, 23, 24


def example_id(file_name: tf.Tensor) -> tf.Tensor:
  """Stable int64 id of an example from its file name (Fingerprint64, platform-independent)."""
  return tf.strings.to_hash_bucket_fast(file_name, np.iinfo(np.int64).max)


def _key(seed: int, salt: int, *data_: tf.Tensor) -> tf.Tensor:
  key = tf.constant([seed, salt], tf.int64)
  for d in data_:
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(d, tf.int64))
  return key


def randomize_label(label: tf.Tensor, ex_id: tf.Tensor, rand: registry.Randomization) -> tf.Tensor:
  """The label randomization of section 2.1 for one example, keyed by (seed, id)."""
  if rand.label_prob == 0:
    return label
  redraw = tf.random.stateless_uniform([], _key(rand.seed, _SALT_CORRUPT, ex_id)) < rand.label_prob
  new = tf.random.stateless_uniform([],
                                    _key(rand.seed, _SALT_CLASS, ex_id),
                                    minval=0,
                                    maxval=NUM_CLASSES,
                                    dtype=tf.int64)
  return tf.where(redraw, new, tf.cast(label, tf.int64))


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
  return tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), [size, size])


def eval_image(encoded: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
  """Encoded JPEG -> float [0, 1]: central 87.5% of the decoded image, one resize."""
  image = tf.io.decode_jpeg(encoded, channels=3)
  return _resize(tf.image.central_crop(image, CENTRAL_FRACTION), size)


def distorted_box(shape: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(begin, size) of an Inception distorted bounding box of an image of `shape`."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape,
      tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=key,
      min_object_covered=0.1,
      aspect_ratio_range=(0.75, 1.33),
      area_range=(0.05, 1.0),
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  return begin, size


def train_image(encoded: tf.Tensor, key: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
  """Encoded JPEG -> float [0, 1]: distorted box of the original, one resize, flip."""
  begin, box = distorted_box(tf.image.extract_jpeg_shape(encoded), key)
  window = tf.stack([begin[0], begin[1], box[0], box[1]])
  image = _resize(tf.image.decode_and_crop_jpeg(encoded, window, channels=3), size)
  return tf.image.stateless_random_flip_left_right(image,
                                                   tf.random.experimental.stateless_fold_in(key, 1))


def augment_decoded(image: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
  """The same augmentation of an already decoded [0, 1] image (randomized inputs)."""
  begin, box = distorted_box(tf.shape(image), key)
  out = _resize(tf.slice(image, begin, box), image.shape[0])
  return tf.image.stateless_random_flip_left_right(out,
                                                   tf.random.experimental.stateless_fold_in(key, 1))


def _scale(image: tf.Tensor) -> tf.Tensor:
  return image * 2.0 - 1.0


def _encoded(builder, split: str) -> tf.data.Dataset:
  """(id, label, encoded JPEG) of a prepared split, in tfds' file order."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split,
                          shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  return ds.map(lambda ex: (example_id(ex['file_name']), ex['label'], ex['image']),
                num_parallel_calls=tf.data.AUTOTUNE)


def _ids_and_labels(builder, split: str,
                    rand: registry.Randomization) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(ids, labels, randomized labels) of a split, images left encoded."""
  ds = _encoded(builder, split).map(lambda i, y, _: (i, y, randomize_label(y, i, rand)),
                                    num_parallel_calls=tf.data.AUTOTUNE).batch(65536)
  parts = [tuple(t.numpy() for t in batch) for batch in ds]
  return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def balanced_ids(ids: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
  """Sorted ids of a class-balanced subset of `size` examples (see the module doc)."""
  if size > len(ids):
    raise sources.DataError(f'--train_size={size} exceeds the {len(ids)} training examples of '
                            f'the prepared imagenet2012; allowed: 0 (all) to {len(ids)}')
  classes = np.unique(labels)
  keep = []
  for j, k in enumerate(classes):
    want = size // len(classes) + (1 if j < size % len(classes) else 0)
    members = np.sort(ids[labels == k])
    if want > len(members):
      raise sources.DataError(
          f'--train_size={size}: class {k} has only {len(members)} examples, '
          f'{want} needed for a subset balanced over the {len(classes)} classes')
    keep.append(members[:want])
  return np.sort(np.concatenate(keep))


def _is_member(sorted_ids: tf.Tensor, ex_id: tf.Tensor) -> tf.Tensor:
  at = tf.minimum(tf.searchsorted(sorted_ids, ex_id[None])[0], tf.size(sorted_ids) - 1)
  return tf.equal(sorted_ids[at], ex_id)


def _batches(encoded: tf.data.Dataset,
             image_fn,
             batch_size: int,
             image_size: int,
             context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
  """Batches of (id, label, JPEG) examples, each image decoded by image_fn(id, JPEG).

  Without `context`: the global (images, labels) batches. With it: this
  worker's replica slices of them, (images, labels, n) as `sharding.split`
  cuts them. The global batches are formed from the encoded examples (every
  worker reads all of them); only this worker's range of each
  (`sharding.worker_range`) is decoded, then batched again: all its ranges
  have `sharding.worker_size` examples but the last, which has fewer (an
  empty one stands in as one placeholder, decoded and dropped).
  """
  if context is None:
    return encoded.map(lambda i, y, x: (image_fn(i, x), y),
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).batch(batch_size)
  size = sharding.worker_size(batch_size, context)

  def mine(i, y, x):
    """This worker's range of a global batch, or a placeholder for an empty one."""
    n = tf.shape(i)[0]
    start, end = sharding.worker_range(n, context)
    take = tf.maximum(end - start, 1)
    first = tf.minimum(start, n - 1)
    keep = tf.range(take) < end - start
    return (i[first:first + take], y[first:first + take], x[first:first + take], keep,
            tf.fill([take], n), tf.fill([take], start))

  def decode(i, y, x, keep, n, start):
    # A placeholder is decoded too (once a pass at most) and dropped: a
    # tf.cond here made every decode slower.
    k = tf.cast(keep, tf.int32)
    return image_fn(i, x)[None][:k], tf.reshape(y, [1])[:k], n, start

  def regroup(images, labels, n, start):
    shape = [-1, image_size, image_size, 3]
    return tf.reshape(images, shape), tf.reshape(labels, [-1]), n[0], start[0]

  decoded = encoded.batch(batch_size).map(mine).unbatch().map(decode,
                                                              num_parallel_calls=tf.data.AUTOTUNE,
                                                              deterministic=True)
  return decoded.batch(size).map(regroup).flat_map(
      lambda x, y, n, start: sharding.split(x, y, n, start, context))


def _builder(data_dir: str | None):
  builder = loaders.tfds_builder('imagenet2012', data_dir)
  if not loaders.is_prepared(builder):
    root = sources.tfds_root(data_dir)
    why = imagenet_prepare.problem(root)
    if why:
      raise sources.DataError(why)
    imagenet_prepare.prepare(builder, root)
  return builder


def make_pipelines(data_dir: str | None,
                   rand: registry.Randomization,
                   batch_size: int,
                   train_size: int | None,
                   augment: bool,
                   eval_batch_size: int | None = None,
                   image_size: int = IMAGE_SIZE) -> loaders.Pipelines:
  """Streams imagenet2012 with the randomizations; see `pipeline.make_pipelines`."""
  builder = _builder(data_dir)
  num_full = builder.info.splits['train'].num_examples
  train = _encoded(builder, 'train')
  noise = 0.0
  if train_size or rand.label_prob:
    ids, labels, new = _ids_and_labels(builder, 'train', rand)
    if train_size:
      keep = balanced_ids(ids, labels, train_size)
      members = np.isin(ids, keep)
      labels, new = labels[members], new[members]
      keep = tf.constant(keep)
      train = train.filter(lambda i, y, x: _is_member(keep, i))
    noise = float(np.mean(new != labels))
  num_train = train_size or num_full
  mean, std = tf.constant(MEAN), tf.constant(STD)
  pixels = rand.inputs != 'original'

  # Labels are randomized in the stream (keyed by id); images stay encoded
  # until after the shuffle, so a shuffle window holds JPEG bytes only.
  train = train.map(lambda i, y, x: (i, randomize_label(y, i, rand), x),
                    num_parallel_calls=tf.data.AUTOTUNE)

  def fixed_pixels(i, x):
    """The evaluation-style image with its fixed pixel randomization (section 2.1)."""
    return randomize.randomize_image(eval_image(x, image_size), i, rand, mean, std)

  def fixed_image(i, x):
    return _scale(fixed_pixels(i, x))

  def train_image_of(e):
    """Example (id, JPEG) -> image in epoch e: its augmentation keyed by (seed, id, e)."""

    def fn(i, x):
      if not augment:
        return fixed_image(i, x)
      key = _key(rand.seed, _SALT_AUGMENT, i, e)
      if pixels:
        return _scale(augment_decoded(fixed_pixels(i, x), key))
      return _scale(train_image(x, key, image_size))

    return fn

  def permute(e, w, i, y, x):
    """Window w of epoch e in a stateless order keyed by (seed, e, w)."""
    order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(i)[0]),
                                                     _key(rand.seed, _SALT_ORDER, e, w))
    return tf.gather(i, order), tf.gather(y, order), tf.gather(x, order)

  def epoch_order(e):
    """(id, label, JPEG) of epoch e in its order: cheap, no image decoded."""
    return train.batch(SHUFFLE_BUFFER).enumerate().map(lambda w, b: permute(e, w, *b)).unbatch()

  def train_ds(initial_epoch: int) -> tf.data.Dataset:
    epochs = tf.data.Dataset.counter(initial_epoch)

    def stream(context=None):
      return epochs.flat_map(lambda e: _batches(epoch_order(e), train_image_of(e), batch_size,
                                                image_size, context)).prefetch(tf.data.AUTOTUNE)

    return sharding.set_per_worker(stream(), stream)

  test_rand = rand if rand.inputs == 'shuffled_pixels' else registry.Randomization(seed=rand.seed)

  def test_image(i, x):
    return _scale(randomize.randomize_image(eval_image(x, image_size), i, test_rand, mean, std))

  def in_order(encoded, image_fn):
    """Batches in the split's order, also buildable per worker."""

    def batches(context=None):
      return _batches(encoded, image_fn, eval_batch_size or batch_size, image_size,
                      context).prefetch(tf.data.AUTOTUNE)

    return sharding.set_per_worker(batches(), batches)

  return loaders.Pipelines(train=train_ds,
                           train_eval=in_order(train, fixed_image),
                           test=in_order(_encoded(builder, 'validation'), test_image),
                           num_train=num_train,
                           num_test=builder.info.splits['validation'].num_examples,
                           num_classes=NUM_CLASSES,
                           input_shape=(image_size, image_size, 3),
                           label_noise_fraction=noise,
                           steps_per_epoch=-(-num_train // batch_size))
