"""Output-margin measures and the model's predictions (Jiang et al. 2020, eq. 22).

The margin of example (x, y) is f(x)[y] - max_{j != y} f(x)[j] (f the
logits, y the label the run trained on, randomized or not); gamma is its
10th percentile over the training set (`np.percentile`, linear
interpolation), and the measure is 1 / gamma^2. Jiang et al. take |gamma|:
a run that misclassifies more than 10% of its training set has gamma < 0,
and the over-margin measures then use gamma^2 as well.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def logits(model: keras.Model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
  """The model's logits on `x` in inference mode, as float64."""
  fn = _forward(model)
  out = [fn(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
  return np.concatenate(out).astype(np.float64)


def _forward(model: keras.Model):
  cached = getattr(model, '_measures_forward', None)
  if cached is None:
    cached = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    model._measures_forward = cached  # pylint: disable=protected-access
  return cached


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
  """Top-1 accuracy of the model on (x, y)."""
  return float(np.mean(np.argmax(logits(model, x, batch_size), axis=1) == y))


def example_margins(out: np.ndarray, y: np.ndarray) -> np.ndarray:
  """f(x)[y] - max_{j != y} f(x)[j] per row of the logits `out`."""
  correct = out[np.arange(len(y)), y]
  others = out.copy()
  others[np.arange(len(y)), y] = -np.inf
  return correct - others.max(axis=1)


def margin(out: np.ndarray, y: np.ndarray, percentile: float = 10.0) -> float:
  """gamma: the `percentile` of the training margins."""
  return float(np.percentile(example_margins(out, y), percentile))


def margin_measures(out: np.ndarray, y: np.ndarray) -> dict[str, float | str]:
  """{'margin': gamma, 'inverse_margin': 1 / gamma^2} (eq. 22)."""
  g = margin(out, y)
  return {'margin': g, 'inverse_margin': 1.0 / g**2 if g != 0 else 'margin is 0'}
