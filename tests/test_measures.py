"""Each measure's formula against an independent numpy computation on a tiny model."""

import itertools
import math

import keras
import numpy as np
import pytest

from rethinking_tf.measures import agreement
from rethinking_tf.measures import layers as layers_lib
from rethinking_tf.measures import margins
from rethinking_tf.measures import norms
from rethinking_tf.measures import optimization
from rethinking_tf.measures import rademacher
from rethinking_tf.measures import sharpness


def _mlp(d_in=4, hidden=3, out=2, seed=0, bias_scale=0.5):
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((d_in,))
  x = keras.layers.Dense(hidden, activation='relu')(inputs)
  model = keras.Model(inputs, keras.layers.Dense(out)(x))
  rng = np.random.default_rng(seed)
  model.set_weights(
      [rng.normal(size=w.shape) * (1 if w.ndim > 1 else bias_scale) for w in model.get_weights()])
  return model


def _conv_bn_model(seed=0):
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((5, 5, 2))
  x = keras.layers.Conv2D(3, 3, padding='same', use_bias=False)(inputs)
  x = keras.layers.BatchNormalization(scale=False)(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.Flatten()(x)
  model = keras.Model(inputs, keras.layers.Dense(2)(x))
  rng = np.random.default_rng(seed)
  bn = model.layers[2]
  bn.beta.assign(rng.normal(size=3))
  bn.moving_mean.assign(rng.normal(size=3))
  bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=3))
  return model


def test_dense_spectral_norm_is_numpys():
  w = np.random.default_rng(0).normal(size=(7, 4))
  assert norms.dense_spectral_norm(w) == pytest.approx(np.linalg.norm(w, 2), rel=1e-10)
  assert norms.dense_spectral_norm(w.T) == pytest.approx(np.linalg.norm(w, 2), rel=1e-10)


def _circular_conv_matrix(kernel, h, w):
  """The (h*w*c_in, h*w*c_out) matrix of the circular 'same' cross-correlation."""
  kh, kw, cin, cout = kernel.shape
  mat = np.zeros((h * w * cin, h * w * cout))
  for p, q, o in itertools.product(range(h), range(w), range(cout)):
    for a, b, c in itertools.product(range(kh), range(kw), range(cin)):
      i, j = (p + a - kh // 2) % h, (q + b - kw // 2) % w
      mat[(i * w + j) * cin + c, (p * w + q) * cout + o] += kernel[a, b, c, o]
  return mat


@pytest.mark.parametrize('shape,hw', [((3, 3, 2, 3), (5, 5)), ((2, 3, 3, 2), (4, 6)),
                                      ((3, 3, 1, 1), (2, 2))])
def test_conv_spectral_norm_is_the_circular_convolutions(shape, hw):
  kernel = np.random.default_rng(1).normal(size=shape)
  dense = np.linalg.norm(_circular_conv_matrix(kernel, *hw), 2)
  assert norms.conv_spectral_norm(kernel, hw) == pytest.approx(dense, rel=1e-9)
  # and it is not the norm of the reshaped kernel
  assert norms.conv_spectral_norm(kernel,
                                  hw) != pytest.approx(np.linalg.norm(kernel.reshape(-1, shape[-1]),
                                                                      2),
                                                       rel=1e-3)


def test_path_norm_is_the_sum_over_paths():
  model = _mlp()
  w1, b1, w2, b2 = model.get_weights()
  total = 0.0
  for i, j, k in itertools.product(range(4), range(3), range(2)):  # input -> hidden -> output
    total += w1[i, j]**2 * w2[j, k]**2
  for j, k in itertools.product(range(3), range(2)):  # hidden bias -> output
    total += b1[j]**2 * w2[j, k]**2
  total += np.sum(b2**2)  # output bias
  assert norms.path_norm(model) == pytest.approx(total, rel=1e-5)
  np.testing.assert_array_equal(model.get_weights()[0], w1)  # weights restored


def test_batchnorm_folds_into_the_conv():
  model = _conv_bn_model()
  conv, bn, dense = model.layers[1], model.layers[2], model.layers[5]
  s = 1 / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
  kernel = conv.kernel.numpy() * s
  bias = bn.beta.numpy() - bn.moving_mean.numpy() * s
  found = layers_lib.linear_layers(model)
  assert [l.kind for l in found] == ['conv', 'dense'] and found[0].input_hw == (5, 5)
  np.testing.assert_allclose(found[0].kernel, kernel, rtol=1e-6)
  np.testing.assert_allclose(found[0].bias, bias, rtol=1e-6, atol=1e-7)
  # the same network without BatchNorm, built from numpy's folded weights
  inputs = keras.Input((5, 5, 2))
  x = keras.layers.Conv2D(3, 3, padding='same')(inputs)
  x = keras.layers.Flatten()(keras.layers.ReLU()(x))
  plain = keras.Model(inputs, keras.layers.Dense(2)(x))
  plain.set_weights([kernel, bias, *dense.get_weights()])
  x = np.random.default_rng(2).normal(size=(4, 5, 5, 2)).astype(np.float32)
  np.testing.assert_allclose(model(x, training=False), plain(x), rtol=1e-4, atol=1e-5)
  assert norms.path_norm(model) == pytest.approx(norms.path_norm(plain), rel=1e-4)


def test_norm_measures_against_numpy():
  model, initial = _mlp(seed=0), _mlp(seed=1)
  w = [model.get_weights()[0], model.get_weights()[2]]
  w0 = [initial.get_weights()[0], initial.get_weights()[2]]
  gamma = 0.7
  out = norms.norm_measures(model, initial, gamma)
  fro = [np.sum(k**2) for k in w]
  spec = [np.linalg.norm(k, 2) for k in w]
  assert out['log_prod_fro'] == pytest.approx(np.log(np.prod(fro)), rel=1e-6)
  assert out['sum_fro_over_margin'] == pytest.approx(sum(fro) / gamma**2, rel=1e-6)
  assert out['log_prod_spec'] == pytest.approx(np.log(np.prod(spec)**2), rel=1e-6)
  assert out['sum_spec'] == pytest.approx(sum(s**2 for s in spec), rel=1e-6)
  assert out['dist_fro'] == pytest.approx(sum(np.sum((a - b)**2) for a, b in zip(w, w0)), rel=1e-6)
  assert out['dist_spec'] == pytest.approx(sum(np.linalg.norm(a - b, 2)**2 for a, b in zip(w, w0)),
                                           rel=1e-6)
  # Bartlett et al.: prod ||W||_2 (sum (||(W - W0)^T||_{2,1} / ||W||_2)^(2/3))^(3/2) / gamma,
  # ||A^T||_{2,1} summing the l2 norms of A's rows (Keras kernels are A^T).
  rows21 = [sum(np.linalg.norm((a - b)[:, j]) for j in range(a.shape[1])) for a, b in zip(w, w0)]
  r_a = np.prod(spec) * sum((r / s)**(2 / 3) for r, s in zip(rows21, spec))**1.5
  assert out['log_spectral_complexity_over_margin'] == pytest.approx(np.log(r_a / gamma), rel=1e-6)
  assert norms.norm_measures(model, None, None)['dist_fro'] == 'no initial weights'


def test_margin_against_a_loop():
  out = np.random.default_rng(3).normal(size=(50, 4))
  y = np.random.default_rng(4).integers(0, 4, 50)
  direct = [out[i, y[i]] - max(out[i, j] for j in range(4) if j != y[i]) for i in range(50)]
  np.testing.assert_allclose(margins.example_margins(out, y), direct)
  assert margins.margin(out, y) == pytest.approx(np.percentile(direct, 10))
  assert margins.margin_measures(out, y)['inverse_margin'] == pytest.approx(
      1 / np.percentile(direct, 10)**2)


def test_bisection_finds_the_threshold():
  calls = []
  found = sharpness.bisect(lambda s: calls.append(s) or s, depth=30)  # drop(s) = s
  assert sharpness.TARGET_DROP * 0.999 < found <= sharpness.TARGET_DROP and len(calls) == 30
  assert sharpness.bisect(lambda s: 1.0, depth=5) == sharpness.SEARCH_RANGE[0]  # always too much
  assert sharpness.bisect(lambda s: 0.0, depth=40) == pytest.approx(2.0, rel=1e-6)  # never


def _separable(n=200, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def test_sharpness_searches_on_a_tiny_model():
  x, y = _separable()
  model = _mlp()
  model.set_weights([
      np.array([[3, -3, 0], [3, -3, 0], [0, 0, 0], [0, 0, 0]], np.float32),
      np.zeros(3, np.float32),
      np.array([[-1, 1], [1, -1], [0, 0]], np.float32),
      np.zeros(2, np.float32)
  ])
  assert margins.accuracy(model, x, y) == 1.0
  budget = sharpness.Budget(examples=200, mc_samples=3, search_depth=12, ascent_steps=3)
  before = model.get_weights()
  sigma = sharpness.noise_sigma(model, x, y, budget, magnitude=False)
  mag = sharpness.noise_sigma(model, x, y, budget, magnitude=True)
  alpha = sharpness.worst_case_alpha(model, x, y, budget)
  for a, b in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)  # every search restores the weights
  assert 1e-3 < sigma < 2 and 1e-3 < mag < 2 and 1e-4 < alpha < 2
  # ascent inside the box hurts more than noise of that size: alpha < sigma' (both relative)
  assert alpha < mag
  assert sharpness.noise_sigma(model, x, y, budget, magnitude=False) == sigma  # seeded


def test_pacbayes_terms_against_the_formulas():
  rng = np.random.default_rng(5)
  w, w0, m, s = rng.normal(size=20), rng.normal(size=20), 1000, 0.05
  t = sharpness.pacbayes_terms(s, w, w0, m)
  assert t['pacbayes_init'] == pytest.approx(
      np.sum((w - w0)**2) / (4 * s * s) + math.log(m / s) + 10)
  assert t['pacbayes_orig'] == pytest.approx(np.sum(w**2) / (4 * s * s) + math.log(m / s) + 10)
  assert t['pacbayes_flatness'] == pytest.approx(400)
  mt = sharpness.magnitude_terms(s, w, w0, m)
  eps = sharpness.MAGNITUDE_EPS
  d = w - w0
  expect = sum(0.25 * math.log((eps**2 + (s**2 + 1) * np.sum(d**2) / 20) / (eps**2 + s**2 * di**2))
               for di in d) + math.log(m / s) + 10
  assert mt['pacbayes_mag_init'] == pytest.approx(expect)
  assert 'pacbayes_init' not in sharpness.pacbayes_terms(s, w, None, m)


def test_optimization_measures():
  metrics = [
      dict(epoch=1, step=10, train_eval_loss=0.5),
      dict(epoch=2, step=20, train_eval_loss=0.09),
      dict(epoch=3, step=30, train_eval_loss=0.05)
  ]
  steps = [dict(step=s, train_loss=l) for s, l in ((1, 2.0), (5, float('nan')), (7, 0.1), (9, 0.2))]
  results = {'fit_step': None, 'fit_threshold': 1.0, 'train_accuracy': 0.99}
  out = optimization.optimization_measures(metrics, None, results)
  assert out['steps_to_loss_0.1'] == 20 and out['final_train_loss'] == 0.05
  assert 'never fitted' in out['steps_to_fit']
  assert optimization.optimization_measures(metrics, steps,
                                            {'fit_step': 30})['steps_to_loss_0.1'] == 7
  assert optimization.optimization_measures(metrics, steps, {'fit_step': 30})['steps_to_fit'] == 30
  missing = optimization.optimization_measures(metrics[:1], None, results)['steps_to_loss_0.1']
  assert 'never reached 0.1' in missing and '0.5' in missing


def test_rademacher_correlation_formula():
  out = np.array([[0.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
  sigma = np.array([1, 1, -1])
  soft, hard = rademacher.correlation(out, sigma)
  p = np.exp(out) / np.exp(out).sum(1, keepdims=True)
  assert soft == pytest.approx(np.mean(sigma * (p[:, 1] - p[:, 0])))
  assert hard == pytest.approx((1 - 1 + 0) / 3)
  labels = rademacher.rademacher_labels(1000, 0)
  assert set(labels) == {-1, 1} and abs(labels.mean()) < 0.1


def test_rademacher_estimate_fits_random_signs():
  x = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)

  def build(k):
    inputs = keras.Input((8,))
    h = keras.layers.Dense(256, activation='relu')(inputs)
    return keras.Model(inputs, keras.layers.Dense(k)(h))

  out = rademacher.estimate(build,
                            x,
                            learning_rate=0.1,
                            lr_decay=1.0,
                            momentum=0.9,
                            batch_size=32,
                            epochs=30)
  assert out['rademacher_sign'] > 0.9 and 0.5 < out['rademacher'] <= 1.0


def test_disagreement():
  assert agreement.disagreement(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 0])) == 0.5
  with pytest.raises(ValueError, match='same length'):
    agreement.disagreement(np.zeros(3), np.zeros(4))


def _check_layers_found_and_restored(name, count):
  from rethinking_tf import models  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 3)).astype(np.float32)
  model = models.build(name, (28, 28, 3), 10, seed=0)
  before = np.asarray(model(x, training=False))
  assert len(layers_lib.linear_layers(model)) == count
  assert np.isfinite(norms.path_norm(model)) and norms.path_norm(model) > 0
  np.testing.assert_allclose(model(x, training=False), before, rtol=1e-6)
  return model


def test_alexnet_measures():
  model = _check_layers_found_and_restored('alexnet', 5)
  from rethinking_tf import models  # pylint: disable=g-import-not-at-top
  out = norms.norm_measures(model, models.build('alexnet', (28, 28, 3), 10, seed=1), 1.0)
  assert all(np.isfinite(v) for v in out.values())


@pytest.mark.slow
def test_inception_layers_with_batchnorm_folded():
  _check_layers_found_and_restored('inception', 20)
