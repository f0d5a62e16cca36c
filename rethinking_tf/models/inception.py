"""Small Inception (CIFAR-10, appendix A) and Inception V3 (ImageNet, Table 2)."""

from __future__ import annotations

import keras

from rethinking_tf.models import layers


def inception(input_shape: tuple[int, int, int],
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
  reg = layers.l2(weight_decay)
  counter = iter(range(10_000))

  def conv(x, filters, kernel, strides=1):
    x = layers.Conv2D(filters,
                      kernel,
                      strides,
                      padding='same',
                      use_bias=not batch_norm,
                      kernel_regularizer=reg,
                      kernel_initializer=keras.initializers.GlorotUniform(seed + next(counter)))(x)
    if batch_norm:
      x = layers.BatchNormalization(scale=False, momentum=bn_momentum,
                                    synchronized=synchronized_bn)(x)
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
  logits = layers.dense_head(x, num_classes, dropout, reg,
                             keras.initializers.GlorotUniform(seed + next(counter)))
  return keras.Model(inputs, logits, name='inception')


def inception_v3(input_shape: tuple[int, int, int],
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
      cfg['kernel_regularizer'] = keras.regularizers.serialize(layers.l2(weight_decay))
    if 'kernel_initializer' in cfg:  # Initial weights keyed by --seed, one seed per layer.
      cfg['kernel_initializer']['config']['seed'] = seed + 1 + i
    if layer['class_name'] == 'BatchNormalization':
      cfg['momentum'] = bn_momentum
      cfg['synchronized'] = synchronized_bn
      layer['registered_name'] = 'BatchNormalization'  # resolved by custom_objects
  base = keras.Model.from_config(config,
                                 custom_objects={'BatchNormalization': layers.BatchNormalization})
  logits = layers.dense_head(base.output, num_classes, dropout, layers.l2(weight_decay),
                             keras.initializers.GlorotUniform(seed))
  return keras.Model(base.input, logits, name='inception_v3')
