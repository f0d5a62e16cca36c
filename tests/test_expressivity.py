"""Tests of Theorem 1's construction (paper section 4)."""

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from scipy.linalg import solve_triangular

from rethinking_tf.theory import expressivity as ex


def _points(n, d, seed=0):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((n, d)), rng.standard_normal(n)


@pytest.mark.parametrize('n,d', [(1, 1), (2, 3), (10, 5), (100, 784), (2000, 3)])
def test_exact_fit_random_inputs(n, d):
  x, y = _points(n, d, seed=n + d)
  cons = ex.construct(x, y, seed=1)
  model = ex.build_model(cons, (d,))
  out = ex.predict(model, x)
  assert out.shape == (n, 1)
  np.testing.assert_allclose(out[:, 0], y, atol=1e-6)
  assert cons.min_gap > 0


@pytest.mark.parametrize('n,d,k', [(1, 1, 1), (7, 4, 1), (50, 12, 1), (30, 6, 10)])
def test_weight_count(n, d, k):
  x, _ = _points(n, d)
  y = np.random.default_rng(1).standard_normal((n, k))
  cons = ex.construct(x, y)
  model = ex.build_model(cons, (d,))
  expected = 2 * n + d if k == 1 else d + n + k * n
  assert model.count_params() == expected == cons.num_weights
  assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected


def test_classification_and_one_hot_image_shaped():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((300, 4, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 300)
  r = ex.fit_and_evaluate(x, labels, x[:20], labels[:20], num_classes=10)
  assert r['train_accuracy'] == 1.0 and r['num_weights'] == 2 * 300 + 48
  assert r['max_abs_error'] < 1e-6 and r['test_accuracy'] == 1.0
  r = ex.fit_and_evaluate(x, labels, num_classes=10, one_hot=True, float32_check=False)
  assert r['train_accuracy'] == 1.0 and r['num_weights'] == 48 + 300 + 10 * 300


def test_duplicates_same_target_are_shared():
  x, y = _points(40, 6)
  x = np.concatenate([x, x[:5], -0.0 * x[:1] + x[:1]])
  y = np.concatenate([y, y[:5], y[:1]])
  cons = ex.construct(x, y)
  assert cons.num_duplicates == 6
  model = ex.build_model(cons, (6,))
  assert model.count_params() == 2 * 46 + 6
  np.testing.assert_allclose(ex.predict(model, x)[:, 0], y, atol=1e-8)


def test_duplicates_different_targets_raise():
  x, y = _points(20, 3)
  x = np.concatenate([x, x[7:8]])
  y = np.concatenate([y, y[7:8] + 1.0])
  with pytest.raises(ex.SeparationError, match="inputs 7 and 20 are identical"):
    ex.construct(x, y)


@pytest.mark.parametrize('theta', [0.1, 0.5])
def test_agrees_with_dense_triangular_solve(theta):
  x, y = _points(60, 4, seed=5)
  cons = ex.construct(x, y, theta=theta)
  a_mat = ex.dense_matrix(cons, x)
  order = np.argsort(x @ cons.a)
  a_sorted = a_mat[order]
  assert np.allclose(np.triu(a_sorted, 1), 0.0)  # lower triangular
  diag = np.diag(a_sorted)
  assert diag.min() > 0 and np.isclose(diag.min(), cons.min_gap)
  w_dense = solve_triangular(a_sorted, y[order], lower=True)
  np.testing.assert_allclose(cons.w[:, 0], w_dense, rtol=1e-6, atol=1e-9 * np.abs(w_dense).max())
  np.testing.assert_allclose(a_mat @ cons.w[:, 0], y, atol=1e-8)


def test_construction_memory_is_linear_in_n():
  n, d = 20_000, 8  # a dense n x n float64 matrix would be 3.2 GB
  x, y = _points(n, d)
  tracemalloc.start()
  cons = ex.construct(x, y)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < 50 * 2**20
  assert cons.w.shape == (n, 1)


def test_bad_theta():
  with pytest.raises(ValueError, match='theta'):
    ex.construct(*_points(3, 2), theta=1.0)


def _run_binary(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'rethinking_tf.expressivity', *args],
                        capture_output=True,
                        text=True,
                        env=env,
                        timeout=300,
                        check=False)


def test_binary_digits_random_labels():
  proc = _run_binary('--dataset=digits', '--train_size=200', '--labels=random')
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for key in ('num_weights', 'n', 'd', 'train_accuracy', 'max_abs_error', 'min_gap', 'seconds'):
    assert key in result
  assert result['n'] == 200 and result['d'] == 28 * 28 * 3
  assert result['num_weights'] == 2 * 200 + 28 * 28 * 3
  assert result['train_accuracy'] == 1.0


def test_distinct_points_closer_than_rounding_raise():
  x = np.array([[1.0, 0.0], [1.0 + 1e-15, 0.0]])
  with pytest.raises(ValueError, match='failed to separate'):
    ex.construct(x, np.array([0.0, 1.0]), max_tries=2)
