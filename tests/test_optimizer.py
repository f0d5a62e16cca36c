"""optimizer.MomentumSGD against the Keras SGD it replaces."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rethinking_tf import models
from rethinking_tf.training import optimizer


def _train(optimizer_class, steps: int = 4, **kwargs) -> list[np.ndarray]:
  keras.utils.set_random_seed(0)
  model = models.build('alexnet', (28, 28, 3), 10, weight_decay=5e-4)
  model.compile(optimizer=optimizer_class(
      keras.optimizers.schedules.ExponentialDecay(0.05, 2, 0.5, staircase=True), **kwargs),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = tf.random.stateless_normal([32, 28, 28, 3], [1, 2])
  y = tf.random.stateless_uniform([32], [3, 4], 0, 10, tf.int64)
  for _ in range(steps):
    model.train_on_batch(x, y)
  return model.get_weights() + [v.numpy() for v in model.optimizer.variables]


@pytest.mark.parametrize(
    'kwargs',
    [dict(momentum=0.9), dict(momentum=0.0),
     dict(momentum=0.9, nesterov=True)])
def test_momentum_sgd_matches_keras_sgd(kwargs):
  ours, theirs = _train(optimizer.MomentumSGD, **kwargs), _train(keras.optimizers.SGD, **kwargs)
  assert len(ours) == len(theirs)
  moved = 0
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    moved += a.size
  assert moved > 1_000_000  # every weight and momentum buffer was compared


def test_momentum_sgd_uses_the_fused_kernel(monkeypatch):

  def refuse(*args, **kwargs):
    raise AssertionError('fell back to keras SGD.update_step')

  monkeypatch.setattr(keras.optimizers.SGD, 'update_step', refuse)
  weights = _train(optimizer.MomentumSGD, steps=1, momentum=0.9)
  assert all(np.isfinite(w).all() for w in weights)
