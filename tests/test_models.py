"""Exact parameter counts (appendix A), regularizers, and memorization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rethinking_tf import models
from rethinking_tf.models import layers

CIFAR = (28, 28, 3)


@pytest.mark.parametrize('name, batch_norm, count', [
    ('inception', True, 1_649_402),
    ('inception', False, 1_649_402),
    ('alexnet', True, 1_387_786),
    ('mlp_1x512', True, 1_209_866),
    ('mlp_3x512', True, 1_735_178),
])
def test_exact_trainable_parameter_counts(name, batch_norm, count):
  model = models.build(name, CIFAR, 10, batch_norm=batch_norm)
  assert models.trainable_params(model) == count


def test_inception_batch_norm_toggle():
  with_bn = models.build('inception', CIFAR, 10, batch_norm=True)
  without = models.build('inception', CIFAR, 10, batch_norm=False)
  bn = lambda m: [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bn(with_bn)) == 19 and not bn(without)  # 1 + 8 x 2 + 2 conv modules
  assert all(not l.scale and l.momentum == 0.9 for l in bn(with_bn))


def test_weight_decay_is_half_lambda_sum_of_squared_kernels():
  model = models.build('mlp_1x512', CIFAR, 10, weight_decay=1e-2)
  kernels = [w for w in model.trainable_weights if 'kernel' in w.path]
  expected = 1e-2 / 2 * sum(float(tf.reduce_sum(w**2)) for w in kernels)
  assert len(model.losses) == 2
  assert sum(float(l) for l in model.losses) == pytest.approx(expected, rel=1e-5)
  assert not models.build('mlp_1x512', CIFAR, 10, weight_decay=0.0).losses


def test_dropout_only_when_asked():
  drop = lambda m: [l for l in m.layers if isinstance(l, keras.layers.Dropout)]
  assert not drop(models.build('alexnet', CIFAR, 10, dropout=0.0))
  assert len(drop(models.build('alexnet', CIFAR, 10, dropout=0.5))) == 2
  assert len(drop(models.build('mlp_1x512', CIFAR, 10, dropout=0.5))) == 1


def test_names_and_learning_rates():
  assert models.is_valid_name('mlp_2x64') and not models.is_valid_name('resnet')
  assert models.default_learning_rate('inception') == 0.1
  assert models.default_learning_rate('alexnet') == 0.01
  with pytest.raises(ValueError, match='allowed'):
    models.build('resnet', CIFAR, 10)


@pytest.mark.parametrize('name', ['mlp_1x64', 'alexnet', 'inception', 'inception_v3'])
def test_factories_reject_unknown_arguments(name):
  with pytest.raises(TypeError, match='bogus'):
    models.build(name, (75, 75, 3) if name == 'inception_v3' else CIFAR, 10, bogus=1)


@pytest.mark.parametrize('name, shape', [('inception', CIFAR), ('inception_v3', (75, 75, 3))])
def test_batch_norm_synchronized_when_asked(name, shape):
  bn = lambda m: [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  synced = bn(models.build(name, shape, 10, synchronized_bn=True))
  plain = bn(models.build(name, shape, 10, synchronized_bn=False))
  assert synced and all(l.synchronized for l in synced)
  assert plain and not any(l.synchronized for l in plain)
  # The models without BatchNorm take (and need) no BatchNorm settings.
  assert models.build('alexnet', CIFAR, 10, synchronized_bn=True, bn_momentum=0.5)


def test_lrn_layer_round_trips_its_config():
  layer = layers.LocalResponseNormalization(depth_radius=2)
  clone = layers.LocalResponseNormalization.from_config(layer.get_config())
  x = tf.random.normal([2, 4, 4, 8])
  np.testing.assert_allclose(layer(x), clone(x))
  assert clone.depth_radius == 2


@pytest.mark.parametrize(
    'radius,bias,alpha,beta,channels',
    [
        (4, 1.0, 0.001 / 9.0, 0.75, 64),  # small Alexnet's LRN
        (2, 2.0, 1e-2, 0.5, 7),  # windows clipped at both ends, generic beta
        (5, 1.0, 0.05, 0.75, 3),  # window wider than the channels
    ])
def test_lrn_matches_tensorflow_values_and_gradients(radius, bias, alpha, beta, channels):
  """layers.local_response_normalization is tf.nn.local_response_normalization."""
  x = 3.0 * tf.random.stateless_normal([4, 5, 6, channels], [1, 2])
  dy = tf.random.stateless_normal(x.shape, [3, 4])

  def value_and_grad(fn):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x, depth_radius=radius, bias=bias, alpha=alpha, beta=beta)
    return y, tape.gradient(y, x, output_gradients=dy)

  y, dx = value_and_grad(layers.local_response_normalization)
  y_tf, dx_tf = value_and_grad(tf.nn.local_response_normalization)
  np.testing.assert_allclose(y, y_tf, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, dx_tf, rtol=1e-4, atol=1e-5)
  assert float(tf.reduce_max(tf.abs(dx_tf - dy))) > 1e-3  # the normalization matters here


@pytest.mark.parametrize('scale,policy', [(False, 'float32'), (True, 'float32'),
                                          (False, 'mixed_bfloat16')])
def test_fused_batch_norm_matches_keras(scale, policy):
  """layers.BatchNormalization computes what keras.layers.BatchNormalization does."""
  x = 2.0 * tf.random.stateless_normal([8, 5, 5, 6], [1, 2]) + 1.0
  dy = tf.random.stateless_normal(x.shape, [3, 4])
  keras.mixed_precision.set_global_policy(policy)
  try:
    ours = layers.BatchNormalization(scale=scale, momentum=0.9)
    theirs = keras.layers.BatchNormalization(scale=scale, momentum=0.9)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  tol = dict(rtol=2e-2, atol=2e-2) if policy != 'float32' else dict(rtol=1e-4, atol=1e-4)
  results = []
  for layer in (ours, theirs):
    layer.build(x.shape)
    layer.beta.assign(tf.range(6, dtype=tf.float32) / 10)
    if scale:
      layer.gamma.assign(1.0 + tf.range(6, dtype=tf.float32) / 5)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(tf.cast(x, layer.compute_dtype), training=True)
    grads = tape.gradient(y, [x] + layer.trainable_weights, output_gradients=tf.cast(dy, y.dtype))
    results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
  assert len(results[0]) == len(results[1]) == (7 if scale else 6)
  for a, b in zip(*results):
    np.testing.assert_allclose(tf.cast(a, tf.float32), tf.cast(b, tf.float32), **tol)
  assert not np.allclose(ours.moving_variance, 1.0)  # the update happened


@pytest.mark.parametrize('kernel,strides,use_bias,policy', [(1, 1, False, 'float32'),
                                                            (1, 1, True, 'float32'),
                                                            (1, 1, False, 'mixed_bfloat16'),
                                                            (3, 1, False, 'float32'),
                                                            (1, 2, False, 'float32')])
def test_conv2d_matches_keras(kernel, strides, use_bias, policy):
  """layers.Conv2D computes what keras.layers.Conv2D does; 1x1 stride 1 as a MatMul."""
  x = tf.random.stateless_normal([4, 6, 6, 5], [5, 6])
  keras.mixed_precision.set_global_policy(policy)
  try:
    args = dict(filters=7, kernel_size=kernel, strides=strides, padding='same', use_bias=use_bias)
    ours, theirs = layers.Conv2D(**args), keras.layers.Conv2D(**args)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  ours.build(x.shape)
  theirs.build(x.shape)
  theirs.set_weights([w + 0.1 for w in ours.get_weights()])
  ours.set_weights(theirs.get_weights())
  dy = tf.random.stateless_normal(theirs.compute_output_shape(x.shape), [7, 8])
  tol = dict(rtol=2e-2, atol=2e-2) if policy != 'float32' else dict(rtol=1e-5, atol=1e-5)
  results = []
  for layer in (ours, theirs):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
    results.append([
        y, *tape.gradient(y, [x] + layer.trainable_weights, output_gradients=tf.cast(dy, y.dtype))
    ])
    assert y.shape == dy.shape
  assert results[0][0].dtype == results[1][0].dtype
  for a, b in zip(*results):
    np.testing.assert_allclose(tf.cast(a, tf.float32), tf.cast(b, tf.float32), **tol)
  graph = tf.function(ours).get_concrete_function(tf.TensorSpec([None, 6, 6, 5])).graph
  op_types = {op.type for op in graph.get_operations()}
  assert ('MatMul' in op_types) == (kernel == strides == 1)
  assert ('Conv2D' in op_types) == (kernel != 1 or strides != 1)


def test_inception_1x1_convolutions_are_matrix_products():
  model = models.build('inception', CIFAR, 10)
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  assert len(convs) == 19 and all(isinstance(l, layers.Conv2D) for l in convs)
  assert sum(tuple(l.kernel_size) == (1, 1) for l in convs) == 8


def test_same_seed_same_initial_weights():
  a = models.build('alexnet', CIFAR, 10, seed=3).get_weights()
  b = models.build('alexnet', CIFAR, 10, seed=3).get_weights()
  c = models.build('alexnet', CIFAR, 10, seed=4).get_weights()
  assert all(np.array_equal(x, y) for x, y in zip(a, b))  # seeded draws, same shapes: exact
  assert not np.array_equal(a[0], c[0])


def test_small_mlp_memorizes_random_labels():
  """Section 2: a network fits a few dozen randomly labelled examples exactly."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(48, 28, 28, 3)).astype(np.float32)
  y = rng.integers(0, 10, 48)
  keras.utils.set_random_seed(0)
  model = models.build('mlp_1x64', CIFAR, 10)
  model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'])
  before = model.evaluate(x, y, verbose=0)[1]
  model.fit(x, y, batch_size=16, epochs=30, verbose=0)
  assert before < 0.5
  assert model.evaluate(x, y, verbose=0)[1] == 1.0


def test_mixed_bfloat16_keeps_float32_logits():
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    model = models.build('alexnet', CIFAR, 10)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  out = model(tf.random.normal([2, *CIFAR]))
  assert out.dtype == tf.float32
  assert model.layers[1].compute_dtype == 'bfloat16'
  assert models.trainable_params(model) == 1_387_786
