"""The paper's models (appendix A) as Keras functional factories, by name.

`build(name, ...)` picks the factory: `mlp`, `alexnet`, `inception` (small
Inception and Inception V3); their own layers are in `layers`.

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
import tensorflow as tf

from rethinking_tf import registry
from rethinking_tf.models import alexnet as alexnet_lib
from rethinking_tf.models import inception as inception_lib
from rethinking_tf.models import mlp as mlp_lib

# The names (and default learning rates) live in the TensorFlow-free registry.
MODEL_NAMES = registry.MODEL_NAMES
_MLP = registry.MLP_PATTERN
is_valid_name = registry.is_valid_model_name
default_learning_rate = registry.default_learning_rate

_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    'inception': inception_lib.inception,
    'alexnet': alexnet_lib.alexnet,
    'inception_v3': inception_lib.inception_v3
}
BATCH_NORM_ARGS = ('batch_norm', 'bn_momentum', 'synchronized_bn')
_WITHOUT_BATCH_NORM = ('alexnet',)  # and the MLPs


def build(name: str, input_shape: tuple[int, int, int], num_classes: int,
          **kwargs: object) -> keras.Model:
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
    return mlp_lib.mlp(input_shape, num_classes, int(match[1]), int(match[2]), **kwargs)
  if name not in _BUILDERS:
    raise ValueError(f'unknown model {name!r}; allowed: {", ".join(MODEL_NAMES)} '
                     'or mlp_<layers>x<width>')
  return _BUILDERS[name](input_shape, num_classes, **kwargs)


def trainable_params(model: keras.Model) -> int:
  """Trainable parameters (Keras' count_params also counts BN moving stats)."""
  return int(sum(int(tf.size(w)) for w in model.trainable_weights))
