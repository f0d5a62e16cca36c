"""The explicit training loop against an independent eager loop; its slicing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rethinking_tf.data import pipeline
from rethinking_tf.data import sharding
from rethinking_tf import models
from rethinking_tf.training import config as config_lib
from rethinking_tf.training import loop
from rethinking_tf.training import rundir
from rethinking_tf.training import trainer


def test_first_epoch_matches_an_eager_gradient_tape_loop(tmp_path):
  """Digits, 11 steps of 128 in calls of 3 + 3 + 3 + 2 (last batch: 67 examples)."""
  config = config_lib.TrainConfig(logdir=str(tmp_path),
                                  dataset='digits',
                                  model='mlp_1x64',
                                  weight_decay=1e-3,
                                  epochs=1,
                                  steps_per_execution=3,
                                  verbose=False)
  rundir.prepare_logdir(config, None)
  t = trainer.Trainer(config, tf.distribute.get_strategy())
  p = pipeline.make_pipelines('digits', None, config.randomization, config.batch_size)
  t.build(p)
  assert p.steps_per_epoch == 11
  results = t.train()
  row = t.rows[0]

  # Independently: Keras' own SGD, a plain eager GradientTape step per batch.
  model = models.build('mlp_1x64', p.input_shape, p.num_classes, weight_decay=1e-3)
  sgd = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(config.lr,
                                                                         p.steps_per_epoch,
                                                                         config.lr_decay,
                                                                         staircase=True),
                             momentum=0.9)
  loss_sum, correct, count = 0.0, 0, 0
  for x, y in p.train(0).take(p.steps_per_epoch):
    with tf.GradientTape() as tape:
      logits = model(x, training=True)
      ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
      reg = tf.add_n(model.losses)
      loss = tf.reduce_mean(ce) + reg
    sgd.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    loss_sum += float(loss) * len(y)
    correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == tf.cast(y, tf.int64), tf.int32)))
    count += len(y)
  assert count == p.num_train == 1347
  assert row['train_loss'] == pytest.approx(loss_sum / count, rel=1e-5)
  assert row['train_accuracy'] == pytest.approx(correct / count, abs=1e-9)
  for a, b in zip(t.model.get_weights(), model.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Evaluation: every test example once, in inference mode.
  x_test = np.concatenate([x for x, _ in p.test.as_numpy_iterator()])
  y_test = np.concatenate([y for _, y in p.test.as_numpy_iterator()])
  logits = model(x_test, training=False).numpy()
  assert row['test_accuracy'] == pytest.approx(np.mean(logits.argmax(-1) == y_test), abs=1e-9)
  top5 = np.mean([y in np.argsort(-l)[:5] for l, y in zip(logits, y_test)])
  assert row['test_top5_accuracy'] == pytest.approx(top5, abs=1e-9)
  assert results['steps_completed'] == 11 and results['steps_per_execution'] == 3


def test_replica_slices_give_each_replica_its_part_of_the_global_batch():
  x = tf.reshape(tf.range(7 * 2, dtype=tf.float32), [7, 2])
  y = tf.range(7, dtype=tf.int64)
  # Global batches of 5 and 2 examples; 4 replicas, two per worker: worker 1's.
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=1,
                                       num_replicas_in_sync=4)
  pieces = [
      (xs.numpy(), ys.numpy().tolist(), int(n)) for xs, ys, n in loop.replica_slices(ds, context)
  ]
  # ceil(5 / 4) = 2 per replica: replicas 2 and 3 get [4] and []; of 2: [] and [].
  assert [(ys, n) for _, ys, n in pieces] == [([4], 5), ([], 5), ([], 2), ([], 2)]
  np.testing.assert_array_equal(pieces[0][0], [[8.0, 9.0]])
  every = []
  for worker in range(2):
    context = tf.distribute.InputContext(2, worker, 4)
    every += [ys.numpy().tolist() for _, ys, _ in loop.replica_slices(ds, context)]
  # Replica order within each global batch: 0, 1 (worker 0), 2, 3 (worker 1).
  assert every[:2] + every[4:6] == [[0, 1], [2, 3], [4], []]
  assert sorted(sum(every, [])) == list(range(7))  # every example exactly once


class _Worker:
  """A strategy's dataset distribution as worker `index` of 2 (one replica each) sees it."""
  num_replicas_in_sync = 2

  def __init__(self, index):
    self.index = index

  def scope(self):
    return tf.distribute.get_strategy().scope()

  def distribute_datasets_from_function(self, fn):
    return fn(tf.distribute.InputContext(2, self.index, 2))


def test_distribute_builds_a_marked_dataset_per_worker():
  # Global batches [2i, 2i + 1]: worker k's replica gets [2i + k].
  ds = tf.data.Dataset.range(5).map(lambda i: (tf.zeros([2, 1]), tf.stack([2 * i, 2 * i + 1])))
  built = []

  def per_worker(context):
    k = context.input_pipeline_id
    built.append(k)
    return ds.map(lambda x, y: (x[k:k + 1], y[k:k + 1], 2))

  marked = sharding.set_per_worker(ds.map(lambda x, y: (x, y)), per_worker)
  for k in range(2):
    worker = loop.Loop(_Worker(k), None, None)
    plain = [y.numpy().tolist() for _, y, _ in worker.distribute(lambda: ds)]
    assert plain == [[2 * i + k] for i in range(5)]
    assert [y.numpy().tolist() for _, y, _ in worker.distribute(lambda: marked)] == plain
  assert built == [0, 1]
  # One worker: the global batches, sliced as usual.
  one = loop.Loop(tf.distribute.get_strategy(), None, None)
  assert [len(y) for _, y, _ in one.distribute(lambda: marked)] == [2] * 5 and built == [0, 1]


def test_step_functions_are_not_converted_by_autograph(monkeypatch):
  """Their loops are explicit while loops: converting them cost start-up time."""
  from tensorflow.python.autograph.impl import api  # pylint: disable=g-import-not-at-top
  converted = []
  convert = api.converted_call
  monkeypatch.setattr(api, 'converted_call',
                      lambda f, *a, **k: converted.append(f) or convert(f, *a, **k))
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
  l = loop.Loop(tf.distribute.get_strategy(), model, keras.optimizers.SGD(0.1))
  data = lambda: tf.data.Dataset.from_tensor_slices(
      (tf.ones([8, 2]), tf.constant([0, 1, 2, 0, 1, 2, 0, 1]))).batch(2)
  l.train(iter(l.distribute(data)), 3)
  assert l.step == 3 and l.train_metrics()['loss'] > 0
  assert l.evaluate(l.distribute(data))['accuracy'] >= 0
  assert not converted


def test_call_sizes():
  assert loop.call_sizes(11, 3) == [3, 3, 3, 2]
  assert loop.call_sizes(11, 32) == [11]
  assert loop.call_sizes(4, 1) == [1, 1, 1, 1]
  # Calls end on every multiple of `every` (a hook point), counted from step 0.
  assert loop.call_sizes(11, 4, first_step=11, every=5) == [4, 4, 1, 2]
