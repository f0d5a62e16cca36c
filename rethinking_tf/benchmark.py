"""Throughput of training, input pipeline and hardware, against fixed targets.

No flags: `tools/benchmark.py` is the binary. Everything here returns plain
dicts. What each number includes:

* `binary`: the training binary's own code path, `trainer.Trainer` built
  from a `TrainConfig` over `data.make_pipelines`, trained by
  `Trainer.train(hooks)` (the `loop.Loop` train calls over `p.train(0)`).
  Training images/s is measured per epoch through the trainer's public
  `EpochHooks`: from the end of one epoch's epoch-end work to the end of the
  next epoch's training steps (so it includes the input pipeline, the
  per-epoch overhead and the metric updates, but not the epoch-end work); the
  epoch-end work (train-set and test-set evaluation passes, summaries,
  checkpoint, metrics.csv) is timed separately. The first `warmup_epochs`
  epochs (tracing) are dropped.
* `bare`: the same compiled train function of the same model and optimizer
  (`Loop.train`, same `steps_per_execution`) called in a Python loop on one
  in-memory batch repeated (`Dataset.from_tensors(..).repeat()`): no
  pipeline, no epoch boundaries. One block of
  bare steps runs right after every epoch of the binary run, so that the two
  are measured side by side under the same machine load.
* `flops_per_image`: analytic count of conv and dense multiply-adds (2 FLOPs
  each): forward + gradient w.r.t. weights + gradient w.r.t. inputs (skipped
  for the first layer, whose input is the image). BatchNorm, pooling, LRN,
  activations, loss and optimizer update are not counted (all O(activations)
  or O(params), small beside the convolutions).
* `matmul`: a dense n x n float32 (or bfloat16) `tf.linalg.matmul`, timed in
  this process; sampled again before every model so that each model's
  `peak_fraction` is against the peak measured next to it.
* `pipeline`: `make_pipelines(..).train(0)` iterated alone, per randomization
  (first, on fresh iterators per round; see `measure_pipeline`).
* `breakdown` (optional): `step_breakdown`, each layer alone and the step's
  phases, beside the bare loop's Keras train function.
* peak memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (process-wide
  high-water mark, cumulative over everything measured before).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import tempfile
import time
from typing import Any
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from rethinking_tf import cpu
from rethinking_tf.data import pipeline as data
from rethinking_tf import models
from rethinking_tf import registry
from rethinking_tf.training import trainer

CIFAR_MODELS = ('inception', 'alexnet', 'mlp_1x512', 'mlp_3x512')

# Throughput targets (docs/performance.md).
TARGET_BINARY_VS_BARE = 0.95
TARGET_RANDOMIZATION_OVERHEAD = 0.03
TARGET_PIPELINE_MULTIPLE = 10.0
TARGET_PEAK_FRACTION = {'inception': 0.80, 'alexnet': 0.80, 'mlp': 0.70}

# The randomizations whose pipeline is measured: (name, Randomization kwargs, crop).
PIPELINE_MODES = registry.PIPELINE_MODES


def peak_memory_mib() -> float:
  """Process-wide peak resident memory so far (ru_maxrss), MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict[str, Any]:
  """CPU model, core count, memory, CPU features relevant to speed, versions."""
  info: dict[str, Any] = {'cpus': os.cpu_count(), 'platform': platform.platform()}
  try:
    with open('/proc/cpuinfo') as f:
      text = f.read()
    for line in text.splitlines():
      if line.startswith('model name'):
        info['cpu'] = line.split(':', 1)[1].strip()
        break
    flags = set(text.split())
    info['cpu_features'] = sorted(
        flags & {'avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'avx512_fp16', 'amx_tile'})
    with open('/proc/meminfo') as f:
      info['memory_gib'] = round(int(f.readline().split()[1]) / 2**20, 1)
    info['load_average'] = [round(x, 2) for x in os.getloadavg()]
  except OSError:
    pass
  info['gpus'] = [d.name for d in tf.config.list_physical_devices('GPU')]
  info['tensorflow'], info['keras'] = tf.__version__, keras.__version__
  return info


# ---------------------------------------------------------------------------
# Matrix-product peak.


def matmul_peak(n: int = 2048,
                dtype: str = 'float32',
                seconds: float = 1.0,
                min_repeats: int = 3,
                shape: tuple[int, int, int] | None = None) -> dict[str, float]:
  """Dense matrix product FLOP/s, median of repeats: n x n by n x n, or
  `shape` = (m, k, p), an m x k by k x p product (2 m k p FLOPs)."""
  m, k, p = shape or (n, n, n)
  a = tf.random.stateless_normal([m, k], [1, 2], dtype=tf.float32)
  b = tf.random.stateless_normal([k, p], [3, 4], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(b, dtype)
  product = tf.function(tf.linalg.matmul)
  product(a, b).numpy()  # warm-up
  times, cpu_times = [], []
  start = time.perf_counter()
  while len(times) < min_repeats or time.perf_counter() - start < seconds:
    t, c, calls = time.perf_counter(), time.process_time(), 0
    while calls == 0 or time.perf_counter() - t < 0.05:  # small products: many calls
      out = product(a, b)
      out[0, 0].numpy()
      calls += 1
    times.append((time.perf_counter() - t) / calls)
    cpu_times.append((time.process_time() - c) / calls)
  flops = 2.0 * m * k * p
  return {
      'flops_per_second': flops / statistics.median(times),
      'best_flops_per_second': flops / min(times),
      'flops_per_cpu_second': flops / statistics.median(cpu_times),
      'repeats': len(times),
      'n': n
  }


# ---------------------------------------------------------------------------
# FLOPs.


def _layer_macs(layer: keras.layers.Layer) -> int:
  """Multiply-adds of one forward pass of a conv or dense layer, per example."""
  if isinstance(layer, keras.layers.Conv2D):
    out = layer.output.shape  # (None, H, W, C) channels_last
    kh, kw = layer.kernel_size
    cin = layer.input.shape[-1]
    return int(np.prod(out[1:])) * kh * kw * cin // layer.groups
  if isinstance(layer, keras.layers.Dense):
    shape = layer.input.shape
    return int(np.prod(shape[1:-1] or [1])) * int(shape[-1]) * layer.units
  return 0


def flops_per_image(model: keras.Model) -> dict[str, Any]:
  """Analytic FLOPs per training image (see module docstring)."""
  macs = [(layer.name, _layer_macs(layer)) for layer in model.layers]
  macs = [(name, m) for name, m in macs if m]
  forward = 2 * sum(m for _, m in macs)
  first = macs[0][1] if macs else 0
  train = 3 * forward - 2 * first
  return {
      'forward': forward,
      'train': train,
      'method': 'analytic: conv+dense multiply-adds x2; train = forward + '
                'weight grads + input grads (not for the first layer)'
  }


# ---------------------------------------------------------------------------
# Where a step's time goes: each layer alone, and the step's phases.


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
  rows = [(label, *(_fmt(r[fmt] / 1e9) for fmt in formats)) for label, r in rates.items()]
  lines = [
      _table((f'conv HxCINxCOUTxK, batch {batch_size}', *(f'{fmt} GFLOP/s' for fmt in formats)),
             rows)
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
    model = models.build(model_name, input_shape, num_classes)
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
    flops = batch_size * 2 * _layer_macs(layer) * (3 if seen_weights else 2)
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
  optimizer = trainer.MomentumSGD(0.01, momentum=0.9)
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


# ---------------------------------------------------------------------------
# Training throughput: the binary's path, and the bare step loop beside it.


@dataclasses.dataclass(frozen=True)
class ModelCase:
  """One model to measure; the other TrainConfig fields keep their defaults."""
  model: str
  batch_size: int = 128
  train_size: int | None = 1280
  epochs: int = 4
  warmup_epochs: int = 1
  steps_per_execution: int = 0  # 0 = the binary's default, auto_steps_per_execution
  precision: str = 'float32'  # or mixed_bfloat16 / mixed_float16
  random_crop: bool = False
  dataset: str = 'digits'
  data_dir: str | None = None


class _Bare:
  """The compiled train function of a model on one in-memory batch, repeated."""

  def __init__(self, t: trainer.Trainer):
    x, y = next(iter(t.p.train(0)))
    self.iterator = iter(t.loop.distribute(lambda: tf.data.Dataset.from_tensors((x, y)).repeat()))
    self.loop, self.steps = t.loop, t.steps_per_execution
    self.images_per_call = int(x.shape[0]) * self.steps

  def run(self, calls: int) -> tuple[float, float]:
    """Runs `calls` train-function calls; returns (wall, process CPU) seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
      self.loop.train(self.iterator, self.steps)
    _ = self.loop.step  # Reading the counter waits for the last step.
    return time.perf_counter() - start, time.process_time() - cpu


class _Timer(trainer.EpochHooks):
  """Times each epoch's training and epoch-end work, then runs a bare block."""

  def __init__(self, bare: _Bare, calls: int):
    self.bare, self.calls, self.log = bare, calls, []

  def training_done(self, epoch: int, step: int) -> None:
    self.enter, self.enter_cpu, self.steps = time.perf_counter(), time.process_time(), step

  def epoch_done(self, epoch: int, step: int, eval_seconds: float) -> None:
    leave = time.perf_counter()
    bare_seconds, bare_cpu = self.bare.run(self.calls)  # side by side, same load
    self.log.append(
        dict(enter=self.enter,
             enter_cpu=self.enter_cpu,
             leave=leave,
             steps=self.steps,
             end_seconds=leave - self.enter,
             eval_seconds=eval_seconds,
             bare_seconds=bare_seconds,
             bare_cpu=bare_cpu,
             resume=time.perf_counter(),
             resume_cpu=time.process_time()))


def measure_model(case: ModelCase,
                  strategy: tf.distribute.Strategy | None = None,
                  bare_calls: int | None = None) -> dict[str, Any]:
  """Trains `case` through the binary's code path with bare blocks interleaved.

  Returns images/s (binary and bare medians over the timed epochs), their
  ratio, epoch-end (evaluation etc.) seconds, FLOPs per image and memory.
  """
  strategy = strategy or tf.distribute.get_strategy()
  with tempfile.TemporaryDirectory() as logdir:
    config = trainer.TrainConfig(logdir=logdir,
                                 dataset=case.dataset,
                                 data_dir=case.data_dir,
                                 train_size=case.train_size,
                                 model=case.model,
                                 batch_size=case.batch_size,
                                 random_crop=case.random_crop,
                                 precision=case.precision,
                                 epochs=case.epochs,
                                 steps_per_execution=case.steps_per_execution,
                                 verbose=False)
    trainer.prepare_logdir(config, None)
    t = trainer.Trainer(config, strategy)
    t0 = time.perf_counter()
    pipelines = trainer.make_pipelines(config)
    t.build(pipelines)
    setup_seconds = time.perf_counter() - t0
    bare = _Bare(t)
    spe = t.steps_per_execution  # as resolved by the trainer
    calls = bare_calls or max(1, pipelines.steps_per_epoch // spe)
    timer = _Timer(bare, calls)
    fit_start, fit_start_cpu = time.perf_counter(), time.process_time()
    t.train(timer)
    log = timer.log
    # Epoch k's training: from the end of epoch k-1's end work to the end of its steps.
    prev_time, prev_cpu, prev_steps = fit_start, fit_start_cpu, 0
    binary, bare_rates, ends, evals, steps_per_epoch = [], [], [], [], []
    binary_cpu, bare_cpu = [], []
    for k, row in enumerate(log):
      # Bare steps ran between epochs: discount them from the step counter.
      steps = row['steps'] - prev_steps
      if k >= case.warmup_epochs:
        binary.append(steps * case.batch_size / (row['enter'] - prev_time))
        bare_rates.append(calls * bare.images_per_call / row['bare_seconds'])
        binary_cpu.append(steps * case.batch_size / (row['enter_cpu'] - prev_cpu))
        bare_cpu.append(calls * bare.images_per_call / row['bare_cpu'])
        ends.append(row['end_seconds'])
        evals.append(row['eval_seconds'])
      steps_per_epoch.append(steps)
      prev_time, prev_cpu = row['resume'], row['resume_cpu']
      prev_steps = row['steps'] + calls * spe
    flops = flops_per_image(t.model)
    params = sum(int(np.prod(w.shape)) for w in t.model.trainable_weights)
  if not binary:
    raise ValueError(f'{case.model}: no timed epoch (epochs={case.epochs}, '
                     f'warmup_epochs={case.warmup_epochs})')
  med = statistics.median
  return {
      'model': case.model,
      'precision': case.precision,
      'random_crop': case.random_crop,
      'batch_size': case.batch_size,
      'steps_per_execution': spe,
      'num_train': pipelines.num_train,
      'num_test': pipelines.num_test,
      'steps_per_epoch_expected': pipelines.steps_per_epoch,
      'steps_per_epoch_run': steps_per_epoch,
      'timed_epochs': len(binary),
      'images_per_second': med(binary),
      'images_per_second_all': binary,
      'bare_images_per_second': med(bare_rates),
      'bare_images_per_second_all': bare_rates,
      'binary_vs_bare': med([a / b for a, b in zip(binary, bare_rates)]),
      # Under contention the best epoch estimates the uncontended speed.
      'binary_vs_bare_best': max(binary) / max(bare_rates),
      # Images per CPU-second of this process (all its threads, the input
      # pipeline's included): insensitive to other processes' load.
      'images_per_cpu_second': med(binary_cpu),
      'bare_images_per_cpu_second': med(bare_cpu),
      'binary_vs_bare_cpu': med([a / b for a, b in zip(binary_cpu, bare_cpu)]),
      'epoch_end_seconds': med(ends),
      'evaluation_seconds': med(evals),
      'evaluated_images_per_epoch': pipelines.num_train + pipelines.num_test,
      'setup_seconds': setup_seconds,
      'flops_per_image': flops['train'],
      'forward_flops_per_image': flops['forward'],
      'flops_method': flops['method'],
      'trainable_params': params,
      'peak_memory_mib': peak_memory_mib(),
  }


# ---------------------------------------------------------------------------
# Input pipeline alone.


def _drain(iterator, batches: int, warmup: int = 2) -> tuple[float, float]:
  """(wall, CPU) seconds to pull `batches` batches in one tf.function, as the train loop does,
  after `warmup` untimed ones."""

  @tf.function
  def drain(n):
    total = tf.constant(0.0)
    for _ in tf.range(n):
      x, _ = next(iterator)
      total += tf.cast(x[0, 0, 0, 0], tf.float32)
    return total

  drain(tf.constant(warmup)).numpy()  # trace, warm up, empty the prefetch buffers
  start, cpu = time.perf_counter(), time.process_time()
  drain(tf.constant(batches)).numpy()
  return time.perf_counter() - start, time.process_time() - cpu


def measure_pipeline(dataset: str = 'digits',
                     data_dir: str | None = None,
                     batch_size: int = 128,
                     train_size: int | None = 1280,
                     batches: int = 200,
                     repeats: int = 5,
                     modes: Sequence[tuple[str, dict[str, Any], bool]] = PIPELINE_MODES,
                     image_cache: bool = True) -> dict[str, dict[str, float]]:
  """Images/s of `make_pipelines(..).train(0)` alone, per randomization.

  `setup_seconds` is the one-time cost (load, randomize, materialize);
  `seconds_per_batch` is the steady-state cost of one global batch pulled
  inside a tf.function (as Keras' train function pulls them): the best of
  `repeats` rounds that visit the modes in turn, as timeit takes the best,
  because every mode but the crop does the same gather per batch and their
  medians still differed by up to 4% of an MLP step on this shared machine.
  The medians are kept as `median_seconds_per_batch` (and CPU).
  """
  pipelines, setups = {}, {}
  for name, kwargs, crop in modes:
    t0 = time.perf_counter()
    pipelines[name] = data.make_pipelines(dataset,
                                          data_dir,
                                          data.Randomization(**kwargs),
                                          batch_size,
                                          train_size,
                                          crop,
                                          image_cache=image_cache)
    next(iter(pipelines[name].train(0)))
    setups[name] = time.perf_counter() - t0
  times: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
  for _ in range(repeats):
    for name, p in pipelines.items():
      # A new iterator per round, emptied of what it prefetched before timing,
      # and dropped after: no mode's background prefetching runs while
      # another is timed, and no round is served from a full buffer.
      it = iter(p.train(0))
      times[name].append(_drain(it, batches, warmup=2 * data.CHUNK_BATCHES))
      del it
  out = {}
  for name, ts in times.items():
    s = min(t[0] for t in ts) / batches
    out[name] = {
        'images_per_second': batch_size / s,
        'seconds_per_batch': s,
        'cpu_seconds_per_batch': min(t[1] for t in ts) / batches,
        'median_seconds_per_batch': statistics.median(t[0] for t in ts) / batches,
        'median_cpu_seconds_per_batch': statistics.median(t[1] for t in ts) / batches,
        'setup_seconds': setups[name]
    }
  return out


# ---------------------------------------------------------------------------
# Accuracy effect of mixed precision.


def precision_accuracy(model: str,
                       precision: str,
                       epochs: int,
                       dataset: str = 'digits',
                       data_dir: str | None = None,
                       train_size: int | None = None,
                       batch_size: int = 128) -> dict[str, Any]:
  """Trains `model` with `trainer.run` under a precision policy; final accuracies."""
  with tempfile.TemporaryDirectory() as logdir:
    config = trainer.TrainConfig(logdir=logdir,
                                 dataset=dataset,
                                 data_dir=data_dir,
                                 train_size=train_size,
                                 model=model,
                                 precision=precision,
                                 batch_size=batch_size,
                                 epochs=epochs,
                                 verbose=False)
    start = time.perf_counter()
    r = trainer.run(config)
  return {
      'model': model,
      'precision': precision,
      'epochs': epochs,
      'train_accuracy': r['train_accuracy'],
      'test_accuracy': r['test_accuracy'],
      'train_loss': r['train_loss'],
      'seconds': time.perf_counter() - start
  }


# ---------------------------------------------------------------------------
# The whole benchmark.


def _target(model: str) -> float:
  """The peak-fraction target of a model (0 = none)."""
  return TARGET_PEAK_FRACTION.get('mlp' if model.startswith('mlp') else model, 0.0)


def run(cases: Sequence[ModelCase],
        strategy: tf.distribute.Strategy | None = None,
        pipeline_batches: int = 200,
        pipeline_train_size: int | None = 1280,
        matmul_n: int = 2048,
        accuracy_epochs: int = 0,
        pipeline_modes: Sequence[str] | None = None,
        breakdown: bool = False) -> dict[str, Any]:
  """Measures every case, the pipeline per randomization and the matmul peak.

  With `breakdown`, also `step_breakdown` of each model (first case's batch
  size and precision). Returns the JSON-ready result; `checks` holds each
  target with PASS/FAIL.
  """
  results: dict[str, Any] = {'machine': machine(), 'models': {}, 'variants': []}
  peaks: dict[str, list[float]] = {'float32': []}
  cpu_peaks: dict[str, list[float]] = {'float32': []}

  def sample(dtype: str) -> None:
    m = matmul_peak(matmul_n, dtype, seconds=0.5)
    peaks.setdefault(dtype, []).append(m['best_flops_per_second'])
    cpu_peaks.setdefault(dtype, []).append(m['flops_per_cpu_second'])

  half = lambda p: 'bfloat16' if 'bfloat16' in p else 'float16'
  first = cases[0]
  # The pipeline first, in a fresh process (later, the models' graphs and
  # buffers made its timings noisier).
  modes = [
      m for m in PIPELINE_MODES
      if pipeline_modes is None or m[0] == 'baseline' or m[0] in pipeline_modes
  ]
  pipe = measure_pipeline(first.dataset,
                          first.data_dir,
                          first.batch_size,
                          pipeline_train_size,
                          pipeline_batches,
                          modes=modes)
  measured = []
  for case in cases:
    sample('float32')
    if case.precision != 'float32':
      sample(half(case.precision))
    measured.append((case, measure_model(case, strategy)))
    if breakdown and case.model not in results.setdefault('breakdown', {}):
      results['breakdown'][case.model] = step_breakdown(case.model, case.batch_size, case.precision)
  sample('float32')
  # The peak is the best matmul rate seen in this run (the machine may be shared).
  peak = {k: max(v) for k, v in peaks.items()}
  # Per CPU-second (median): insensitive to other processes' load.
  cpu_peak = {k: statistics.median(v) for k, v in cpu_peaks.items()}
  for case, r in measured:
    ref = peak['float32' if case.precision == 'float32' else half(case.precision)]
    r['matmul_flops_per_second'] = ref
    r['achieved_flops_per_second'] = r['images_per_second'] * r['flops_per_image']
    r['peak_fraction'] = r['achieved_flops_per_second'] / ref
    r['bare_peak_fraction'] = r['bare_images_per_second'] * r['flops_per_image'] / ref
    r['peak_fraction_of_float32_peak'] = r['achieved_flops_per_second'] / peak['float32']
    r['peak_fraction_cpu'] = (
        r['images_per_cpu_second'] * r['flops_per_image'] /
        cpu_peak['float32' if case.precision == 'float32' else half(case.precision)])
    if (case.precision == 'float32' and not case.random_crop and
        case.model not in results['models']):
      results['models'][case.model] = r
    else:
      results['variants'].append(r)
  for name, b in results.get('breakdown', {}).items():
    r = next(r for c, r in measured if c.model == name)
    # The binary's train function (bare loop), per step, beside the minimal step.
    # (The keys keep their names: results files compare across versions.)
    b['keras_step_seconds'] = r['batch_size'] / r['bare_images_per_second']
    b['keras_steps_per_execution'] = r['steps_per_execution']
    ref = peak['float32' if b['precision'] == 'float32' else half(b['precision'])]
    b['conv_dense_peak_fraction'] = b['conv_dense_flops_per_second'] / ref
    b['step_peak_fraction'] = b['step_flops_per_second'] / ref
  results['matmul_flops_per_second'] = peak['float32']
  results['matmul_flops_per_second_samples'] = peaks['float32']
  results['matmul_flops_per_cpu_second'] = cpu_peak['float32']
  for k in ('bfloat16', 'float16'):
    if k in peak:
      results[f'matmul_{k}_flops_per_second'] = peak[k]

  results['pipeline'] = pipe
  results['pipeline_images_per_second'] = min(m['images_per_second'] for m in pipe.values())
  models = results['models'] or {r['model']: r for r in results['variants']}
  fastest = max(models.values(), key=lambda r: r['images_per_second'])
  step = first.batch_size / fastest['bare_images_per_second']
  base = pipe['baseline']['seconds_per_batch']
  for m in pipe.values():
    m['share_of_fastest_step'] = m['seconds_per_batch'] / step
    m['added_share_of_fastest_step'] = (m['seconds_per_batch'] - base) / step
  step_cpu = first.batch_size / fastest['bare_images_per_cpu_second']
  base_cpu = pipe['baseline']['cpu_seconds_per_batch']
  for m in pipe.values():
    m['added_cpu_share_of_fastest_step'] = (m['cpu_seconds_per_batch'] - base_cpu) / step_cpu
  worst_cpu = max(pipe, key=lambda k: pipe[k]['added_cpu_share_of_fastest_step'])
  results['randomization_overhead_cpu'] = pipe[worst_cpu]['added_cpu_share_of_fastest_step']
  results['randomization_overhead_cpu_mode'] = worst_cpu
  worst = max(pipe, key=lambda k: pipe[k]['added_share_of_fastest_step'])
  results['randomization_overhead'] = pipe[worst]['added_share_of_fastest_step']
  results['randomization_overhead_mode'] = worst
  results['pipeline_share_of_fastest_step'] = max(m['share_of_fastest_step'] for m in pipe.values())
  results['fastest_model'] = fastest['model']
  for r in list(results['models'].values()) + results['variants']:
    r['pipeline_share_of_step'] = base / (r['batch_size'] / r['bare_images_per_second'])
    crop = pipe['random_crop']['seconds_per_batch'] - base if 'random_crop' in pipe else 0
    r['crop_share_of_step'] = crop / (r['batch_size'] / r['bare_images_per_second'])

  if accuracy_epochs:
    results['precision_accuracy'] = [
        precision_accuracy(name, p, accuracy_epochs, first.dataset, first.data_dir)
        for name in dict.fromkeys(c.model
                                  for c in cases)
        for p in ('float32', 'mixed_bfloat16')
    ]
  results['checks'] = checks(results)
  results['peak_memory_mib'] = peak_memory_mib()
  return results


def _check(target: str, value: float, required: float, at_most: bool = False) -> dict[str, Any]:
  return {
      'target': target,
      'value': value,
      'required': required,
      'pass': value <= required if at_most else value >= required
  }


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
  """Every throughput target as {target, value, required, pass}."""
  models = results['models'] or {r['model']: r for r in results['variants']}
  out = []
  for name, r in models.items():
    for key, how in (('binary_vs_bare', 'wall clock'), ('binary_vs_bare_cpu', 'per CPU-second')):
      out.append(
          _check(f'{name}: binary >= 95% of bare step loop ({how})', r[key], TARGET_BINARY_VS_BARE))
  out.append(
      _check(
          f'every randomization adds <= 3% to a step '
          f'(worst: {results["randomization_overhead_mode"]}, '
          f'vs {results["fastest_model"]})',
          results['randomization_overhead'],
          TARGET_RANDOMIZATION_OVERHEAD,
          at_most=True))
  out.append(
      _check(
          f'every randomization adds <= 3% to a step, per CPU-second '
          f'(worst: {results["randomization_overhead_cpu_mode"]})',
          results['randomization_overhead_cpu'],
          TARGET_RANDOMIZATION_OVERHEAD,
          at_most=True))
  fastest = models[results['fastest_model']]['images_per_second']
  out.append(
      _check(f'pipeline alone >= 10x the fastest model ({results["fastest_model"]})',
             results['pipeline_images_per_second'] / fastest, TARGET_PIPELINE_MULTIPLE))
  for name, r in models.items():
    required = _target(name)
    if required:
      for key, how in (('peak_fraction', 'wall clock'), ('peak_fraction_cpu', 'per CPU-second')):
        out.append(_check(f'{name}: >= {required:.0%} of matmul peak ({how})', r[key], required))
  return out


def summary(results: dict[str, Any]) -> dict[str, Any]:
  """The last-line JSON object: per-model keys and the top-level numbers."""
  keep = ('images_per_second', 'bare_images_per_second', 'flops_per_image', 'peak_fraction',
          'peak_fraction_cpu', 'binary_vs_bare', 'binary_vs_bare_cpu', 'evaluation_seconds',
          'epoch_end_seconds', 'peak_memory_mib', 'precision', 'steps_per_execution', 'batch_size',
          'random_crop')
  out = {
      'models': {
          name: {
              k: r[k] for k in keep
          } for name, r in results['models'].items()
      },
      'variants': [{
          'model': r['model'],
          **{
              k: r[k] for k in keep
          }
      } for r in results['variants']],
      'matmul_flops_per_second': results['matmul_flops_per_second'],
      'pipeline_images_per_second': results['pipeline_images_per_second'],
      'randomization_overhead': results['randomization_overhead'],
      'randomization_overhead_mode': results['randomization_overhead_mode'],
      'randomization_overhead_cpu': results['randomization_overhead_cpu'],
      'peak_memory_mib': results['peak_memory_mib'],
      'checks_passed': sum(c['pass'] for c in results['checks']),
      'checks_failed': [c['target'] for c in results['checks'] if not c['pass']],
  }
  if results.get('breakdown'):
    out['breakdown'] = {
        name: {
            'step_seconds': b['phases_seconds']['step'],
            'phases_seconds': b['phases_seconds'],
            'keras_step_seconds': b['keras_step_seconds'],
            'seconds_by_type': b['seconds_by_type'],
            'step_peak_fraction': b['step_peak_fraction'],
            'conv_dense_peak_fraction': b['conv_dense_peak_fraction']
        } for name, b in results['breakdown'].items()
    }
  for key in ('matmul_bfloat16_flops_per_second', 'matmul_float16_flops_per_second',
              'precision_accuracy'):
    if key in results:
      out[key] = results[key]
  return out


def _fmt(x: float) -> str:
  return f'{x:,.0f}' if abs(x) >= 100 else f'{x:.3g}'


def format_table(results: dict[str, Any]) -> str:
  """A readable report: models, pipeline, targets."""
  m = results['machine']
  lines = [
      f"machine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, "
      f"{m.get('memory_gib', '?')} GiB, features {','.join(m.get('cpu_features', []))}, "
      f"load average at start {m.get('load_average')}, TF {m['tensorflow']}",
      f"matmul peak (float32, best of {len(results['matmul_flops_per_second_samples'])} "
      f"samples of 0.5 s): {results['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s"
  ]
  for k in ('bfloat16', 'float16'):
    if f'matmul_{k}_flops_per_second' in results:
      lines.append(f'matmul peak ({k}, best sample): '
                   f"{results[f'matmul_{k}_flops_per_second'] / 1e9:.1f} GFLOP/s")
  measured = list(results['models'].values()) + results['variants']
  for precision in dict.fromkeys(r['precision'] for r in measured):
    if cpu.precision_warning(precision) and not m.get('gpus'):
      lines.append(f'note: {cpu.precision_warning(precision)}')
  header = ('model', 'precision', 'crop', 'spe', 'binary img/s', 'bare img/s', 'binary/bare',
            '(best)', '(CPU)', 'MFLOP/img', 'GFLOP/s', 'peak frac', '(of fp32)', 'pipe share',
            'crop share', 'epoch-end s', 'peak MiB')
  rows = []
  for r in list(results['models'].values()) + results['variants']:
    rows.append((r['model'], r['precision'], 'yes' if r['random_crop'] else 'no',
                 str(r['steps_per_execution']), _fmt(r['images_per_second']),
                 _fmt(r['bare_images_per_second']), f"{r['binary_vs_bare']:.3f}",
                 f"{r['binary_vs_bare_best']:.3f}", f"{r['binary_vs_bare_cpu']:.3f}",
                 f"{r['flops_per_image'] / 1e6:.2f}", f"{r['achieved_flops_per_second'] / 1e9:.1f}",
                 f"{r['peak_fraction']:.3f}", f"{r['peak_fraction_cpu']:.3f}",
                 f"{r['peak_fraction_of_float32_peak']:.3f}", f"{r['pipeline_share_of_step']:.4f}",
                 f"{r['crop_share_of_step']:.4f}", f"{r['epoch_end_seconds']:.2f}",
                 f"{r['peak_memory_mib']:.0f}"))
  lines += [
      '',
      _table(header, rows), '(binary = trainer.Trainer.train() steady-state epochs, epoch-end '
      'evaluation/checkpoint excluded and shown as epoch-end s; bare = the '
      'same compiled train function on one in-memory batch; medians, '
      '(best) = best epoch / best bare block; (CPU) = the same ratio in '
      'images per process CPU-second; peak frac against the best matmul '
      'sample of the same precision, (CPU) per CPU-second against the median '
      'matmul per CPU-second; (of fp32) against the float32 peak; pipe/crop share = '
      'pipeline seconds per '
      'batch (baseline / added by random crop) over the bare step)'
  ]
  rows = [(name, _fmt(p['images_per_second']), f"{p['seconds_per_batch'] * 1e3:.3f}",
           f"{p['cpu_seconds_per_batch'] * 1e3:.3f}", f"{p['share_of_fastest_step']:.4f}",
           f"{p['added_share_of_fastest_step']:+.4f}",
           f"{p['added_cpu_share_of_fastest_step']:+.4f}", f"{p['setup_seconds']:.2f}")
          for name, p in results['pipeline'].items()]
  lines += [
      '',
      _table(('pipeline mode', 'img/s', 'ms/batch', 'CPU ms/batch',
              f"share of {results['fastest_model']} step", 'added vs baseline', '(CPU)', 'setup s'),
             rows)
  ]
  for b in results.get('breakdown', {}).values():
    lines += ['', format_breakdown(b)]
  if 'precision_accuracy' in results:
    rows = [(a['model'], a['precision'], str(a['epochs']), f"{a['train_accuracy']:.4f}",
             f"{a['test_accuracy']:.4f}", f"{a['seconds']:.1f}")
            for a in results['precision_accuracy']]
    lines += [
        '', _table(('model', 'precision', 'epochs', 'train acc', 'test acc', 'seconds'), rows)
    ]
  rows = [(c['target'], f"{c['value']:.3f}", f"{c['required']:g}", 'PASS' if c['pass'] else 'FAIL')
          for c in results['checks']]
  lines += ['', _table(('target', 'measured', 'required', 'result'), rows)]
  return '\n'.join(lines)


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
  lines += [_table(('layer type', 'layers', 'fwd+bwd ms', 'share'), rows)]
  rows = [(r['name'], r['type'], 'x'.join(map(str,
                                              r['output_shape'])), f"{r['train_flops'] / 1e6:.1f}",
           ms(r['forward_seconds']), ms(r['train_seconds']),
           f"{r['train_flops'] / r['train_seconds'] / 1e9:.1f}" if r['train_flops'] else '-')
          for r in sorted(b['layers'], key=lambda r: -r['train_seconds'])[:slowest]]
  lines += [
      _table(('slowest layers', 'type', 'output', 'MFLOP', 'fwd ms', 'fwd+bwd ms', 'GFLOP/s'), rows)
  ]
  return '\n'.join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  fmt = lambda row: '  '.join(str(x).ljust(w) for x, w in zip(row, widths))
  return '\n'.join([fmt(header), fmt(['-' * w for w in widths])] + [fmt(r) for r in rows])
