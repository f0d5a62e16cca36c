"""The machine: CPU and versions, the matrix-product peak, analytic FLOPs per image."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rethinking_tf import cpu


def peak_memory_mib() -> float:
  """Process-wide peak resident memory so far (ru_maxrss), MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info() -> dict[str, Any]:
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
  info['onednn'] = cpu.onednn_enabled()
  if isa := os.environ.get('ONEDNN_MAX_CPU_ISA'):  # oneDNN's kernels held to an older ISA
    info['onednn_max_cpu_isa'] = isa
  info['tensorflow'], info['keras'] = tf.__version__, keras.__version__
  return info


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


def layer_macs(layer: keras.layers.Layer) -> int:
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
  macs = [(layer.name, layer_macs(layer)) for layer in model.layers]
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
