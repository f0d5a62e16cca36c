"""Tests of minimum-norm kernel interpolation (paper section 5)."""

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from rethinking_tf.theory import kernels


def _dense_kernel(x, kernel, gamma):
  x = x.astype(np.float64)
  if kernel == 'linear':
    return x @ x.T
  sq = np.sum((x[:, None, :] - x[None, :, :])**2, -1)
  return np.exp(-gamma * sq)


def _data(n, d, k=10, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (n, d)).astype(np.float32)
  return x, rng.integers(0, k, n)


@pytest.mark.parametrize('kernel', kernels.KERNELS)
def test_blocked_kernel_matches_numpy(kernel):
  x, _ = _data(53, 9)
  k = kernels.kernel_matrix(x, kernel, gamma=0.3, block_size=7)
  np.testing.assert_allclose(k, _dense_kernel(x, kernel, 0.3), rtol=1e-5, atol=1e-5)
  upper = kernels.kernel_matrix(x,
                                kernel,
                                gamma=0.3,
                                block_size=7,
                                out=np.zeros((53, 53), np.float32),
                                upper_only=True)
  np.testing.assert_allclose(np.triu(upper), np.triu(k), rtol=1e-6, atol=1e-6)
  assert np.all(upper[7:, :7] == 0)  # below the first diagonal block: untouched zeros


@pytest.mark.parametrize('l2', [0.0, 0.1])
def test_solve_matches_numpy(l2):
  x, labels = _data(200, 30)
  y = np.eye(10, dtype=np.float32)[labels]
  sol = kernels.solve(x, y, 'gaussian', gamma=0.2, l2=l2, block_size=64)
  k = _dense_kernel(x, 'gaussian', 0.2)
  alpha = np.linalg.solve(k + l2 * np.eye(200), y)
  assert sol.jitter == 0.0 and sol.cholesky_failures == 0
  np.testing.assert_allclose(sol.alpha, alpha, rtol=1e-3, atol=1e-3 * np.abs(alpha).max())
  np.testing.assert_allclose(np.sqrt(sol.sq_norm),
                             np.sqrt(np.trace(alpha.T @ k @ alpha)),
                             rtol=1e-4)


def test_fit_and_evaluate_random_labels_interpolates():
  x, labels = _data(300, 20)
  xt, yt = _data(100, 20, seed=1)
  r = kernels.fit_and_evaluate(x, labels, xt, yt, 10, 'gaussian', gamma=0.5)
  assert r['train_error'] == 0.0 and r['max_residual'] < 1e-3
  assert r['test_error'] > 0.6  # labels are unrelated to inputs
  k = _dense_kernel(x, 'gaussian', 0.5)
  alpha = np.linalg.solve(k, np.eye(10)[labels])
  np.testing.assert_allclose(r['norm'], np.sqrt(np.trace(alpha.T @ k @ alpha)), rtol=1e-4)
  np.testing.assert_allclose(r['norm_from_factor'], r['norm'], rtol=1e-4)
  sub = kernels.fit_and_evaluate(x, labels, xt, yt, 10, 'gaussian', gamma=0.5, train_eval_size=50)
  assert sub['train_eval_size'] == 50 and sub['train_error'] == 0.0


def test_singular_kernel_gets_reported_jitter():
  x, labels = _data(100, 5)  # linear kernel of rank 5 < n
  r = kernels.fit_and_evaluate(x, labels, x[:10], labels[:10], 10, 'linear')
  assert r['cholesky_failures'] >= 1 and r['jitter'] > 0


def test_kernel_memory_is_one_float32_matrix():
  n, d = 3000, 16  # one float32 kernel: 36 MB; float64 would be 72 MB
  x, labels = _data(n, d)
  y = np.eye(10, dtype=np.float32)[labels]
  tracemalloc.start()
  kernels.solve(x, y, 'gaussian', gamma=0.5, block_size=128)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < n * n * 4 * 1.15, peak / (n * n * 4)


def test_random_conv_features():
  images = np.random.default_rng(0).standard_normal((6, 12, 12, 3)).astype(np.float32)
  f = kernels.random_conv_features(images, num_filters=8, filter_size=3, pool=2, seed=1)
  assert f.shape == (6, 8 * 4) and np.all(f >= 0)
  # Batches of 4 + 2 instead of one of 6: the convolution kernel may block its
  # sums differently per batch size (it does on AVX2-only CPUs), so equal up
  # to float32 rounding of 3x3x3-term sums, not bit for bit.
  np.testing.assert_allclose(kernels.random_conv_features(images, 8, 3, 2, seed=1, batch_size=4),
                             f,
                             rtol=1e-5,
                             atol=1e-6 * np.abs(f).max())


INPUTS = ('original', 'shuffled_pixels', 'random_pixels', 'gaussian')


@pytest.mark.parametrize('features', ['pixels', 'random_conv'])
def test_run_every_inputs_mode_on_digits(monkeypatch, features):
  """kernels.run for each --inputs mode: the randomization reaches the features
  as section 2.1 says, and the kernel still interpolates (section 5)."""
  from rethinking_tf import registry  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import randomize  # pylint: disable=g-import-not-at-top
  seen = {}  # inputs mode -> the (x_train, x_test) that run() fitted
  fit = kernels.fit_and_evaluate

  def recording_fit(x_train, y_train, x_test, *args, **kwargs):
    seen[mode] = (x_train, x_test)
    return fit(x_train, y_train, x_test, *args, **kwargs)

  monkeypatch.setattr(kernels, 'fit_and_evaluate', recording_fit)
  conv = dict(num_filters=16, filter_size=5, pool=2, gamma=50.0)  # well conditioned here
  results = {}
  for mode in INPUTS:
    results[mode] = kernels.run('digits',
                                None,
                                120,
                                registry.Randomization(labels='random', inputs=mode, seed=3),
                                features=features,
                                **(conv if features == 'random_conv' else {}))
  d = 32 * 32 * 3 if features == 'pixels' else 16 * 2 * 2
  for mode, r in results.items():
    assert (r['inputs'], r['features'], r['n'], r['d'], r['num_test']) == (mode, features, 120, d,
                                                                           450)
    assert seen[mode][0].shape == (120, d) and seen[mode][1].shape == (450, d)
    assert np.isfinite(r['norm']) and r['max_residual'] < 0.1, r
    assert r['train_error'] == 0.0 and 0.0 <= r['test_error'] <= 1.0, r

  def differs(a, b):  # far apart, not float32 rounding
    return np.abs(a - b).max() > 0.1

  (orig_train, orig_test) = seen['original']
  for mode in INPUTS[1:]:  # every randomization changes the training inputs
    assert differs(seen[mode][0], orig_train), mode
  # shuffled_pixels permutes the test images too; the other two keep them.
  assert differs(seen['shuffled_pixels'][1], orig_test)
  for mode in ('random_pixels', 'gaussian'):
    np.testing.assert_allclose(seen[mode][1], orig_test, rtol=1e-5, atol=1e-5)
  if features != 'pixels':
    return
  # Pixel features are the images / 255: check each mode's exact semantics.
  train, test, _, _ = pipeline.randomized_arrays('digits', None, registry.Randomization(), 120)
  as_pixels = lambda x: x.reshape(len(x), 32 * 32, 3)
  orig = as_pixels(train.images / np.float32(255))
  np.testing.assert_allclose(as_pixels(orig_train), orig, rtol=1e-6)
  np.testing.assert_allclose(as_pixels(orig_test),
                             as_pixels(test.images / np.float32(255)),
                             rtol=1e-6)
  perm = randomize.pixel_permutation(32, 32, 3).numpy()  # one permutation, train and test
  np.testing.assert_allclose(as_pixels(seen['shuffled_pixels'][0]), orig[:, perm], rtol=1e-6)
  np.testing.assert_allclose(as_pixels(seen['shuffled_pixels'][1]),
                             as_pixels(orig_test)[:, perm],
                             rtol=1e-6)
  # A common permutation leaves Gaussian-kernel distances, so the fit, unchanged.
  assert abs(results['shuffled_pixels']['test_error'] - results['original']['test_error']) <= 0.01
  assert results['shuffled_pixels']['norm'] == pytest.approx(results['original']['norm'], rel=1e-3)
  # random_pixels: each image a permutation of its own pixels (not all the same one).
  random = as_pixels(seen['random_pixels'][0])
  key = lambda a: a[np.lexsort(a.T[::-1])]
  for i in range(0, 120, 17):
    np.testing.assert_allclose(key(random[i]), key(orig[i]), rtol=1e-6)
  # gaussian: noise with the training set's per-channel mean and std.
  mean, std = randomize.channel_stats(train.images)
  noise = as_pixels(seen['gaussian'][0]).reshape(-1, 3)
  np.testing.assert_allclose(noise.mean(0), mean, atol=0.01)
  np.testing.assert_allclose(noise.std(0), std, rtol=0.02)


def test_binary_digits_random_labels():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([
      sys.executable, '-m', 'rethinking_tf.kernels', '--dataset=digits', '--train_size=500',
      '--labels=random'
  ],
                        capture_output=True,
                        text=True,
                        env=env,
                        timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for key in ('n', 'train_error', 'test_error', 'norm', 'seconds'):
    assert key in result
  assert result['n'] == 500 and result['train_error'] == 0.0
  assert result['test_error'] > 0.6


def test_jitter_with_and_without_kernel_backup_agree():
  x, labels = _data(120, 6)
  y = np.eye(10, dtype=np.float32)[labels]
  a = kernels.solve(x, y, 'linear', backup_bytes=0)
  b = kernels.solve(x, y, 'linear')
  assert a.jitter == b.jitter > 0
  # Bit for bit: the backup is a copy of the kernel that `a` recomputes with the
  # same numpy products on the same shapes in the same process.
  np.testing.assert_array_equal(a.alpha, b.alpha)
