"""Distributed train and eval steps: the training loop of section 2, written out.

One `Loop` holds a model, its optimizer (SGD with momentum, appendix A) and a
`tf.distribute` strategy (default, mirrored or multi-worker), and gives:

* `distribute(make_dataset)`: a dataset of GLOBAL batches (every worker
  builds the same one, its order keyed by (seed, epoch)) as a distributed
  dataset whose replica r gets the r-th slice of each global batch
  (`strategy.distribute_datasets_from_function`; each worker keeps only its
  own replicas' slices). So R replicas train on exactly the global batches of
  one device. A batch of n examples is cut into slices of ceil(n / R): a last
  batch smaller than R leaves some replicas an empty slice. Under more than
  one worker, a dataset that `sharding.set_per_worker` marked is built per
  worker instead: the same slices, each worker preparing only its own
  examples (ImageNet decodes only its replicas' JPEGs).
* `train(iterator, steps)`: one `tf.function` call running `steps` training
  steps (a tensor: any number, no retrace), `strategy.run` per step. The loss
  of a replica is the sum of its examples' cross-entropy over the global
  batch's size, plus sum(model.losses) (the L2 terms) / R; the optimizer sums
  the replicas' gradients, so the update is the one-device update of the
  global batch.
* `evaluate(dataset)`: loss, top-1 and top-5 accuracy over a distributed
  dataset in inference mode, from exact sums across replicas (no example
  dropped or counted twice).

The running training sums (loss, correct, count) live in sync-on-read
variables: `train_metrics()` reads them summed over replicas and workers,
`reset_train_metrics()` zeroes them; `train_variables` gives them to the
trainer's checkpoint, so that an epoch's training averages survive a restart.
The step counter is the optimizer's `iterations`, which the checkpoint holds.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from rethinking_tf.data import sharding


def replica_slices(ds: tf.data.Dataset, context: tf.distribute.InputContext) -> tf.data.Dataset:
  """This worker's per-replica slices of each (images, labels) global batch.

  Each element becomes `context.num_replicas_in_sync // num_input_pipelines`
  elements (this worker's replicas, in order), each (images, labels, n) with
  n the global batch's size; `sharding` says which examples each gets.
  """
  if context.num_replicas_in_sync == 1:  # (No control flow: nothing for autograph to convert.)
    return ds.map(tf.autograph.experimental.do_not_convert(lambda x, y: (x, y, tf.shape(y)[0])))
  return ds.flat_map(lambda x, y: sharding.split(x, y, tf.shape(y)[0], 0, context))


def seed_states(model: keras.Model) -> dict[str, keras.Variable]:
  """The state of every layer's `keras.random.SeedGenerator` (dropout's masks),
  keyed by the layer's position (names vary within a process): a
  `tf.train.Checkpoint` of the model does not track them."""
  states = {}

  def visit(layers, prefix):
    for i, layer in enumerate(layers):
      for name, value in sorted(vars(layer).items()):
        if isinstance(value, keras.random.SeedGenerator):
          states[f'{prefix}{i}_{type(layer).__name__}_{name}'] = value.state
      visit(getattr(layer, 'layers', []), f'{prefix}{i}_')

  visit(model.layers, '')
  return states


class _Sums:
  """Sync-on-read sums of loss, top-1 and top-5 hits and examples."""

  def __init__(self):
    make = lambda name: tf.Variable(0.0,
                                    trainable=False,
                                    name=name,
                                    synchronization=tf.VariableSynchronization.ON_READ,
                                    aggregation=tf.VariableAggregation.SUM)
    self.loss, self.correct, self.top5, self.count = (
        make(n) for n in ('loss_sum', 'correct', 'top5_correct', 'count'))
    self.variables = (self.loss, self.correct, self.top5, self.count)

  def reset(self) -> None:
    for v in self.variables:
      v.assign(0.0)  # cross-replica: every replica's copy becomes 0

  def totals(self) -> tuple[float, float, float]:
    """(loss sum, top-1 hits, examples), summed over replicas."""
    return float(self.loss.read_value()), float(self.correct.read_value()), float(
        self.count.read_value())

  def read(self) -> dict[str, float]:
    loss, correct, top5, count = (float(v.read_value()) for v in self.variables)
    count = max(count, 1.0)
    return {'loss': loss / count, 'accuracy': correct / count, 'top5': top5 / count}


class Loop:
  """Train and eval steps of one model under one strategy (see the module doc)."""

  def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model,
               optimizer: keras.optimizers.Optimizer):
    self.strategy, self.model, self.optimizer = strategy, model, optimizer
    self.replicas = strategy.num_replicas_in_sync
    with strategy.scope():
      self._train_sums, self._eval_sums = _Sums(), _Sums()
    # Written as explicit while loops, so not converted by autograph: the
    # conversion (parsing and rewriting the step functions' source, model and
    # optimizer included) cost about 0.2 s of the first trace on a 2-core CPU.
    self._train = tf.function(self._train_steps, autograph=False)
    self._eval_steps = tf.function(self._eval_steps_fn, autograph=False)
    self._evaluate: dict[int, Callable[[], None]] = {}
    self._batches: dict[int, int] = {}

  @property
  def step(self) -> int:
    """Training steps taken so far (the optimizer's checkpointed counter)."""
    return int(self.optimizer.iterations.numpy())

  def distribute(self, make_dataset: Callable[[],
                                              tf.data.Dataset]) -> tf.distribute.DistributedDataset:
    """A distributed dataset of per-replica slices of `make_dataset()`'s batches."""
    made = []

    def worker_dataset(context):
      made.append(make_dataset())
      build = sharding.per_worker(made[-1])
      if build is not None and context.num_input_pipelines > 1:
        return build(context)
      return replica_slices(made[-1], context)

    dataset = self.strategy.distribute_datasets_from_function(worker_dataset)
    # The strategies call worker_dataset here: no second build to count batches.
    batches = int((made[0] if made else make_dataset()).cardinality())
    if batches >= 0:  # finite and known: every replica gets one slice per batch
      self._batches[id(dataset)] = batches
    return dataset

  def _losses(self, x: tf.Tensor, y: tf.Tensor, n: tf.Tensor, training: bool):
    """(this replica's share of the loss, per-example CE, L2 terms, logits)."""
    logits = self.model(x, training=training)
    ce = tf.cast(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True),
                 tf.float32)
    reg = (tf.add_n([tf.cast(l, tf.float32) for l in self.model.losses])
           if self.model.losses else tf.constant(0.0))
    return tf.reduce_sum(ce) / tf.cast(n, tf.float32) + reg / self.replicas, ce, reg, logits

  def _accumulate(self, sums: _Sums, y, ce, reg, logits, top5: bool) -> None:
    k = tf.cast(tf.shape(y)[0], tf.float32)
    # As Keras reports it: the batch's mean loss including the L2 terms.
    sums.loss.assign_add(tf.reduce_sum(ce) + k * reg)
    hit = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int64), tf.cast(y, tf.int64))
    sums.correct.assign_add(tf.reduce_sum(tf.cast(hit, tf.float32)))
    if top5:
      in_top = tf.math.in_top_k(tf.cast(y, tf.int32), tf.cast(logits, tf.float32),
                                min(5, logits.shape[-1]))
      sums.top5.assign_add(tf.reduce_sum(tf.cast(in_top, tf.float32)))
    sums.count.assign_add(k)

  def _train_step(self, x, y, n) -> None:
    weights = self.model.trainable_variables
    with tf.GradientTape() as tape:
      loss, ce, reg, logits = self._losses(x, y, n, training=True)
      scaled = self.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
    self.optimizer.apply(tape.gradient(scaled, weights), weights)
    self._accumulate(self._train_sums, y, ce, reg, logits, top5=False)

  def _train_steps(self, iterator, steps: tf.Tensor) -> None:
    _run_steps(lambda: self.strategy.run(self._train_step, args=next(iterator)), steps)

  def train(self, iterator: tf.distribute.DistributedIterator, steps: int) -> None:
    """Runs `steps` training steps from a `distribute`d dataset's iterator."""
    self._train(iterator, tf.constant(steps, tf.int32))

  def reset_train_metrics(self) -> None:
    """Zeroes the running training sums (at the start of an epoch)."""
    self._train_sums.reset()

  def train_metrics(self) -> dict[str, float]:
    """Running training loss and accuracy since the last reset (training mode)."""
    return self._train_sums.read()

  def train_totals(self) -> tuple[float, float, float]:
    """The running training sums since the last reset: (loss sum, hits, examples)."""
    return self._train_sums.totals()

  @property
  def train_variables(self) -> dict[str, tf.Variable]:
    """The running training sums' variables by name, for a checkpoint."""
    s = self._train_sums
    return {'loss_sum': s.loss, 'correct': s.correct, 'top5_correct': s.top5, 'count': s.count}

  def _eval_step(self, x, y, n) -> None:
    del n
    _, ce, reg, logits = self._losses(x, y, 1, training=False)
    self._accumulate(self._eval_sums, y, ce, reg, logits, top5=True)

  def evaluate(self, dataset: tf.distribute.DistributedDataset) -> dict[str, float]:
    """{'loss', 'accuracy', 'top5'} over a `distribute`d dataset, inference mode.

    With the number of batches known (`distribute` records it when the
    dataset's cardinality is finite), one traced function runs that many eval
    steps from a fresh iterator, as `train` does: iterating the dataset inside
    the function instead re-instantiates its graph on every call, about 30 ms a
    pass on a 2-core CPU.
    """
    steps = self._batches.get(id(dataset))
    self._eval_sums.reset()
    if steps is None:
      key = id(dataset)
      if key not in self._evaluate:

        def run():
          for batch in dataset:
            self.strategy.run(self._eval_step, args=batch)

        self._evaluate[key] = tf.function(run)
      self._evaluate[key]()
    else:
      self._eval_steps(iter(dataset), tf.constant(steps, tf.int32))
    return self._eval_sums.read()

  def _eval_steps_fn(self, iterator, steps: tf.Tensor) -> None:
    _run_steps(lambda: self.strategy.run(self._eval_step, args=next(iterator)), steps)


def _run_steps(step: Callable[[], None], steps: tf.Tensor) -> None:
  """Calls `step` `steps` times in a graph while loop, as autograph writes
  `for _ in tf.range(steps)` (the same loop, without the conversion)."""

  def body(i):
    step()
    return (i + 1,)

  tf.while_loop(lambda i: i < steps, body, (tf.constant(0, steps.dtype),))


def call_sizes(steps: int, steps_per_call: int, first_step: int = 0, every: int = 0) -> list[int]:
  """How many steps each train call runs to cover `steps` steps from `first_step`.

  Calls hold at most `steps_per_call` steps, and end on every multiple of
  `every` (when set), so that a hook can run at those steps.
  """
  sizes, step, end = [], first_step, first_step + steps
  while step < end:
    size = min(steps_per_call, end - step)
    if every:
      size = min(size, every - step % every)
    sizes.append(size)
    step += size
  return sizes
