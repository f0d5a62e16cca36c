"""Training throughput: the binary's code path, the bare step loop and the peer beside it.

`measure_model` trains one `ModelCase` through `Trainer.train` and, after
every epoch, runs a block of bare steps (the same compiled train function on
one in-memory batch) and, when given, a block of the peer's steps (the same
model in another library, `peer_pytorch`), so that the three are measured
under the same machine load, epoch by epoch. It also times the per-epoch work
outside the training steps (each evaluation pass and the checkpoint) alone.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from typing import Any, Protocol
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from rethinking_tf.benchmark import machine
from rethinking_tf.benchmark import ops
from rethinking_tf.benchmark import suite


class PeerTrainer(Protocol):
  """A model trained by another library (`peer_pytorch.Peer`), in blocks of steps."""

  def run(self, steps: int) -> tuple[float, float]:
    """Runs `steps` training steps; returns (wall, process CPU) seconds."""

  def info(self) -> dict[str, Any]:
    """What the peer is (library, version, threads, parameter count)."""

  def op_profile(self, steps: int) -> dict[str, Any]:
    """`ops.summarize` of `steps` steps under the library's own profiler."""


# Builds the peer of a model: (model name, batch size, training images, learning
# rate, weight decay, precision) -> PeerTrainer.
PeerFactory = Callable[..., PeerTrainer]


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

  def train_config(self, logdir: str) -> suite.TrainConfig:
    """The training binary's config for this case, quiet, writing to `logdir`."""
    return suite.TrainConfig(logdir=logdir,
                             dataset=self.dataset,
                             data_dir=self.data_dir,
                             train_size=self.train_size,
                             model=self.model,
                             batch_size=self.batch_size,
                             random_crop=self.random_crop,
                             precision=self.precision,
                             epochs=self.epochs,
                             steps_per_execution=self.steps_per_execution,
                             verbose=False)


class BareLoop:
  """The compiled train function of a model on one in-memory batch, repeated."""

  def __init__(self, t: suite.Trainer):
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


class _Timer(suite.EpochHooks):
  """Times each epoch's training and epoch-end work, then runs a bare block and a peer block."""

  def __init__(self, bare: BareLoop, calls: int, peer: PeerTrainer | None, peer_steps: int):
    self.bare, self.calls, self.log = bare, calls, []
    self.peer, self.peer_steps = peer, peer_steps

  def training_done(self, epoch: int, step: int) -> None:
    self.enter, self.enter_cpu, self.steps = time.perf_counter(), time.process_time(), step

  def epoch_done(self, epoch: int, step: int, eval_seconds: float) -> None:
    leave = time.perf_counter()
    bare_seconds, bare_cpu = self.bare.run(self.calls)  # side by side, same load
    peer_seconds, peer_cpu = self.peer.run(self.peer_steps) if self.peer else (0.0, 0.0)
    self.log.append(
        dict(enter=self.enter,
             enter_cpu=self.enter_cpu,
             leave=leave,
             steps=self.steps,
             end_seconds=leave - self.enter,
             eval_seconds=eval_seconds,
             bare_seconds=bare_seconds,
             bare_cpu=bare_cpu,
             peer_seconds=peer_seconds,
             peer_cpu=peer_cpu,
             resume=time.perf_counter(),
             resume_cpu=time.process_time()))


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
  """Best wall seconds of `repeats` calls of `fn`."""
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def epoch_costs(t: suite.Trainer, train_seconds: float, repeats: int = 2) -> dict[str, float]:
  """The per-epoch work outside the training steps, each part timed alone (best of `repeats`).

  `train_eval_seconds`: the inference pass over the (randomized) training
  set; `test_seconds`: the test pass; `checkpoint_seconds`: one checkpoint
  save. Each `*_share` is that part over an epoch of `train_seconds` of
  training steps plus the three.
  """
  out = {
      'train_seconds': train_seconds,
      'train_eval_seconds': _best_seconds(lambda: t.evaluate(t.train_eval), repeats),
      'test_seconds': _best_seconds(lambda: t.evaluate(t.test), repeats),
      'checkpoint_seconds': _best_seconds(t.manager.save, repeats),
  }
  epoch = sum(out.values())
  for key in ('train_eval', 'test', 'checkpoint'):
    out[f'{key}_share'] = out[f'{key}_seconds'] / epoch
  out['evaluation_share'] = out['train_eval_share'] + out['test_share']
  return out


def measure_model(case: ModelCase,
                  strategy: tf.distribute.Strategy | None = None,
                  bare_calls: int | None = None,
                  peer: PeerFactory | None = None,
                  op_profile: bool = False) -> dict[str, Any]:
  """Trains `case` through the binary's code path with bare (and peer) blocks interleaved.

  Returns images/s (binary and bare medians over the timed epochs), their
  ratio, epoch-end (evaluation etc.) seconds, the per-epoch costs outside the
  step (`epoch_costs`), FLOPs per image and memory. With `peer`, the peer
  model (`peer(model, batch_size=, num_train=, learning_rate=,
  weight_decay=, precision=)`) trains one epoch's steps after every bare block:
  `peer_images_per_second` (median) and `peer_ratio`, the median of the
  epochs' binary / peer ratios (`peer_ratio_range` their least and greatest,
  `peer_ratio_best` the best epoch over the peer's best). With
  `op_profile`, after training, one bare block (and one peer epoch) under
  the profilers: `op_profile` (and `peer_op_profile`), ms per step per op
  type (`ops`).
  """
  strategy = strategy or tf.distribute.get_strategy()
  with tempfile.TemporaryDirectory() as logdir:
    config = case.train_config(logdir)
    suite.prepare_logdir(config, None)
    t = suite.Trainer(config, strategy)
    t0 = time.perf_counter()
    pipelines = suite.make_config_pipelines(config)
    t.build(pipelines)
    setup_seconds = time.perf_counter() - t0
    bare = BareLoop(t)
    spe = t.steps_per_execution  # as resolved by the trainer
    calls = bare_calls or max(1, pipelines.steps_per_epoch // spe)
    peer_model = peer and peer(case.model,
                               batch_size=case.batch_size,
                               num_train=pipelines.num_train,
                               learning_rate=config.lr,
                               weight_decay=config.weight_decay,
                               precision=case.precision)
    timer = _Timer(bare, calls, peer_model, pipelines.steps_per_epoch)
    fit_start, fit_start_cpu = time.perf_counter(), time.process_time()
    t.train(timer)
    log = timer.log
    # Epoch k's training: from the end of epoch k-1's end work to the end of its steps.
    prev_time, prev_cpu, prev_steps = fit_start, fit_start_cpu, 0
    binary, bare_rates, ends, evals, steps_per_epoch = [], [], [], [], []
    binary_cpu, bare_cpu, peer_rates, peer_cpu = [], [], [], []
    for k, row in enumerate(log):
      # Bare steps ran between epochs: discount them from the step counter.
      steps = row['steps'] - prev_steps
      if k >= case.warmup_epochs:
        binary.append(steps * case.batch_size / (row['enter'] - prev_time))
        bare_rates.append(calls * bare.images_per_call / row['bare_seconds'])
        binary_cpu.append(steps * case.batch_size / (row['enter_cpu'] - prev_cpu))
        bare_cpu.append(calls * bare.images_per_call / row['bare_cpu'])
        if peer_model:
          peer_images = pipelines.steps_per_epoch * case.batch_size
          peer_rates.append(peer_images / row['peer_seconds'])
          peer_cpu.append(peer_images / row['peer_cpu'])
        ends.append(row['end_seconds'])
        evals.append(row['eval_seconds'])
      steps_per_epoch.append(steps)
      prev_time, prev_cpu = row['resume'], row['resume_cpu']
      prev_steps = row['steps'] + calls * spe
    if not binary:
      raise ValueError(f'{case.model}: no timed epoch (epochs={case.epochs}, '
                       f'warmup_epochs={case.warmup_epochs})')
    med = statistics.median
    costs = epoch_costs(t, pipelines.num_train / med(binary))
    flops = machine.flops_per_image(t.model)
    params = sum(int(np.prod(w.shape)) for w in t.model.trainable_weights)
    profiles = {}
    if op_profile:
      profiles['op_profile'] = ops.tensorflow_ops(lambda: bare.run(calls), calls * spe)
      if peer_model:
        profiles['peer_op_profile'] = peer_model.op_profile(pipelines.steps_per_epoch)
  out = {
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
      'epoch_costs': costs,
      'setup_seconds': setup_seconds,
      'flops_per_image': flops['train'],
      'forward_flops_per_image': flops['forward'],
      'flops_method': flops['method'],
      'trainable_params': params,
      'peak_memory_mib': machine.peak_memory_mib(),
      **profiles,
  }
  if peer_model:
    ratios = [a / b for a, b in zip(binary, peer_rates)]
    out.update({
        'peer': peer_model.info(),
        'peer_images_per_second': med(peer_rates),
        'peer_images_per_second_all': peer_rates,
        'peer_images_per_cpu_second': med(peer_cpu),
        'peer_ratio': med(ratios),
        # The epochs' spread, and the best epoch against the peer's best (each
        # side's least disturbed epoch): on a shared machine one epoch's ratio
        # can be half or twice the median.
        'peer_ratio_range': [min(ratios), max(ratios)],
        'peer_ratio_best': max(binary) / max(peer_rates),
        'peer_ratio_cpu': med([a / b for a, b in zip(binary_cpu, peer_cpu)]),
        'peer_ratio_bare': med([a / b for a, b in zip(bare_rates, peer_rates)]),
    })
  return out


def precision_accuracy(model: str,
                       precision: str,
                       epochs: int,
                       dataset: str = 'digits',
                       data_dir: str | None = None,
                       train_size: int | None = None,
                       batch_size: int = 128) -> dict[str, Any]:
  """Trains `model` with `trainer.run` under a precision policy; final accuracies."""
  case = ModelCase(model,
                   batch_size=batch_size,
                   train_size=train_size,
                   epochs=epochs,
                   precision=precision,
                   dataset=dataset,
                   data_dir=data_dir)
  with tempfile.TemporaryDirectory() as logdir:
    config = case.train_config(logdir)
    start = time.perf_counter()
    r = suite.train(config)
  return {
      'model': model,
      'precision': precision,
      'epochs': epochs,
      'train_accuracy': r['train_accuracy'],
      'test_accuracy': r['test_accuracy'],
      'train_loss': r['train_loss'],
      'seconds': time.perf_counter() - start
  }
