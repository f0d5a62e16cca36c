"""Where a step's time goes: one convolution per data layout, each layer alone, the phases.

`conv_layouts` times one convolution's training work per data layout;
`step_breakdown` times every layer of a model alone (forward, forward +
backward) and the whole step's phases (forward, gradients, optimizer update).
Each body repeats inside one graph (`_repeat`), so the cost of calling a
tf.function is spread as it is over the ops of a training step.
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Sequence

import keras
import tensorflow as tf

from rethinking_tf import cpu
from rethinking_tf.benchmark import machine
from rethinking_tf.benchmark import suite
from rethinking_tf.benchmark import tables


def _seconds_per_call(fn, seconds: float, repeats: int = 3, loops: int = 10) -> float:
  """Best seconds per iteration of `fn(n)`, a tf.function that runs its body n times.

  The body repeats inside the graph (a `tf.range` loop), so the cost of calling
  a tf.function (about 0.1-0.2 ms here) is spread over `loops` iterations, as
  ops inside one training step are.
  """
  n = tf.constant(loops)
  fn(n).numpy()  # trace and warm up
  best = float('inf')
  for _ in range(repeats):
    start, calls = time.perf_counter(), 0
    while calls == 0 or time.perf_counter() - start < seconds:
      out = fn(n)
      calls += 1
    out.numpy()
    best = min(best, (time.perf_counter() - start) / (calls * loops))
  return best


def _repeat(body):
  """A tf.function running `body()` (a float32 scalar) n times in a graph loop."""

  @tf.function
  def fn(n):
    total = tf.constant(0.0)
    for _ in tf.range(n):
      # One iteration at a time, as training steps run (no overlap between them).
      tf.autograph.experimental.set_loop_options(parallel_iterations=1)
      total += body()
    return total

  return fn


def _first_value(tensors) -> tf.Tensor:
  """One float32 scalar that depends on every tensor (keeps them computed)."""
  return tf.add_n([tf.cast(tf.reshape(t, [-1])[0], tf.float32) for t in tf.nest.flatten(tensors)])


def _layer_functions(layer: keras.layers.Layer, inputs, sources: list, grad_out: tf.Tensor):
  """Repeating tf.functions of `layer` alone: forward, forward + gradients."""

  def forward():
    return _first_value(layer(inputs, training=True))

  def backward():
    with tf.GradientTape() as tape:
      tape.watch(tf.nest.flatten(inputs))
      y = layer(inputs, training=True)
    if not sources:
      return _first_value(y)
    # y too: a gradient that does not need the output must not prune the forward.
    return _first_value([y, tape.gradient(y, sources, output_gradients=grad_out)])

  return _repeat(forward), _repeat(backward)


def conv_layouts(height: int,
                 channels_in: int,
                 channels_out: int,
                 kernel: int,
                 batch_size: int = 128,
                 seconds: float = 0.2,
                 formats: Sequence[str] | None = None) -> dict[str, float]:
  """FLOP/s of one 'SAME' stride-1 convolution's training work per data layout.

  Forward plus the gradients w.r.t. input and filter (3x the forward FLOPs)
  of `tf.nn.conv2d` on a square `height` map, timed as `step_breakdown` times
  a layer. NHWC is what Keras' channels_last models run. `formats`: default
  NHWC, and NCHW where this CPU has a kernel for it (`cpu.nchw_conv_supported`).
  """
  if formats is None:
    formats = ('NHWC', 'NCHW') if cpu.nchw_conv_supported() else ('NHWC',)
  flops = 3 * 2 * batch_size * height * height * kernel * kernel * channels_in * channels_out
  out = {}
  for fmt in formats:
    shape = ([batch_size, height, height, channels_in]
             if fmt == 'NHWC' else [batch_size, channels_in, height, height])
    x = tf.random.stateless_normal(shape, [1, 2])
    w = tf.Variable(
        tf.random.stateless_normal([kernel, kernel, channels_in, channels_out], [3, 4]) * 0.1)
    conv = lambda x=x, w=w, fmt=fmt: tf.nn.conv2d(x, w, 1, 'SAME', data_format=fmt)
    dy = tf.random.stateless_normal(conv().shape, [5, 6])

    def body(conv=conv, x=x, w=w, dy=dy):
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = conv()
      return _first_value([y, tape.gradient(y, [x, w], output_gradients=dy)])

    out[fmt] = flops / _seconds_per_call(_repeat(body), seconds)
  return out


def conv_table(shapes: Sequence[tuple[int, int, int, int]],
               batch_size: int = 128,
               seconds: float = 0.2) -> tuple[str, dict[str, Any]]:
  """`conv_layouts` of each (H, CIN, COUT, K): (the printed table, its JSON object).

  Without an NCHW kernel on this CPU only NHWC is measured, and the table
  says so in one line.
  """
  nchw = cpu.nchw_conv_supported()
  formats = ('NHWC', 'NCHW') if nchw else ('NHWC',)
  rates = {}
  for shape in shapes:
    label = 'x'.join(map(str, shape))
    rates[label] = conv_layouts(*shape, batch_size=batch_size, seconds=seconds, formats=formats)
  rows = [(label, *(tables.fmt(r[fmt] / 1e9) for fmt in formats)) for label, r in rates.items()]
  lines = [
      tables.table(
          (f'conv HxCINxCOUTxK, batch {batch_size}', *(f'{fmt} GFLOP/s' for fmt in formats)), rows)
  ]
  if not nchw:
    lines.append(f'NCHW not measured: {cpu.NO_NCHW}')
  return '\n'.join(lines), {'conv_flops_per_second': rates, 'nchw_conv_supported': nchw}


def step_breakdown(model_name: str,
                   batch_size: int = 128,
                   precision: str = 'float32',
                   seconds: float = 0.2,
                   input_shape=(28, 28, 3),
                   num_classes: int = 10) -> dict[str, Any]:
  """Each layer's forward and forward+backward time alone, and the step's phases.

  Every layer of the model (built as the trainer builds it, training mode) is
  timed alone on random inputs of its own shapes at `batch_size`: forward, and
  forward plus the gradients w.r.t. its weights and inputs (not the model's
  input) for a random output gradient, each in its own `tf.function`. The
  whole model is timed as forward (loss), forward + gradients, the optimizer
  update alone (`trainer.MomentumSGD`, as the binary) and the full step. The
  layers' sum against the full step is what running them in one graph adds or
  saves; the conv and dense layers' FLOPs over their own time is the fastest
  a step made of them can go at these shapes.
  """
  keras.mixed_precision.set_global_policy(precision)
  try:
    model = suite.build_model(model_name, input_shape, num_classes)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  seed = iter(range(1, 1_000_000))
  normal = lambda shape, dtype: tf.cast(
      tf.random.stateless_normal([batch_size, *shape[1:]], [next(seed), 0]), dtype)
  layers, seen_weights = [], False
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    inputs = tf.nest.map_structure(lambda t: normal(t.shape, t.dtype), layer.input)
    # As flops_per_image: no input gradient before the first layer with weights.
    sources = (tf.nest.flatten(inputs) if seen_weights else []) + layer.trainable_weights
    out = layer(inputs, training=True)
    forward, backward = _layer_functions(layer, inputs, sources, normal(out.shape, out.dtype))
    flops = batch_size * 2 * machine.layer_macs(layer) * (3 if seen_weights else 2)
    seen_weights = seen_weights or bool(layer.trainable_weights)
    layers.append({
        'name': layer.name,
        'type': type(layer).__name__,
        'output_shape': list(out.shape[1:]),
        'train_flops': flops,
        'forward_seconds': _seconds_per_call(forward, seconds),
        'train_seconds': _seconds_per_call(backward, seconds)
    })

  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  x = normal((None, *input_shape), tf.float32)
  y = tf.random.stateless_uniform([batch_size], [7, 7], 0, num_classes, tf.int32)
  optimizer = suite.MomentumSGD(0.01, momentum=0.9)
  weights = model.trainable_variables
  optimizer.build(weights)
  fake_grads = [tf.zeros_like(w) for w in weights]

  def loss():
    return loss_fn(y, model(x, training=True))

  def gradients():
    with tf.GradientTape() as tape:
      value = loss()
    return tape.gradient(value, weights)

  def update():
    optimizer.apply(fake_grads, weights)
    return tf.constant(0.0)

  def step():
    optimizer.apply(gradients(), weights)
    return tf.constant(0.0)

  phases = {
      name: _seconds_per_call(_repeat(fn), seconds)
      for name, fn in (('forward', loss), ('forward_and_gradients',
                                           lambda: _first_value(gradients())), ('update', update),
                       ('step', step))
  }
  conv_dense = [r for r in layers if r['train_flops']]
  flops = sum(r['train_flops'] for r in layers)
  by_type: dict[str, float] = {}
  for r in layers:
    by_type[r['type']] = by_type.get(r['type'], 0.0) + r['train_seconds']
  return {
      'model':
          model_name,
      'batch_size':
          batch_size,
      'precision':
          precision,
      'layers':
          layers,
      'seconds_by_type':
          by_type,
      'layers_train_seconds':
          sum(r['train_seconds'] for r in layers),
      'conv_dense_train_seconds':
          sum(r['train_seconds'] for r in conv_dense),
      'train_flops_per_step':
          flops,
      'phases_seconds':
          phases,
      # The conv and dense layers at their own speed, everything else free.
      'conv_dense_flops_per_second':
          flops / max(sum(r['train_seconds'] for r in conv_dense), 1e-12),
      'step_flops_per_second':
          flops / phases['step'],
  }


def format_breakdown(b: dict[str, Any], slowest: int = 8) -> str:
  """Where one model's step goes: phases, time by layer type, slowest layers."""
  ms = lambda seconds: f'{seconds * 1e3:.3f}'
  ph = b['phases_seconds']
  total = b['layers_train_seconds']
  lines = [
      f"{b['model']} (batch {b['batch_size']}, {b['precision']}), whole model: forward "
      f"{ms(ph['forward'])} ms, forward+gradients {ms(ph['forward_and_gradients'])} ms, "
      f"update alone {ms(ph['update'])} ms, step {ms(ph['step'])} ms = "
      f"{b['step_flops_per_second'] / 1e9:.1f} GFLOP/s" +
      (f" ({b['step_peak_fraction']:.3f} of peak)" if 'step_peak_fraction' in b else '') +
      f"; each layer alone, forward+backward: {ms(total)} ms in all; its conv and "
      f"dense layers {ms(b['conv_dense_train_seconds'])} ms = "
      f"{b['conv_dense_flops_per_second'] / 1e9:.1f} GFLOP/s" +
      (f" ({b['conv_dense_peak_fraction']:.3f} of peak)" if 'conv_dense_peak_fraction' in b else '')
  ]
  if 'keras_step_seconds' in b:
    lines.append(f"The loop's compiled train function (the bare loop, steps_per_execution "
                 f"{b['keras_steps_per_execution']}): {ms(b['keras_step_seconds'])} ms per "
                 f"step, {ms(b['keras_step_seconds'] - ph['step'])} ms above the step alone "
                 '(metrics, loss tracking, iterator, per-call work)')
  counts: dict[str, int] = {}
  for r in b['layers']:
    counts[r['type']] = counts.get(r['type'], 0) + 1
  rows = [(kind, str(counts[kind]), ms(sec), f'{sec / total:.3f}')
          for kind, sec in sorted(b['seconds_by_type'].items(), key=lambda kv: -kv[1])]
  lines += [tables.table(('layer type', 'layers', 'fwd+bwd ms', 'share'), rows)]
  rows = [(r['name'], r['type'], 'x'.join(map(str,
                                              r['output_shape'])), f"{r['train_flops'] / 1e6:.1f}",
           ms(r['forward_seconds']), ms(r['train_seconds']),
           f"{r['train_flops'] / r['train_seconds'] / 1e9:.1f}" if r['train_flops'] else '-')
          for r in sorted(b['layers'], key=lambda r: -r['train_seconds'])[:slowest]]
  lines += [
      tables.table(('slowest layers', 'type', 'output', 'MFLOP', 'fwd ms', 'fwd+bwd ms', 'GFLOP/s'),
                   rows)
  ]
  return '\n'.join(lines)
