"""The linear layers of a Keras model as numpy kernels, BatchNorm folded in.

Jiang et al. (2020, section 7 of PAPER.md) compute every norm on the network
with each BatchNorm folded into the layer before it (in inference mode,
BN(z) = gamma (z - mean) / sqrt(var + eps) + beta, so that layer's kernel
is scaled per output unit by s = gamma / sqrt(var + eps) and its bias
becomes (b - mean) s + beta). A model whose BatchNorm does not follow a
Dense or Conv2D layer, or which has other weighted layers, is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import keras
import numpy as np

_WEIGHTLESS_OK = (keras.layers.InputLayer,)


def value(variable) -> np.ndarray:
  """A Keras variable's value as a float64 numpy array."""
  return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)


@dataclasses.dataclass
class Linear:
  """One Dense or Conv2D layer, Keras layout (fan-in axes first, outputs last)."""
  name: str
  kind: str  # 'dense' or 'conv'
  kernel: np.ndarray  # (in, out) or (kh, kw, in, out)
  bias: np.ndarray | None
  input_hw: tuple[int, int] | None = None  # a convolution's input height and width
  strides: tuple[int, int] = (1, 1)
  batch_norm: str | None = None  # the folded BatchNorm layer's name

  @property
  def matrix(self) -> np.ndarray:
    """The kernel as a (fan_in, out) matrix (a convolution's reshaped kernel)."""
    return self.kernel.reshape(-1, self.kernel.shape[-1])


def _producer(layer: keras.layers.Layer) -> keras.layers.Layer:
  return layer._inbound_nodes[0].parent_nodes[0].operation  # pylint: disable=protected-access


def linear_layers(model: keras.Model) -> list[Linear]:
  """The model's Dense and Conv2D layers in order, each BatchNorm folded in.

  Raises:
    ValueError: a layer with weights that is none of Dense, Conv2D, or a
      BatchNorm right after one of them.
  """
  found: dict[str, Linear] = {}
  for layer in model.layers:
    if isinstance(layer, keras.layers.Dense):
      found[layer.name] = Linear(layer.name, 'dense', value(layer.kernel),
                                 value(layer.bias) if layer.use_bias else None)
    elif isinstance(layer, keras.layers.Conv2D) and type(layer).__name__ == 'Conv2D':
      if layer.data_format != 'channels_last' or tuple(layer.dilation_rate) != (1, 1):
        raise ValueError(f'{layer.name}: only channels_last undilated convolutions')
      found[layer.name] = Linear(layer.name, 'conv', value(layer.kernel),
                                 value(layer.bias) if layer.use_bias else None,
                                 tuple(layer.input.shape[1:3]), tuple(layer.strides))
    elif isinstance(layer, keras.layers.BatchNormalization):
      prev = _producer(layer)
      if prev.name not in found:
        raise ValueError(f'{layer.name}: BatchNorm after {prev.name}, not after a Dense or '
                         'Conv2D layer: cannot fold')
      _fold(found[prev.name], layer)
      found[prev.name].batch_norm = layer.name
    elif layer.weights and not isinstance(layer, _WEIGHTLESS_OK):
      raise ValueError(f'{layer.name} ({type(layer).__name__}) has weights that no '
                       'measure knows')
  return list(found.values())


def bn_scale_shift(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
  """(s, t) with BN(z) = s z + t in inference mode."""
  mean = value(bn.moving_mean)
  var = value(bn.moving_variance)
  gamma = value(bn.gamma) if bn.scale else np.ones_like(mean)
  beta = value(bn.beta) if bn.center else np.zeros_like(mean)
  s = gamma / np.sqrt(var + bn.epsilon)
  return s, beta - mean * s


def _fold(linear: Linear, bn: keras.layers.BatchNormalization) -> None:
  s, t = bn_scale_shift(bn)
  bias = linear.bias if linear.bias is not None else np.zeros_like(s)
  linear.kernel = linear.kernel * s
  linear.bias = bias * s + t


@contextlib.contextmanager
def assigned(variables: list, values: list[np.ndarray]) -> Iterator[None]:
  """Temporarily gives `variables` the `values`; restores the originals after."""
  saved = [keras.ops.convert_to_numpy(v) for v in variables]
  try:
    for v, x in zip(variables, values):
      v.assign(np.asarray(x, v.dtype))
    yield
  finally:
    for v, x in zip(variables, saved):
      v.assign(x)


@contextlib.contextmanager
def folded_squared(model: keras.Model) -> Iterator[None]:
  """The model computing with every folded kernel and bias squared: the
  path-norm network (`norms.path_norm`).

  A layer without BatchNorm gets its kernel and bias squared; a layer with
  one gets its raw kernel squared and no bias, and its BatchNorm becomes
  z -> s^2 z + b'^2 (s its scale, b' the folded bias).
  """
  linear = linear_layers(model)
  by_name = {l.name: l for l in model.layers}
  variables, values = [], []

  def put(var, value):
    variables.append(var)
    values.append(value)

  for lin in linear:
    layer = by_name[lin.name]
    if lin.batch_norm is None:
      put(layer.kernel, lin.kernel**2)
      if layer.use_bias:
        put(layer.bias, lin.bias**2)
      continue
    put(layer.kernel, value(layer.kernel)**2)
    if layer.use_bias:
      put(layer.bias, np.zeros(layer.bias.shape))
    bn = by_name[lin.batch_norm]
    s, _ = bn_scale_shift(bn)
    put(bn.moving_mean, np.zeros_like(s))
    if bn.scale:
      put(bn.gamma, s**2)
      put(bn.moving_variance, np.full_like(s, 1.0 - bn.epsilon))
    else:
      put(bn.moving_variance, 1.0 / s**4 - bn.epsilon)
    if not bn.center and np.any(lin.bias != 0):
      raise ValueError(f'{bn.name}: a folded shift needs a BatchNorm beta to go to')
    if bn.center:
      put(bn.beta, lin.bias**2)
  with assigned(variables, values):
    yield
