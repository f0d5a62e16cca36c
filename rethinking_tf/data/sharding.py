"""Which examples of a global batch each replica and worker gets (paper section 2).

A global batch of n examples is cut into R slices of ceil(n / R), in replica
order (a last batch smaller than R leaves some replicas an empty slice);
worker k of W holds replicas k * R / W to (k + 1) * R / W - 1, so its
examples are one contiguous range of the batch. `training.loop` cuts global
batches this way; a streamed data set that can build only its worker's
range (`imagenet`) registers that builder with `set_per_worker`, and
`training.loop.Loop.distribute` uses it under more than one worker.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

PerWorker = Callable[[tf.distribute.InputContext], tf.data.Dataset]
_ATTRIBUTE = '_rethinking_per_worker'


def replica_range(n: tf.Tensor, replica: tf.Tensor, replicas: int) -> tuple[tf.Tensor, tf.Tensor]:
  """[start, end) of `replica`'s slice of a global batch of n examples."""
  per = (n + replicas - 1) // replicas
  start = tf.minimum(replica * per, n)
  return start, tf.minimum(start + per, n)


def local_replicas(context: tf.distribute.InputContext) -> tuple[int, int]:
  """(first global replica index of this worker, number of its replicas)."""
  local = context.num_replicas_in_sync // context.num_input_pipelines
  return context.input_pipeline_id * local, local


def worker_range(n: tf.Tensor, context: tf.distribute.InputContext) -> tuple[tf.Tensor, tf.Tensor]:
  """[start, end) of this worker's examples (its replicas' slices) in a batch of n."""
  first, local = local_replicas(context)
  start, _ = replica_range(n, first, context.num_replicas_in_sync)
  _, end = replica_range(n, first + local - 1, context.num_replicas_in_sync)
  return start, end


def worker_size(batch_size: int, context: tf.distribute.InputContext) -> int:
  """How many examples of a full global batch this worker gets (its replicas' share).

  A smaller last batch gives every worker at most as many. Raises ValueError
  unless the replicas divide the batch (the binary checks it first).
  """
  if batch_size % context.num_replicas_in_sync:
    raise ValueError(f'a batch of {batch_size} does not split evenly over '
                     f'{context.num_replicas_in_sync} replicas')
  return local_replicas(context)[1] * batch_size // context.num_replicas_in_sync


def split(x: tf.Tensor, y: tf.Tensor, n: tf.Tensor, offset: tf.Tensor,
          context: tf.distribute.InputContext) -> tf.data.Dataset:
  """This worker's replica slices, each (images, labels, n), of the examples
  (x, y) that start at position `offset` of a global batch of n."""
  first, local = local_replicas(context)

  def piece(j):
    start, end = replica_range(n, first + tf.cast(j, tf.int32), context.num_replicas_in_sync)
    return x[start - offset:end - offset], y[start - offset:end - offset], n

  return tf.data.Dataset.range(local).map(piece)


def set_per_worker(dataset: tf.data.Dataset, per_worker: PerWorker) -> tf.data.Dataset:
  """Marks a dataset of global batches as also buildable per worker.

  `per_worker(context)` must give, for each global batch of `dataset`, this
  worker's replica slices as `split` cuts them: the same examples, prepared
  the same way, without preparing the other workers' ones.
  """
  setattr(dataset, _ATTRIBUTE, per_worker)
  return dataset


def per_worker(dataset: tf.data.Dataset) -> PerWorker | None:
  """The builder `set_per_worker` gave `dataset`, if any."""
  return getattr(dataset, _ATTRIBUTE, None)
