"""The input pipeline alone: `make_pipelines(..).train(0)` per randomization (section 3)."""

from __future__ import annotations

import statistics
import time
from typing import Any
from collections.abc import Sequence

import tensorflow as tf

from rethinking_tf import registry
from rethinking_tf.benchmark import suite

# The randomizations whose pipeline is measured: (name, Randomization kwargs, crop).
PIPELINE_MODES = registry.PIPELINE_MODES


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
    pipelines[name] = suite.make_pipelines(dataset,
                                           data_dir,
                                           suite.Randomization(**kwargs),
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
      times[name].append(_drain(it, batches, warmup=2 * suite.CHUNK_BATCHES))
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
