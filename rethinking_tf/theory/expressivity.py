"""Finite-sample expressivity: Theorem 1 of the paper (section 4).

A two-layer ReLU network c(z) = sum_j w_j max(<a, z> - b_j, 0) with exactly
2n + d weights (a: d, b: n, w: n) takes any real targets y_i on any n distinct
points z_i in R^d:

1. a is a random unit vector (float64), so the projections x_i = <a, z_i> are
   distinct almost surely (re-drawn if two distinct points tie).
2. Sort the projections x_1 < ... < x_n and interleave the thresholds,
   b_1 < x_1 < b_2 < ... < b_n < x_n.
3. A_ij = max(x_i - b_j, 0) is lower triangular with diagonal x_i - b_i > 0,
   so w = A^-1 y exists. A is never formed: between thresholds the network is
   linear with slope s_k = w_1 + ... + w_k, and fitting y_k at x_k gives
       s_1 = y_1 / (x_1 - b_1),
       s_k = (y_k - y_{k-1}) / (x_k - b_k) - s_{k-1} (b_k - x_{k-1}) / (x_k - b_k),
   then w_k = s_k - s_{k-1}: O(n) after the sort, a first-order linear
   recurrence run by `scipy.signal.lfilter`.

Choices where the paper is silent:
* b_k = x_{k-1} + theta (x_k - x_{k-1}) with theta = 0.1 by default (b_1 sits
  (1 - theta) mean gaps below x_1). The recurrence above multiplies s_{k-1} by
  -theta / (1 - theta): the midpoint (theta = 1/2) never damps a rounding
  error, theta > 1/2 amplifies it geometrically, a small theta makes the
  network nearly the piecewise-linear interpolant of the sorted targets.
* Identical inputs with identical targets share one unit; the left-over units
  get w = 0 (and b above every projection), so the count stays 2n + d.
  Identical inputs with different targets raise `SeparationError`.
* Classification: the target is the class index as a real number and a
  prediction is correct when the output rounds to it (2n + d weights). The
  one-hot variant has k outputs (d + n + k n weights) and predicts the argmax.
* The Keras model computes in float64 (the conditioning needs it: the
  smallest gap x_i - b_i of 50,000 random projections is ~1e-9 of their
  range); `build_model(..., dtype='float32')` gives the same weights in
  float32 so that its error can be reported beside it.

The binary is `python -m rethinking_tf.expressivity`.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
from scipy import signal

from rethinking_tf import registry


class SeparationError(ValueError):
  """Points that no function can separate: identical inputs, different targets."""


@dataclasses.dataclass
class Construction:
  """Theorem 1's weights, in the sorted order of the projections.

  Attributes:
    a: [d] unit projection direction (float64).
    b: [n] thresholds (float64).
    w: [n, k] output weights (float64); k = 1 for scalar targets.
    min_gap: min_i (x_i - b_i), the smallest eigenvalue of A (input units).
    projection_range: max_i x_i - min_i x_i.
    num_duplicates: inputs identical to an earlier input (same target).
    tries: directions a drawn until the projections were distinct.
  """
  a: np.ndarray
  b: np.ndarray
  w: np.ndarray
  min_gap: float
  projection_range: float
  num_duplicates: int
  tries: int

  @property
  def num_weights(self) -> int:
    """d + n + k n: 2n + d for scalar targets (Theorem 1)."""
    return self.a.size + self.b.size + self.w.size


def _flat(inputs: np.ndarray) -> np.ndarray:
  return np.asarray(inputs).reshape(len(inputs), -1)


def _project(flat: np.ndarray, a: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, float]:
  """(<a, z_i> in float64, max_i ||z_i||) without a float64 copy of all inputs."""
  out = np.empty(len(flat), np.float64)
  max_norm = 0.0
  for i in range(0, len(flat), chunk):
    z = flat[i:i + chunk].astype(np.float64)
    out[i:i + chunk] = z @ a
    if len(z):
      max_norm = max(max_norm, float(np.sqrt(np.max(np.einsum('ij,ij->i', z, z)))))
  return out, max_norm


def _identical(rows: np.ndarray) -> bool:
  return bool(np.all(rows == rows[0]))  # -0.0 == 0.0, as it should


def construct(inputs: np.ndarray,
              targets: np.ndarray,
              seed: int = 0,
              theta: float = 0.1,
              max_tries: int = 5) -> Construction:
  """Theorem 1 (section 4): weights of a 2n + d network that fits the targets.

  Duplicates are found after sorting the projections: only points whose
  projections differ by less than the rounding bound of a float64 dot
  product (d eps max ||z||) are compared element by element. If two such
  points differ, another direction is drawn.

  Args:
    inputs: [n, ...] points (flattened to d = prod(shape[1:])).
    targets: [n] real targets, or [n, k] (one network output per column).
    seed: seed of the random direction a.
    theta: threshold placement in (0, 1), see the module docstring.
    max_tries: directions to draw before giving up on distinct projections.

  Returns:
    The construction; never forms an n x n matrix (memory O(n + n k), plus
    one float64 chunk of inputs).

  Raises:
    SeparationError: identical inputs with different targets.
    ValueError: bad arguments, or no direction separated the points.
  """
  if not 0.0 < theta < 1.0:
    raise ValueError(f'theta={theta} must be in (0, 1)')
  flat = _flat(inputs)
  y = np.asarray(targets, np.float64)
  y = y.reshape(len(y), -1)
  n, d = flat.shape
  if len(y) != n or n == 0:
    raise ValueError(f'need n > 0 points and as many targets (got {n} and {len(y)})')
  if not np.isfinite(y).all():
    raise ValueError('targets must be finite')

  rng = np.random.default_rng(seed)
  for tries in range(1, max_tries + 1):  # noqa: B007 (returned below)
    a = rng.standard_normal(d)
    a /= np.linalg.norm(a) or 1.0
    x, max_norm = _project(flat, a)
    if not np.isfinite(x).all():
      raise ValueError('inputs must be finite')
    order = np.argsort(x, kind='stable')
    xs = x[order]
    tol = 4.0 * max(d, 1) * np.finfo(np.float64).eps * max_norm
    close = np.flatnonzero(np.diff(xs) <= tol)  # xs[i] ~ xs[i + 1]
    keep = np.ones(n, bool)  # in sorted order: first of each group of duplicates
    separated = True
    if close.size:
      # Runs of consecutive close projections: [start, stop] in sorted order.
      breaks = np.flatnonzero(np.diff(close) > 1)
      starts = np.concatenate([close[:1], close[breaks + 1]])
      stops = np.concatenate([close[breaks], close[-1:]]) + 1
      for lo, hi in zip(starts, stops):
        idx = order[lo:hi + 1]
        if not _identical(flat[idx]):
          separated = False
          break
        clash = np.flatnonzero(np.any(y[idx] != y[idx[0]], axis=1))
        if clash.size:
          i, j = sorted((int(idx[0]), int(idx[clash[0]])))
          raise SeparationError(f'inputs {i} and {j} are identical but have different targets '
                                f'({y[i].tolist()} vs {y[j].tolist()}): no function separates them')
        keep[lo + 1:hi + 1] = False
    if separated:
      break
  else:
    raise ValueError(f'{max_tries} random directions failed to separate the '
                     'distinct points (projections closer than rounding)')
  xs = xs[keep]
  ys = y[order][keep]
  m = len(xs)
  gaps = np.diff(xs)

  mean_gap = float(xs[-1] - xs[0]) / (m - 1) if m > 1 else 1.0
  first_gap = mean_gap if mean_gap > 0 else 1.0
  b = np.empty(m)
  b[0] = xs[0] - (1.0 - theta) * first_gap
  b[1:] = xs[:-1] + theta * gaps
  diag = xs - b  # = (1 - theta) gaps, the diagonal of A
  # Slope recurrence: s_k = c_k - r s_{k-1}.
  c = np.empty_like(ys)
  c[0] = ys[0] / diag[0]
  c[1:] = np.diff(ys, axis=0) / diag[1:, None]
  slopes = signal.lfilter([1.0], [1.0, theta / (1.0 - theta)], c, axis=0)
  w = np.diff(slopes, axis=0, prepend=0.0)
  if not np.isfinite(w).all():
    raise ValueError(f'the weights overflow float64 (smallest gap {diag.min():.3g}): '
                     'rescale the inputs')

  if m < n:  # unused units: inactive on every point, zero weight
    b = np.concatenate([b, np.full(n - m, xs[-1] + first_gap)])
    w = np.concatenate([w, np.zeros((n - m, w.shape[1]))])
  return Construction(a=a,
                      b=b,
                      w=w,
                      min_gap=float(diag.min()),
                      projection_range=float(xs[-1] - xs[0]),
                      num_duplicates=n - m,
                      tries=tries)


def dense_matrix(construction: Construction, inputs: np.ndarray) -> np.ndarray:
  """A_ij = max(<a, z_i> - b_j, 0), [n, n] float64 (small n: tests only)."""
  x, _ = _project(_flat(inputs), construction.a)
  return np.maximum(x[:, None] - construction.b[None, :], 0.0)


class ThresholdReLU(keras.layers.Layer):
  """The hidden layer of Theorem 1: relu(x - b_j) for n thresholds b_j.

  Input [batch, 1] (the projection <a, z>), output [batch, n]; n weights.
  """

  def __init__(self, units: int, **kwargs):
    super().__init__(**kwargs)
    self.units = units

  def build(self, input_shape):
    self.thresholds = self.add_weight(shape=(self.units,), initializer='zeros', name='thresholds')

  def call(self, x):
    return keras.ops.relu(x - self.thresholds)

  def get_config(self):
    return {**super().get_config(), 'units': self.units}


def build_model(construction: Construction,
                input_shape: tuple[int, ...],
                dtype: str = 'float64') -> keras.Model:
  """The Keras network of Theorem 1 with exactly d + n + k n parameters.

  Flatten -> Dense(1, no bias) [a] -> ThresholdReLU(n) [b] -> Dense(k, no bias) [w].
  """
  n, k = construction.w.shape
  inputs = keras.Input(shape=tuple(input_shape), dtype=dtype)
  h = keras.layers.Flatten(dtype=dtype)(inputs)
  h = keras.layers.Dense(1, use_bias=False, dtype=dtype, name='projection')(h)
  h = ThresholdReLU(n, dtype=dtype, name='thresholds')(h)
  outputs = keras.layers.Dense(k, use_bias=False, dtype=dtype, name='output')(h)
  model = keras.Model(inputs, outputs, name='theorem1')
  model.get_layer('projection').set_weights([construction.a[:, None].astype(dtype)])
  model.get_layer('thresholds').set_weights([construction.b.astype(dtype)])
  model.get_layer('output').set_weights([construction.w.astype(dtype)])
  return model


def predict(model: keras.Model, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """The model's forward pass in its own dtype, in batches ([batch, n] hidden)."""
  dtype = model.inputs[0].dtype
  outs = []
  for i in range(0, len(inputs), batch_size):
    batch = np.asarray(inputs[i:i + batch_size], dtype=dtype)
    outs.append(np.asarray(model(batch, training=False), np.float64))
  return np.concatenate(outs) if outs else np.zeros((0, model.outputs[0].shape[-1]))


def class_targets(labels: np.ndarray, num_classes: int, one_hot: bool) -> np.ndarray:
  """The theorem's targets for classification: class index, or one-hot rows."""
  labels = np.asarray(labels, np.int64)
  if one_hot:
    return np.eye(num_classes)[labels]
  return labels.astype(np.float64)


def accuracy(outputs: np.ndarray, labels: np.ndarray, one_hot: bool) -> float:
  """Rounded output equal to the class index, or argmax for one-hot outputs."""
  if not len(labels):
    return float('nan')
  pred = np.argmax(outputs, axis=1) if one_hot else np.rint(outputs[:, 0])
  return float(np.mean(pred == labels))


def fit_and_evaluate(x_train: np.ndarray,
                     y_train: np.ndarray,
                     x_test: np.ndarray | None = None,
                     y_test: np.ndarray | None = None,
                     num_classes: int | None = None,
                     one_hot: bool = False,
                     seed: int = 0,
                     theta: float = 0.1,
                     batch_size: int = 256,
                     float32_check: bool = True) -> dict:
  """Builds Theorem 1's network on a training set and measures its fit.

  max_abs_error is from the Keras float64 forward pass; the same weights in
  float32 are reported beside it (`*_float32`).
  """
  num_classes = num_classes or int(np.max(y_train)) + 1
  targets = class_targets(y_train, num_classes, one_hot)
  t0 = time.perf_counter()
  cons = construct(x_train, targets, seed=seed, theta=theta)
  build_seconds = time.perf_counter() - t0
  model = build_model(cons, x_train.shape[1:], 'float64')
  n, d = len(x_train), int(np.prod(x_train.shape[1:]))
  result = dict(n=n,
                d=d,
                k=cons.w.shape[1],
                one_hot=one_hot,
                num_weights=int(model.count_params()),
                theorem_weights=cons.num_weights,
                theta=theta,
                min_gap=cons.min_gap,
                projection_range=cons.projection_range,
                num_duplicates=cons.num_duplicates,
                direction_tries=cons.tries,
                max_abs_weight=float(np.abs(cons.w).max()),
                seconds=build_seconds,
                forward_dtype='float64')
  t0 = time.perf_counter()
  out = predict(model, x_train, batch_size)
  result['max_abs_error'] = float(np.max(np.abs(out - targets.reshape(n, -1))))
  result['train_accuracy'] = accuracy(out, y_train, one_hot)
  if x_test is not None and len(x_test):
    result['test_accuracy'] = accuracy(predict(model, x_test, batch_size), y_test, one_hot)
  if float32_check:
    out32 = predict(build_model(cons, x_train.shape[1:], 'float32'), x_train, batch_size)
    result['max_abs_error_float32'] = float(np.max(np.abs(out32 - targets.reshape(n, -1))))
    result['train_accuracy_float32'] = accuracy(out32, y_train, one_hot)
  result['eval_seconds'] = time.perf_counter() - t0
  return result


def run(dataset: str,
        data_dir: str | None,
        train_size: int | None,
        randomization: registry.Randomization,
        one_hot: bool = False,
        theta: float = 0.1,
        batch_size: int = 256,
        float32_check: bool = True,
        image_cache: bool = True) -> dict:
  """Theorem 1 on a data set's (randomized, preprocessed) training set.

  Inputs are those the training binary sees (`pipeline.numpy_arrays`: 28x28x3,
  per-image standardized, d = 2,352); `image_cache` as in `loaders.load_arrays`.
  """
  from rethinking_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import sources  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  x_train, y_train, x_test, y_test, noise = pipeline.numpy_arrays(dataset, data_dir, randomization,
                                                                  train_size, image_cache)
  _, num_classes = sources.check_available(dataset, data_dir)
  load_seconds = time.perf_counter() - t0
  result = fit_and_evaluate(x_train,
                            y_train,
                            x_test,
                            y_test,
                            num_classes,
                            one_hot=one_hot,
                            seed=randomization.seed,
                            theta=theta,
                            batch_size=batch_size,
                            float32_check=float32_check)
  return dict(dataset=dataset,
              labels=randomization.labels,
              inputs=randomization.inputs,
              label_noise_fraction=noise,
              load_seconds=load_seconds,
              **result)
