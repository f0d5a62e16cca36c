"""The paper's models (appendix A) as Keras functional factories, by name.

* `inception`: small Inception (1,649,402 trainable parameters on CIFAR-10);
  `batch_norm=False` gives "Inception w/o BatchNorm" with the same count
  (conv bias instead of BatchNorm's beta).
* `alexnet`: small Alexnet (1,387,786).
* `mlp_<layers>x<width>`: ReLU MLP, e.g. `mlp_1x512` (1,209,866) and
  `mlp_3x512` (1,735,178).
* `inception_v3`: Inception V3 for ImageNet (299x299), `keras.applications`
  architecture with an optional dropout before the logits.

Regularizers: `weight_decay` is the paper's (TF-slim) lambda: it adds
lambda/2 * sum(W^2) over every conv and dense kernel to the loss
(`keras.regularizers.L2(lambda / 2)`), not Keras' decoupled SGD weight decay;
biases and BatchNorm parameters are not decayed. 0 or None disables it.
`dropout` is the rate before the last dense layer(s); 0 or None disables it.

Under a mixed-precision policy the logits layer stays float32 (the loss and
metrics see float32) and LRN computes in float32.

BatchNorm uses `bn_momentum` (default 0.9 in the trainer: with the few steps
per epoch of CPU-sized subsets, Keras' 0.99 leaves the moving statistics far
behind the weights and inference-mode accuracy collapses; see
ENGINEERING-NOTES) and is synchronized across replicas when distributed.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from rethinking_tf import registry

# The names (and default learning rates) live in the TensorFlow-free registry.
MODEL_NAMES = registry.MODEL_NAMES
_MLP = registry.MLP_PATTERN
is_valid_name = registry.is_valid_model_name
default_learning_rate = registry.default_learning_rate


def _l2(weight_decay: float | None):
  return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _channel_window_sum(x: tf.Tensor, band: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
  """Weighted sum over each channel's window of neighbouring channels, per pixel:
  x @ band (+ bias, which grappler fuses into the product)."""
  channels = x.shape[-1]
  s = tf.linalg.matmul(tf.reshape(x, [-1, channels]), band)
  return tf.reshape(s if bias is None else tf.nn.bias_add(s, bias), tf.shape(x))


def local_response_normalization(x: tf.Tensor, depth_radius: int, bias: float, alpha: float,
                                 beta: float) -> tf.Tensor:
  """`tf.nn.local_response_normalization`, the same function, faster on a CPU.

  y = x * (bias + alpha * s)^-beta, where s sums x^2 over the channels within
  `depth_radius` of each channel. The window sum is one matrix product with a
  band matrix (alpha folded in, bias added by the same fused kernel), and the
  gradient is written out by hand (the band is symmetric):

      dx = dy * p - 2 alpha beta * x * band_sum(dy * y / d),
      d = bias + alpha * s, p = d^-beta,

  with -2 alpha beta folded into the backward band. Each element-wise pass
  over the activations costs about as much as the products here, so fewer
  passes is what makes it fast. TensorFlow's own LRN gradient kernel took 27%
  of a small-Alexnet training step on this CPU (docs/performance.md). A test
  checks the values and the gradients against
  `tf.nn.local_response_normalization`; they agree to float32 rounding.
  """
  channels = x.shape[-1]
  index = np.arange(channels)
  band = (np.abs(index[:, None] - index[None, :]) <= depth_radius).astype(np.float64)
  forward_band = tf.constant(alpha * band, x.dtype)
  backward_band = tf.constant(-2.0 * alpha * beta * band, x.dtype)
  bias_vector = tf.constant(np.full([channels], bias), x.dtype)

  def power(d):  # d^-beta; d^-0.75 as rsqrt(d^1.5), cheaper than pow
    return tf.math.rsqrt(d * tf.sqrt(d)) if beta == 0.75 else tf.pow(d, -beta)

  @tf.custom_gradient
  def lrn(x):
    d = _channel_window_sum(tf.square(x), forward_band, bias_vector)
    p = power(d)
    y = x * p

    def grad(dy):
      return dy * p + x * _channel_window_sum(dy * y / d, backward_band)

    return y, grad

  return lrn(x)


class LocalResponseNormalization(keras.layers.Layer):
  """Local response normalization (TF's CIFAR-10 tutorial settings), as
  `tf.nn.local_response_normalization` computes it (see
  `local_response_normalization`)."""

  def __init__(self,
               depth_radius: int = 4,
               bias: float = 1.0,
               alpha: float = 0.001 / 9.0,
               beta: float = 0.75,
               **kwargs):
    super().__init__(**kwargs)
    self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

  def call(self, x):
    # Computed in float32, as TensorFlow's LRN (it has no bfloat16 CPU kernel).
    y = local_response_normalization(tf.cast(x, tf.float32),
                                     depth_radius=self.depth_radius,
                                     bias=self.bias,
                                     alpha=self.alpha,
                                     beta=self.beta)
    return tf.cast(y, x.dtype)

  def get_config(self):
    return {
        **super().get_config(), 'depth_radius': self.depth_radius,
        'bias': self.bias,
        'alpha': self.alpha,
        'beta': self.beta
    }


class BatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization`, computed by TensorFlow's fused kernel.

  The same function and the same variables and updates as Keras' layer
  (batch statistics in training, moving averages with the biased batch
  variance), but the normalization and its gradient are one
  `FusedBatchNormV3` op each instead of Keras' separate moments, normalize
  and their gradients: 3.4x faster forward+backward on this CPU, 38% of a
  small-Inception step before (docs/performance.md). A test checks outputs,
  gradients and moving statistics against Keras' layer. Masks, renorm,
  synchronized (multi-replica) BatchNorm and inputs other than NHWC fall
  back to Keras' own code.
  """

  def call(self, inputs, training=None, mask=None):
    if (mask is not None or self.renorm or self.synchronized or len(inputs.shape) != 4 or
        self.axis not in (3, -1)):
      return super().call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)  # as Keras: statistics in float32
    channels = x.shape[-1]
    gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
    beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
    if training and self.trainable:
      y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x,
                                                           gamma,
                                                           beta,
                                                           epsilon=self.epsilon,
                                                           data_format='NHWC',
                                                           is_training=True)
      # The kernel returns the unbiased variance; Keras averages the biased one.
      n = tf.cast(tf.size(x) // channels, tf.float32)
      variance = variance * ((n - 1.0) / n)
      self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
      self.moving_variance.assign(self.moving_variance * self.momentum + variance *
                                  (1.0 - self.momentum))
    else:
      y, _, _ = tf.compat.v1.nn.fused_batch_norm(x,
                                                 gamma,
                                                 beta,
                                                 mean=self.moving_mean,
                                                 variance=self.moving_variance,
                                                 epsilon=self.epsilon,
                                                 data_format='NHWC',
                                                 is_training=False)
    return tf.cast(y, self.compute_dtype)


def _dense_head(x, num_classes: int, dropout: float | None, reg, init):
  if dropout:
    x = keras.layers.Dropout(dropout)(x)
  return keras.layers.Dense(num_classes,
                            kernel_regularizer=reg,
                            kernel_initializer=init,
                            dtype='float32',
                            name='logits')(x)


def mlp(input_shape,
        num_classes: int,
        layers: int,
        width: int,
        weight_decay: float | None = None,
        dropout: float | None = None,
        seed: int = 0) -> keras.Model:
  """Multilayer perceptron with `layers` ReLU hidden layers of `width` units."""
  reg = _l2(weight_decay)
  inputs = keras.Input(input_shape)
  x = keras.layers.Flatten()(inputs)
  for i in range(layers):
    x = keras.layers.Dense(width,
                           activation='relu',
                           kernel_regularizer=reg,
                           kernel_initializer=keras.initializers.GlorotUniform(seed + i))(x)
  logits = _dense_head(x, num_classes, dropout, reg,
                       keras.initializers.GlorotUniform(seed + layers))
  return keras.Model(inputs, logits, name=f'mlp_{layers}x{width}')


def alexnet(input_shape,
            num_classes: int,
            weight_decay: float | None = None,
            dropout: float | None = None,
            seed: int = 0) -> keras.Model:
  """Small Alexnet: 2 x (conv5x5/64 -> maxpool3x3/2 -> LRN), dense 384, 192."""
  reg = _l2(weight_decay)
  init = lambda i: keras.initializers.GlorotUniform(seed + i)
  inputs = keras.Input(input_shape)
  x = inputs
  for i in range(2):
    x = keras.layers.Conv2D(64,
                            5,
                            padding='same',
                            activation='relu',
                            kernel_regularizer=reg,
                            kernel_initializer=init(i))(x)
    x = keras.layers.MaxPooling2D(3, 2, padding='same')(x)
    x = LocalResponseNormalization()(x)
  x = keras.layers.Flatten()(x)
  for i, units in enumerate((384, 192)):
    x = keras.layers.Dense(units,
                           activation='relu',
                           kernel_regularizer=reg,
                           kernel_initializer=init(2 + i))(x)
    if dropout:
      x = keras.layers.Dropout(dropout)(x)
  logits = keras.layers.Dense(num_classes,
                              kernel_regularizer=reg,
                              kernel_initializer=init(4),
                              dtype='float32',
                              name='logits')(x)
  return keras.Model(inputs, logits, name='alexnet')


def inception(input_shape,
              num_classes: int,
              weight_decay: float | None = None,
              dropout: float | None = None,
              batch_norm: bool = True,
              bn_momentum: float = 0.9,
              synchronized_bn: bool = False,
              seed: int = 0) -> keras.Model:
  """Small Inception (appendix A, figure 3 of the ICLR paper).

  Conv module = conv -> BatchNorm(scale=False) -> ReLU; with BatchNorm off
  the conv gets a bias instead, so both variants have 1,649,402 parameters.
  """
  reg = _l2(weight_decay)
  counter = iter(range(10_000))

  def conv(x, filters, kernel, strides=1):
    x = keras.layers.Conv2D(filters,
                            kernel,
                            strides,
                            padding='same',
                            use_bias=not batch_norm,
                            kernel_regularizer=reg,
                            kernel_initializer=keras.initializers.GlorotUniform(seed +
                                                                                next(counter)))(x)
    if batch_norm:
      x = BatchNormalization(scale=False, momentum=bn_momentum, synchronized=synchronized_bn)(x)
    return keras.layers.ReLU()(x)

  def inc(x, c1, c3):
    return keras.layers.Concatenate()([conv(x, c1, 1), conv(x, c3, 3)])

  def down(x, c3):
    return keras.layers.Concatenate()(
        [conv(x, c3, 3, strides=2),
         keras.layers.MaxPooling2D(3, 2, padding='same')(x)])

  inputs = keras.Input(input_shape)
  x = conv(inputs, 96, 3)
  x = inc(x, 32, 32)
  x = inc(x, 32, 48)
  x = down(x, 80)
  for c1, c3 in ((112, 48), (96, 64), (80, 80), (48, 96)):
    x = inc(x, c1, c3)
  x = down(x, 96)
  x = inc(x, 176, 160)
  x = inc(x, 176, 160)
  x = keras.layers.GlobalAveragePooling2D()(x)
  logits = _dense_head(x, num_classes, dropout, reg,
                       keras.initializers.GlorotUniform(seed + next(counter)))
  return keras.Model(inputs, logits, name='inception')


def inception_v3(input_shape,
                 num_classes: int,
                 weight_decay: float | None = None,
                 dropout: float | None = None,
                 batch_norm: bool = True,
                 bn_momentum: float = 0.9,
                 synchronized_bn: bool = False,
                 seed: int = 0) -> keras.Model:
  """Inception V3 (ImageNet, Table 2) from keras.applications, random init.

  Weight decay is attached by rewriting the functional config (the
  application has no regularizer argument); dropout goes before the logits
  as in TF-slim. BatchNorm cannot be turned off here.
  """
  del batch_norm
  base = keras.applications.InceptionV3(include_top=False,
                                        weights=None,
                                        input_shape=input_shape,
                                        pooling='avg')
  config = base.get_config()
  for i, layer in enumerate(config['layers']):
    cfg = layer['config']
    if 'kernel_regularizer' in cfg and weight_decay:
      cfg['kernel_regularizer'] = keras.regularizers.serialize(_l2(weight_decay))
    if 'kernel_initializer' in cfg:  # Initial weights keyed by --seed, one seed per layer.
      cfg['kernel_initializer']['config']['seed'] = seed + 1 + i
    if layer['class_name'] == 'BatchNormalization':
      cfg['momentum'] = bn_momentum
      cfg['synchronized'] = synchronized_bn
      layer['registered_name'] = 'BatchNormalization'  # resolved by custom_objects
  base = keras.Model.from_config(config, custom_objects={'BatchNormalization': BatchNormalization})
  logits = _dense_head(base.output, num_classes, dropout, _l2(weight_decay),
                       keras.initializers.GlorotUniform(seed))
  return keras.Model(base.input, logits, name='inception_v3')


_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    'inception': inception,
    'alexnet': alexnet,
    'inception_v3': inception_v3
}
BATCH_NORM_ARGS = ('batch_norm', 'bn_momentum', 'synchronized_bn')
_WITHOUT_BATCH_NORM = ('alexnet',)  # and the MLPs


def build(name: str, input_shape, num_classes: int, **kwargs) -> keras.Model:
  """Builds a model by name; kwargs: weight_decay, dropout, batch_norm, ...

  A regularizer given as 0 is off (None), as STYLE.md asks. The BatchNorm
  arguments (`BATCH_NORM_ARGS`) configure the models that have BatchNorm and
  are not passed to those that have none (alexnet, the MLPs); any other
  argument a factory does not take raises TypeError.
  """
  kwargs = {k: (v or None) if k in ('weight_decay', 'dropout') else v for k, v in kwargs.items()}
  match = _MLP.match(name)
  if match or name in _WITHOUT_BATCH_NORM:
    kwargs = {k: v for k, v in kwargs.items() if k not in BATCH_NORM_ARGS}
  if match:
    return mlp(input_shape, num_classes, int(match[1]), int(match[2]), **kwargs)
  if name not in _BUILDERS:
    raise ValueError(f'unknown model {name!r}; allowed: {", ".join(MODEL_NAMES)} '
                     'or mlp_<layers>x<width>')
  return _BUILDERS[name](input_shape, num_classes, **kwargs)


def trainable_params(model: keras.Model) -> int:
  """Trainable parameters (Keras' count_params also counts BN moving stats)."""
  return int(sum(int(tf.size(w)) for w in model.trainable_weights))
