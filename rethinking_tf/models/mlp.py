"""`mlp_<layers>x<width>`: the ReLU MLPs (appendix A), e.g. mlp_1x512."""

from __future__ import annotations

import keras

from rethinking_tf.models import layers as layers_lib


def mlp(input_shape: tuple[int, int, int],
        num_classes: int,
        layers: int,
        width: int,
        weight_decay: float | None = None,
        dropout: float | None = None,
        seed: int = 0) -> keras.Model:
  """Multilayer perceptron with `layers` ReLU hidden layers of `width` units."""
  reg = layers_lib.l2(weight_decay)
  inputs = keras.Input(input_shape)
  x = keras.layers.Flatten()(inputs)
  for i in range(layers):
    x = keras.layers.Dense(width,
                           activation='relu',
                           kernel_regularizer=reg,
                           kernel_initializer=keras.initializers.GlorotUniform(seed + i))(x)
  logits = layers_lib.dense_head(x, num_classes, dropout, reg,
                                 keras.initializers.GlorotUniform(seed + layers))
  return keras.Model(inputs, logits, name=f'mlp_{layers}x{width}')
