"""Minimum-norm kernel interpolation (paper section 5, "the kernel trick").

SGD on a linear model from zero stays in the span of the data, so an
interpolating solution is w = X^T alpha with K alpha = Y, K = X X^T: the
minimum l2-norm interpolant. With a kernel k(x, x') in place of <x, x'> the
same holds in its feature space. This module solves K alpha = Y for one-hot
targets Y ([n, k]) directly and reports train and test error and the norm of
the solution, sqrt(trace(alpha^T K alpha)). The binary is
`python -m rethinking_tf.kernels`.

* Kernels: Gaussian exp(-gamma ||x - x'||^2) (the first author's MNIST demo
  uses gamma = 0.02 on pixels / 255) and linear <x, x'>.
* Features: `pixels` (the stored image / 255, flattened: 32x32x3 = 3,072 for
  CIFAR-10, with the input randomization applied), `standardized` (what the
  networks see: 28x28x3 centre crop, per-image standardization), or
  `random_conv`: a one-layer random convolutional network on the
  standardized images (Gaussian filters, ReLU, average pooling over a
  pool x pool grid), the paper's "random conv net" preprocessing.
* Memory: the n x n kernel is float32 (10 GB for n = 50,000), built block by
  block directly into one array (only its upper triangle is computed), then
  factored in place by LAPACK `spotrf` (Cholesky) and solved with `spotrs`.
  Nothing else of size n x n is allocated.
* Ridge: `l2` adds l2 * I before the factorization. When the Cholesky
  factorization fails (K numerically singular in float32), the kernel is
  rebuilt with a jitter added to the diagonal, 1e-6 x the mean diagonal and
  then x10 per failure, and the jitter used is reported (`jitter`).
* Train predictions K alpha are recomputed from a fresh kernel (not from the
  factor), so train error, the residual max|K alpha - Y| and the norm are
  measured against the unregularized kernel. The norm uses K without l2 and
  jitter.

Deviations: the paper gives no bandwidth for CIFAR-10 and no details of its
random conv net (32,000 filters); ours is documented above.
"""

from __future__ import annotations

import dataclasses
import time

from absl import logging
import numpy as np

from rethinking_tf import registry

# scipy and TensorFlow are imported where they are used, so that the binary
# (`main`) checks its flags first.
KERNELS = registry.KERNELS
FEATURES = registry.FEATURES


class CholeskyError(RuntimeError):
  """The kernel matrix could not be factored even with the largest jitter."""


def _kernel_block(xa: np.ndarray,
                  xb: np.ndarray,
                  sq_a: np.ndarray,
                  sq_b: np.ndarray,
                  kernel: str,
                  gamma: float,
                  out: np.ndarray | None = None) -> np.ndarray:
  """k(xa_i, xb_j) as a float32 [len(xa), len(xb)] block, computed in place."""
  g = np.matmul(xa, xb.T, out=out)
  if kernel == 'linear':
    return g
  g *= 2.0 * gamma  # -gamma (|a|^2 + |b|^2 - 2 a.b), clipped at 0
  g -= (gamma * sq_a)[:, None]
  g -= (gamma * sq_b)[None, :]
  np.minimum(g, 0.0, out=g)
  np.exp(g, out=g)
  return g


def _sq_norms(x: np.ndarray) -> np.ndarray:
  return np.einsum('ij,ij->i', x, x, dtype=np.float64).astype(np.float32)


def kernel_matrix(x: np.ndarray,
                  kernel: str = 'gaussian',
                  gamma: float = 0.02,
                  diag_add: float = 0.0,
                  block_size: int = 2048,
                  out: np.ndarray | None = None,
                  upper_only: bool = False) -> np.ndarray:
  """The [n, n] float32 kernel matrix of x ([n, d] float32), built in blocks.

  Args:
    upper_only: compute only the upper triangle (what `spotrf` reads); the
      strict lower triangle is then left as it was in `out`.
    diag_add: added to the diagonal (ridge + jitter).
    out: an [n, n] float32 C-contiguous array to fill (reused between jitters).
  """
  x = np.ascontiguousarray(x, np.float32)
  n = len(x)
  if out is None:
    out = np.empty((n, n), np.float32)
  sq = _sq_norms(x)
  for i in range(0, n, block_size):
    j0 = i if upper_only else 0
    blk = _kernel_block(x[i:i + block_size], x[j0:], sq[i:i + block_size], sq[j0:], kernel, gamma)
    out[i:i + block_size, j0:] = blk
    del blk
  idx = np.arange(n)
  if kernel == 'gaussian':
    out[idx, idx] = 1.0  # exact, not 1 - rounding
  out[idx, idx] += np.float32(diag_add)
  return out


def predict(x_train: np.ndarray,
            alpha: np.ndarray,
            x_query: np.ndarray,
            kernel: str = 'gaussian',
            gamma: float = 0.02,
            block_size: int = 1024) -> np.ndarray:
  """K(x_query, x_train) @ alpha in blocks of query rows, float64 [m, k]."""
  x_train = np.ascontiguousarray(x_train, np.float32)
  sq = _sq_norms(x_train)
  alpha32 = np.asarray(alpha, np.float32)
  out = np.empty((len(x_query), alpha.shape[1]), np.float64)
  for i in range(0, len(x_query), block_size):
    q = np.ascontiguousarray(x_query[i:i + block_size], np.float32)
    blk = _kernel_block(q, x_train, _sq_norms(q), sq, kernel, gamma)
    out[i:i + block_size] = blk @ alpha32
  return out


@dataclasses.dataclass
class Solution:
  """alpha ([n, k] float32) and how it was obtained.

  sq_norm is trace(alpha^T K alpha) from the factor: ||L^T alpha||^2 minus
  (l2 + jitter) ||alpha||^2, with L L^T = K + (l2 + jitter) I.
  """
  alpha: np.ndarray
  sq_norm: float
  jitter: float
  cholesky_failures: int
  kernel_seconds: float
  solve_seconds: float


def solve(x: np.ndarray,
          y: np.ndarray,
          kernel: str = 'gaussian',
          gamma: float = 0.02,
          l2: float = 0.0,
          block_size: int = 2048,
          max_jitter_tries: int = 6,
          backup_bytes: int = 2**30) -> Solution:
  """Solves (K + (l2 + jitter) I) alpha = y by an in-place float32 Cholesky.

  Peak memory is one n x n float32 array plus O(block_size n).

  Args:
    x: [n, d] features.
    y: [n, k] targets (one-hot for classification).
    l2: ridge; 0 is the minimum-norm interpolant of section 5.
    max_jitter_tries: factorizations tried (jitter 0, then 1e-6, 1e-5, ...
      times the mean diagonal) before raising CholeskyError.
    backup_bytes: after a first failure, if the kernel takes at most this many
      bytes, a copy is kept so that later jitters do not recompute it.
  """
  from scipy.linalg import blas, lapack  # pylint: disable=g-import-not-at-top
  x = np.ascontiguousarray(x, np.float32)
  n = len(x)
  kmat = np.empty((n, n), np.float32)
  mean_diag = 1.0 if kernel == 'gaussian' else float(np.mean(_sq_norms(x)))
  kernel_seconds = solve_seconds = 0.0
  backup = None
  diag = np.arange(n)
  for attempt in range(max_jitter_tries):
    jitter = 0.0 if attempt == 0 else mean_diag * 10.0**(attempt - 7)
    t0 = time.perf_counter()
    if backup is None:
      kernel_matrix(x, kernel, gamma, diag_add=l2, block_size=block_size, out=kmat, upper_only=True)
      if attempt == 1 and kmat.nbytes <= backup_bytes:
        backup = kmat.copy()
    else:
      np.copyto(kmat, backup)
    kmat[diag, diag] += np.float32(jitter)
    t1 = time.perf_counter()
    logging.info('kernel %d x %d (diagonal + %.3g) in %.1f s; Cholesky...', n, n, l2 + jitter,
                 t1 - t0)
    # kmat is C-ordered, so kmat.T is the same memory in Fortran order, whose
    # lower triangle is kmat's upper triangle: factored in place, no copy.
    factor, info = lapack.spotrf(kmat.T, lower=1, clean=0, overwrite_a=1)
    t2 = time.perf_counter()
    kernel_seconds += t1 - t0
    solve_seconds += t2 - t1
    logging.info('spotrf info=%d in %.1f s', info, t2 - t1)
    if info == 0:
      break
    if info < 0:
      raise ValueError(f'spotrf: illegal argument {-info}')
  else:
    raise CholeskyError(f'Cholesky factorization of the {n} x {n} kernel failed '
                        f'{max_jitter_tries} times (last jitter {jitter:.3g}); '
                        'try --l2 > 0 or a larger --gamma')
  del backup
  t0 = time.perf_counter()
  assert np.shares_memory(factor, kmat), 'spotrf copied the kernel'
  alpha, info = lapack.spotrs(factor, np.asfortranarray(y, np.float32), lower=1)
  if info != 0:
    raise ValueError(f'spotrs failed with info={info}')
  lt_alpha = blas.strmm(1.0, factor, alpha, side=0, lower=1, trans_a=1)
  sq_norm = (float(np.sum(np.square(lt_alpha, dtype=np.float64))) -
             (l2 + jitter) * float(np.sum(np.square(alpha, dtype=np.float64))))
  solve_seconds += time.perf_counter() - t0
  return Solution(alpha=np.ascontiguousarray(alpha),
                  sq_norm=sq_norm,
                  jitter=jitter,
                  cholesky_failures=attempt,
                  kernel_seconds=kernel_seconds,
                  solve_seconds=solve_seconds)


def random_conv_features(images: np.ndarray,
                         num_filters: int,
                         filter_size: int = 5,
                         pool: int = 2,
                         seed: int = 0,
                         batch_size: int = 256) -> np.ndarray:
  """A random one-layer conv net: [N, H, W, C] -> [N, num_filters pool^2] float32.

  Filters are i.i.d. Gaussian with unit-norm-scaled fan-in, biases uniform in
  [-1, 1]; ReLU; average pooling over a pool x pool grid of the (VALID)
  output map. Features are divided by sqrt(dimension) so that <phi, phi> is
  O(1).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  c = images.shape[-1]
  fan_in = filter_size * filter_size * c
  filters = (rng.standard_normal(
      (filter_size, filter_size, c, num_filters)) / np.sqrt(fan_in)).astype(np.float32)
  bias = rng.uniform(-1.0, 1.0, num_filters).astype(np.float32)
  h = images.shape[1] - filter_size + 1
  edges = np.linspace(0, h, pool + 1).astype(int)
  dim = num_filters * pool * pool
  out = np.empty((len(images), dim), np.float32)
  w_t, b_t = tf.constant(filters), tf.constant(bias)

  @tf.function(jit_compile=False)
  def fn(x):
    act = tf.nn.relu(tf.nn.conv2d(x, w_t, 1, 'VALID') + b_t)
    cells = [
        tf.reduce_mean(act[:, edges[i]:edges[i + 1], edges[j]:edges[j + 1]], [1, 2])
        for i in range(pool)
        for j in range(pool)
    ]
    return tf.concat(cells, axis=1) / np.sqrt(dim)

  for i in range(0, len(images), batch_size):
    out[i:i + batch_size] = fn(tf.constant(images[i:i + batch_size], tf.float32)).numpy()
  return out


def fit_and_evaluate(x_train: np.ndarray,
                     y_train: np.ndarray,
                     x_test: np.ndarray,
                     y_test: np.ndarray,
                     num_classes: int,
                     kernel: str = 'gaussian',
                     gamma: float = 0.02,
                     l2: float = 0.0,
                     block_size: int = 2048,
                     train_eval_size: int | None = None) -> dict:
  """Solves K alpha = one-hot(y_train) and reports errors and the norm (section 5).

  Train predictions use a fresh kernel (not the factor) on all training points,
  or on `train_eval_size` of them (evenly spaced) to save time; then
  `train_error` and `max_residual` are on that subset. `norm` is
  sqrt(trace(alpha^T K alpha)) from the fresh kernel when all training points
  are evaluated, else from the factor (`norm_from_factor`, always reported).
  """
  if kernel not in KERNELS:
    raise ValueError(f'kernel={kernel!r}; allowed: {KERNELS}')
  x_train = np.ascontiguousarray(x_train.reshape(len(x_train), -1), np.float32)
  x_test = np.ascontiguousarray(x_test.reshape(len(x_test), -1), np.float32)
  y_onehot = np.eye(num_classes, dtype=np.float32)[np.asarray(y_train, np.int64)]
  sol = solve(x_train, y_onehot, kernel, gamma, l2, block_size)
  t0 = time.perf_counter()
  n = len(x_train)
  rows = (np.arange(n) if not train_eval_size or train_eval_size >= n else np.linspace(
      0, n - 1, train_eval_size).round().astype(np.int64))
  p_train = predict(x_train, sol.alpha, x_train[rows], kernel, gamma)
  p_test = predict(x_train, sol.alpha, x_test, kernel, gamma)
  predict_seconds = time.perf_counter() - t0
  logging.info('predictions in %.1f s', predict_seconds)
  norm_from_factor = float(np.sqrt(max(sol.sq_norm, 0.0)))
  if len(rows) == n:
    norm = float(np.sqrt(max(float(np.sum(sol.alpha.astype(np.float64) * p_train)), 0.0)))
  else:
    norm = norm_from_factor
  return dict(n=n,
              d=x_train.shape[1],
              num_test=len(x_test),
              kernel=kernel,
              gamma=gamma if kernel == 'gaussian' else None,
              l2=l2,
              train_eval_size=len(rows),
              train_error=float(np.mean(np.argmax(p_train, 1) != y_train[rows])),
              test_error=float(np.mean(np.argmax(p_test, 1) != y_test)) if len(y_test) else None,
              norm=norm,
              norm_from_factor=norm_from_factor,
              max_residual=float(np.max(np.abs(p_train - y_onehot[rows]))),
              jitter=sol.jitter,
              cholesky_failures=sol.cholesky_failures,
              kernel_seconds=sol.kernel_seconds,
              solve_seconds=sol.solve_seconds,
              predict_seconds=predict_seconds,
              precision='float32 kernel and Cholesky')


def load_features(
    dataset: str,
    data_dir: str | None,
    train_size: int | None,
    randomization: registry.Randomization,
    features: str = 'pixels',
    num_filters: int = 1000,
    filter_size: int = 5,
    pool: int = 2,
    image_cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, float]:
  """(x_train [n, D], y_train, x_test, y_test, num_classes, label noise)."""
  from rethinking_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import randomize  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import sources  # pylint: disable=g-import-not-at-top
  if features not in FEATURES:
    raise ValueError(f'features={features!r}; allowed: {FEATURES}')
  if features == 'pixels':
    train, test, num_classes, noise = pipeline.randomized_arrays(dataset,
                                                                 data_dir,
                                                                 randomization,
                                                                 train_size,
                                                                 image_cache=image_cache)
    if randomization.inputs == 'original':
      x_train = train.images.astype(np.float32) / 255.0
      x_test = test.images.astype(np.float32) / 255.0
    else:
      mean, std = randomize.channel_stats(train.images)
      x_train, x_test = (pipeline.materialize(arrays,
                                              randomization,
                                              mean,
                                              std,
                                              is_train,
                                              centre=False)[0].numpy()
                         for arrays, is_train in ((train, True), (test, False)))
    y_train, y_test = train.labels, test.labels
  else:
    x_train, y_train, x_test, y_test, noise = pipeline.numpy_arrays(dataset, data_dir,
                                                                    randomization, train_size,
                                                                    image_cache)
    _, num_classes = sources.check_available(dataset, data_dir)
    if features == 'random_conv':
      x_train = random_conv_features(x_train, num_filters, filter_size, pool, randomization.seed)
      x_test = random_conv_features(x_test, num_filters, filter_size, pool, randomization.seed)
  flat = lambda a: a.reshape(len(a), -1)
  return flat(x_train), y_train, flat(x_test), y_test, num_classes, noise


def run(dataset: str,
        data_dir: str | None,
        train_size: int | None,
        randomization: registry.Randomization,
        kernel: str = 'gaussian',
        gamma: float = 0.02,
        l2: float = 0.0,
        features: str = 'pixels',
        num_filters: int = 1000,
        filter_size: int = 5,
        pool: int = 2,
        block_size: int = 2048,
        train_eval_size: int | None = None,
        image_cache: bool = True) -> dict:
  """Section 5 on a data set: features, min-norm interpolation, errors, norm.

  `image_cache`: as in `loaders.load_arrays`.
  """
  t0 = time.perf_counter()
  x_train, y_train, x_test, y_test, num_classes, noise = load_features(
      dataset, data_dir, train_size, randomization, features, num_filters, filter_size, pool,
      image_cache)
  feature_seconds = time.perf_counter() - t0
  result = fit_and_evaluate(x_train, y_train, x_test, y_test, num_classes, kernel, gamma, l2,
                            block_size, train_eval_size)
  result = dict(dataset=dataset,
                labels=randomization.labels,
                inputs=randomization.inputs,
                label_noise_fraction=noise,
                features=features,
                feature_seconds=feature_seconds,
                **result)
  if features == 'random_conv':
    result.update(num_filters=num_filters, filter_size=filter_size, pool=pool)
  result['seconds'] = time.perf_counter() - t0
  return result
