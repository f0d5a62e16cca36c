"""Small Alexnet (appendix A): 1,387,786 trainable parameters on CIFAR-10."""

from __future__ import annotations

import keras

from rethinking_tf.models import layers


def alexnet(input_shape: tuple[int, int, int],
            num_classes: int,
            weight_decay: float | None = None,
            dropout: float | None = None,
            seed: int = 0) -> keras.Model:
  """Small Alexnet: 2 x (conv5x5/64 -> maxpool3x3/2 -> LRN), dense 384, 192."""
  reg = layers.l2(weight_decay)
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
    x = layers.LocalResponseNormalization()(x)
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
