"""ImageNet pipelines for Table 2 (paper section 2.2), streamed from tensorflow-datasets.

Inception preprocessing at 299x299: evaluation takes the central 87.5% and
resizes it; `augment` (Table 2's "data augmentation") instead samples a
distorted bounding box (area 5-100%, aspect 3/4-4/3) and flips left-right,
both stateless and keyed per step. Pixels are scaled to [-1, 1].

The randomization tests use the same ops as CIFAR-10 (`randomize`), keyed by
the example's position in the (unshuffled) tfds training split. Pixel
randomizations act on the 299x299 evaluation-style image, before
augmentation; Gaussian inputs use ImageNet's per-channel statistics
(mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225 in [0, 1] units) instead
of a pass over 1.28M images. `train_size` and `label_noise_fraction` need a
pass over the labels (images are not decoded).

Not run here: this machine has no ImageNet. The tests exercise the pipeline on
tensorflow-datasets' mock data.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rethinking_tf import registry
from rethinking_tf.data import loaders
from rethinking_tf.data import randomize

IMAGE_SIZE = 299
NUM_CLASSES = 1000
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SHUFFLE_BUFFER = 10_000


def _scale(image: tf.Tensor) -> tf.Tensor:
  return image * 2.0 - 1.0


def eval_image(image: tf.Tensor) -> tf.Tensor:
  """uint8 image -> float [0, 1], central 87.5% crop resized to 299x299."""
  image = tf.image.convert_image_dtype(image, tf.float32)
  image = tf.image.central_crop(image, 0.875)
  return tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE])


def augment_image(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Inception-style distorted crop and flip of a [0, 1] image, stateless."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image),
      tf.zeros([1, 0, 4]),
      seed=seed,
      min_object_covered=0.1,
      aspect_ratio_range=(0.75, 1.33),
      area_range=(0.05, 1.0),
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, size)
  image = tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE])
  return tf.image.stateless_random_flip_left_right(
      image, tf.random.experimental.stateless_fold_in(seed, 1))


def _labels(builder, split: str) -> np.ndarray:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split,
                          shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  return np.concatenate([b.numpy() for b in ds.map(lambda e: e['label']).batch(65536)])


def _split_size(builder, split: str) -> int:
  """From the prepared metadata; counted (mock data in tests) when absent."""
  try:
    return builder.info.splits[split].num_examples
  except KeyError:
    return int(builder.as_dataset(split=split).reduce(0, lambda n, _: n + 1))


def make_pipelines(data_dir: str | None,
                   rand: registry.Randomization,
                   batch_size: int,
                   train_size: int | None,
                   augment: bool,
                   eval_batch_size: int | None = None) -> loaders.Pipelines:
  """Streams imagenet2012 with the randomizations; see `pipeline.make_pipelines`."""
  builder = loaders.tfds_builder('imagenet2012', data_dir)
  num_full = _split_size(builder, 'train')
  tables = randomize.label_tables(num_full, NUM_CLASSES, rand)
  keep, noise = None, 0.0
  if train_size or rand.labels != 'true':
    labels = _labels(builder, 'train')
    index = np.arange(len(labels))
    if train_size:
      index = loaders.balanced_subset(labels, train_size, NUM_CLASSES)
      keep = tf.scatter_nd(index[:, None], tf.ones(len(index), tf.bool), [num_full])
    new = randomize.randomize_labels(tf.constant(labels[index]), tf.constant(index), tables)
    noise = float(np.mean(new.numpy() != labels[index]))
  num_train = train_size or num_full
  mean, std = tf.constant(MEAN), tf.constant(STD)

  def randomized(i, ex):
    label = randomize.randomize_labels(ex['label'], i, tables)
    image = randomize.randomize_image(eval_image(ex['image']), i, rand, mean, std)
    return image, label, i

  train = builder.as_dataset(split='train', shuffle_files=False).enumerate()
  if keep is not None:
    train = train.filter(lambda i, ex: keep[i])
  train = train.map(randomized, num_parallel_calls=tf.data.AUTOTUNE)

  def train_ds(initial_epoch: int) -> tf.data.Dataset:
    ds = train.shuffle(SHUFFLE_BUFFER,
                       seed=rand.seed + initial_epoch,
                       reshuffle_each_iteration=True).repeat()
    if augment:
      keys = tf.data.Dataset.random(seed=rand.seed + initial_epoch)
      ds = tf.data.Dataset.zip(
          (ds, keys)).map(lambda e, k: (augment_image(e[0], tf.stack([k, e[2]])), e[1], e[2]),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return (ds.map(lambda x, y, i: (_scale(x), y),
                   num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
                       tf.data.AUTOTUNE))

  eval_batch_size = eval_batch_size or batch_size
  train_eval = train.map(lambda x, y, i: (_scale(x), y)).batch(eval_batch_size)
  test_rand = rand if rand.inputs == 'shuffled_pixels' else registry.Randomization(seed=rand.seed)
  test = builder.as_dataset(split='validation', shuffle_files=False).enumerate().map(
      lambda i, ex:
      (_scale(randomize.randomize_image(eval_image(ex['image']), i, test_rand, mean, std)), ex[
          'label']),
      num_parallel_calls=tf.data.AUTOTUNE).batch(eval_batch_size)
  return loaders.Pipelines(train=train_ds,
                           train_eval=train_eval.prefetch(tf.data.AUTOTUNE),
                           test=test.prefetch(tf.data.AUTOTUNE),
                           num_train=num_train,
                           num_test=_split_size(builder, 'validation'),
                           num_classes=NUM_CLASSES,
                           input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                           label_noise_fraction=noise,
                           steps_per_epoch=-(-num_train // batch_size))
