"""The models' own layers and shared pieces (appendix A).

`LocalResponseNormalization` (small Alexnet), `BatchNormalization` on
TensorFlow's fused kernel (small Inception, Inception V3), `Conv2D` with its
1x1 convolutions as matrix products (small Inception), the weight-decay
regularizer `l2` and the logits layer `dense_head`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def l2(weight_decay: float | None) -> keras.regularizers.Regularizer | None:
  """The paper's (TF-slim) weight decay lambda as a Keras regularizer (lambda / 2)."""
  return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def dense_head(x: keras.KerasTensor, num_classes: int, dropout: float | None,
               reg: keras.regularizers.Regularizer | None,
               init: keras.initializers.Initializer | str) -> keras.KerasTensor:
  """The logits layer (float32 under mixed precision), after optional dropout."""
  if dropout:
    x = keras.layers.Dropout(dropout)(x)
  return keras.layers.Dense(num_classes,
                            kernel_regularizer=reg,
                            kernel_initializer=init,
                            dtype='float32',
                            name='logits')(x)


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


class Conv2D(keras.layers.Conv2D):
  """`keras.layers.Conv2D`, a 1x1 stride-1 convolution computed as one matrix product.

  A 1x1 convolution of an NHWC tensor is the product of its (pixels x
  inputs) matrix with the (inputs x filters) kernel, and its two gradients
  are products too. oneDNN's matrix products run small Inception's eight
  1x1 layers faster than its 1x1 convolution kernels, a few percent of a
  whole training step (docs/performance.md, measured on AMD Zen 5 and with
  oneDNN held to AVX2). The same function and the same variables; a test
  checks outputs and gradients against Keras' layer. Every other
  convolution is Keras' own.
  """

  def convolution_op(self, inputs, kernel):
    if (tuple(self.kernel_size) != (1, 1) or tuple(self.strides) != (1, 1) or
        self.data_format != 'channels_last' or self.groups != 1):
      return super().convolution_op(inputs, kernel)
    x, kernel = tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel)  # kernel: autocast
    dtype = keras.backend.result_type(x.dtype, kernel.dtype)  # as keras.ops.conv
    x, kernel = tf.cast(x, dtype), tf.cast(kernel, dtype)
    in_channels = x.shape[-1]
    y = tf.matmul(tf.reshape(x, [-1, in_channels]), tf.reshape(kernel, [in_channels, self.filters]))
    y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [self.filters]], 0))
    y.set_shape(x.shape[:-1].concatenate([self.filters]))
    return y


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
