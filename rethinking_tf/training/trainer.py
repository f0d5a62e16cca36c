"""The shared training loop (paper section 2 and appendix A), free of flags.

`run(config)` trains one model on one (randomized) data set and writes to
`config.logdir`:

* `events.out.tfevents.*`: `train/loss`, `train/accuracy` (training-mode
  running averages over the epoch), `train_eval/loss`, `train_eval/accuracy`
  (an inference-mode pass over the whole randomized training set),
  `test/loss`, `test/accuracy`, `learning_rate`; step = epoch. Plus an
  hparams-plugin record.
* `metrics.csv`: the same per epoch, with the global step and wall time.
* `checkpoints/`: the model and optimizer after each epoch (the last two).
* `results.json`: the final numbers, written only when the run finished.
* `failed.txt`: the error of a run that failed; its first line is
  `diverged at epoch E, step S` for a run that diverged (below).

SGD with momentum 0.9; the learning rate is multiplied by `lr_decay` every
epoch (appendix A), or every `lr_decay_steps` steps when that is set, so
runs on a subset can keep the full data set's per-step schedule (391 steps =
one CIFAR-10 epoch at batch 128). The default is per epoch of the data
actually trained on: it is the paper's literal schedule, and with it a
subset run anneals within the same number of epochs as a full run.

Early stopping (section 3.2) watches test accuracy, as the paper reports it:
training stops after `early_stopping_patience` epochs without a new best, and
`best_test_accuracy` is the paper's parenthesised number.

Divergence: an epoch whose training, evaluated-training or test loss is NaN
or infinite ends the run. Its metrics.csv row is kept (with the non-finite
value), no checkpoint is saved for it and no results.json is written;
`run` raises `Diverged`.
"""

from __future__ import annotations

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from rethinking_tf import cpu
from rethinking_tf.data import pipeline as pipeline_lib
from rethinking_tf import models
from rethinking_tf.training import loop as loop_lib
from rethinking_tf.training import rundir
from rethinking_tf.training.config import TrainConfig, auto_steps_per_execution, versions
from rethinking_tf.training.distribute import worker_dir
from rethinking_tf.training.optimizer import MomentumSGD
from rethinking_tf.training.rundir import prepare_logdir


class Diverged(RuntimeError):
  """A loss became NaN or infinite; str() is 'diverged at epoch E, step S'."""

  def __init__(self, epoch: int, step: int, metrics_path: str):
    super().__init__(f'diverged at epoch {epoch}, step {step}')
    self.epoch, self.step, self.metrics_path = epoch, step, metrics_path


class EpochHooks:
  """Called by `Trainer.train` around each epoch's end; a no-op by default.

  `training_done(epoch, step)` runs right after the epoch's last training
  step, before evaluation; `epoch_done(epoch, step, eval_seconds)` after the
  epoch-end work (evaluation, summaries, checkpoint, metrics.csv), with the
  seconds its two evaluation passes took. The benchmark times through these.
  """

  def training_done(self, epoch: int, step: int) -> None:
    del epoch, step

  def epoch_done(self, epoch: int, step: int, eval_seconds: float) -> None:
    del epoch, step, eval_seconds


class Trainer:
  """One run's state; see `run`."""

  def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy):
    self.config, self.strategy = config, strategy
    self.csv_path = os.path.join(config.logdir, 'metrics.csv')
    self.ckpt_dir = os.path.join(config.logdir, 'checkpoints')
    self.start = time.time()

  def build(self, pipelines: pipeline_lib.Pipelines) -> None:
    """Builds the model, optimizer, loop, distributed datasets and checkpoint."""
    c = self.config
    self.p = pipelines
    keras.utils.set_random_seed(c.randomization.seed)
    self.steps_per_execution = (c.steps_per_execution or
                                auto_steps_per_execution(pipelines.steps_per_epoch))
    decay_steps = c.lr_decay_steps or pipelines.steps_per_epoch
    warning = cpu.precision_warning(c.precision)
    if warning and not tf.config.list_physical_devices('GPU'):
      logging.warning(warning)
    keras.mixed_precision.set_global_policy(c.precision)
    try:
      self._build_model(pipelines, decay_steps)
    finally:
      keras.mixed_precision.set_global_policy('float32')
    self.loop = loop_lib.Loop(self.strategy, self.model, self.optimizer)
    self.train_eval = self.loop.distribute(lambda: pipelines.train_eval)
    self.test = self.loop.distribute(lambda: pipelines.test)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir, 2)
    self.writer = tf.summary.create_file_writer(c.logdir)

  def _build_model(self, pipelines: pipeline_lib.Pipelines, decay_steps: int) -> None:
    c = self.config
    with self.strategy.scope():
      self.model = models.build(c.model,
                                pipelines.input_shape,
                                pipelines.num_classes,
                                weight_decay=c.weight_decay,
                                dropout=c.dropout,
                                batch_norm=c.batch_norm,
                                bn_momentum=c.bn_momentum,
                                seed=c.randomization.seed,
                                synchronized_bn=self.strategy.num_replicas_in_sync > 1)
      self.schedule = keras.optimizers.schedules.ExponentialDecay(c.lr,
                                                                  decay_steps,
                                                                  c.lr_decay,
                                                                  staircase=True)
      self.optimizer = MomentumSGD(self.schedule, momentum=c.momentum)
      if c.precision == 'mixed_float16':  # float16 gradients need loss scaling
        self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
      self.optimizer.build(self.model.trainable_variables)
      # The optimizer's `iterations` is the step counter: the checkpoint holds it.
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)

  def restore(self) -> int:
    """Restores the last checkpoint; returns its epoch (0 for a new run)."""
    rows = rundir.trainer_rows(self.csv_path)
    latest = self.manager.latest_checkpoint
    if not latest:
      self.rows = []
      return 0
    self.checkpoint.restore(latest).expect_partial()
    steps = self.loop.step
    self.rows = [r for r in rows if r['step'] <= steps]
    self.start -= self.rows[-1]['seconds'] if self.rows else 0.0
    return len(self.rows)

  def evaluate(self, ds) -> tuple[float, float, float]:
    """(loss, top-1 accuracy, top-5 accuracy) in inference mode."""
    out = self.loop.evaluate(ds)
    return out['loss'], out['accuracy'], out['top5']

  def end_epoch(self, epoch: int, train: dict[str, float]) -> tuple[bool, float]:
    """Evaluates, logs and checkpoints; returns (stop, evaluation seconds)."""
    c = self.config
    eval_start = time.perf_counter()
    train_eval = self.evaluate(self.train_eval)
    test = self.evaluate(self.test)
    eval_seconds = time.perf_counter() - eval_start
    step = self.loop.step
    lr = float(self.schedule(max(step - 1, 0)))
    row = dict(epoch=epoch,
               step=step,
               learning_rate=lr,
               train_loss=train['loss'],
               train_accuracy=train['accuracy'],
               train_eval_loss=train_eval[0],
               train_eval_accuracy=train_eval[1],
               test_loss=test[0],
               test_accuracy=test[1],
               seconds=time.time() - self.start,
               train_eval_top5_accuracy=train_eval[2],
               test_top5_accuracy=test[2])
    self.rows.append(row)
    with self.writer.as_default(step=epoch):
      for split in ('train', 'train_eval', 'test'):
        tf.summary.scalar(f'{split}/loss', row[f'{split}_loss'])
        tf.summary.scalar(f'{split}/accuracy', row[f'{split}_accuracy'])
      tf.summary.scalar('learning_rate', lr)
      tf.summary.scalar('global_step', step)
    self.writer.flush()
    diverged = not all(np.isfinite(row[k]) for k in ('train_loss', 'train_eval_loss', 'test_loss'))
    if not diverged:  # A diverged epoch's weights are not worth resuming from.
      self.manager.save(checkpoint_number=epoch)
    rundir.write_metrics(self.csv_path, self.rows)
    if c.verbose:
      print(
          f'epoch {epoch:4d}/{c.epochs}  step {step:7d}  lr {lr:.5f}  '
          f'loss {row["train_loss"]:.4f}  train acc {row["train_accuracy"]:.4f}  '
          f'eval train acc {row["train_eval_accuracy"]:.4f}  '
          f'test acc {row["test_accuracy"]:.4f}  {row["seconds"]:.0f}s',
          flush=True)
    if diverged:
      raise Diverged(epoch, step, self.csv_path)
    return self.should_stop(), eval_seconds

  def fit_epoch(self) -> dict[str, int] | None:
    """The first epoch whose evaluated training accuracy reached the threshold."""
    for r in self.rows:
      if r['train_eval_accuracy'] >= self.config.fit_threshold:
        return {'epoch': int(r['epoch']), 'step': int(r['step'])}
    return None

  def should_stop(self) -> bool:
    """Stop on fit (if asked) or after `early_stopping_patience` epochs without a best."""
    c = self.config
    if c.stop_on_fit and self.fit_epoch():
      return True
    if c.early_stopping_patience:
      best = int(np.argmax([r['test_accuracy'] for r in self.rows]))
      return len(self.rows) - 1 - best >= c.early_stopping_patience
    return False

  def train(self, hooks: EpochHooks | None = None) -> dict[str, Any]:
    """Trains the remaining epochs (resuming from the last checkpoint); the results."""
    c = self.config
    hooks = hooks or EpochHooks()
    initial_epoch = self.restore()
    if initial_epoch and c.verbose:
      print(f'resuming from epoch {initial_epoch} in {c.logdir}', flush=True)
    if initial_epoch == 0:
      with self.writer.as_default():
        from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
        hp.hparams(
            {
                k: v if isinstance(v, (bool, int, float, str)) else str(v)
                for k, v in c.as_dict().items()
            },
            trial_id=os.path.basename(c.logdir))
    fit_start, fit_steps = time.time(), 0
    if initial_epoch < c.epochs and not (initial_epoch and self.should_stop()):
      steps_before = self.loop.step
      iterator = iter(self.loop.distribute(lambda: self.p.train(initial_epoch)))
      for epoch in range(initial_epoch + 1, c.epochs + 1):
        self.loop.reset_train_metrics()
        for size in loop_lib.call_sizes(self.p.steps_per_epoch, self.steps_per_execution):
          self.loop.train(iterator, size)
        train = self.loop.train_metrics()  # also waits for the last step
        hooks.training_done(epoch, self.loop.step)
        stop, eval_seconds = self.end_epoch(epoch, train)
        hooks.epoch_done(epoch, self.loop.step, eval_seconds)
        if stop:
          break
      fit_steps = self.loop.step - steps_before
    return self.results(fit_steps, time.time() - fit_start)

  def results(self, fit_steps: int, fit_seconds: float) -> dict[str, Any]:
    """results.json's dict for the epochs in metrics.csv."""
    c = self.config
    last = self.rows[-1]
    best = max(self.rows, key=lambda r: r['test_accuracy'])
    fit = self.fit_epoch()
    steps = int(last['step'])
    return {
        'train_accuracy': last['train_eval_accuracy'],
        'train_loss': last['train_eval_loss'],
        'train_running_accuracy': last['train_accuracy'],
        'test_accuracy': last['test_accuracy'],
        'test_loss': last['test_loss'],
        'best_test_accuracy': best['test_accuracy'],
        'train_top5_accuracy': last['train_eval_top5_accuracy'],
        'test_top5_accuracy': last['test_top5_accuracy'],
        'best_test_top5_accuracy': max(r['test_top5_accuracy'] for r in self.rows),
        'best_test_epoch': int(best['epoch']),
        'epochs_completed': int(last['epoch']),
        'steps_completed': steps,
        'fit_epoch': fit['epoch'] if fit else None,
        'fit_step': fit['step'] if fit else None,
        'fit_threshold': c.fit_threshold,
        'trainable_params': models.trainable_params(self.model),
        'label_noise_fraction': self.p.label_noise_fraction,
        'num_train': self.p.num_train,
        'num_test': self.p.num_test,
        'num_replicas': self.strategy.num_replicas_in_sync,
        'steps_per_execution': self.steps_per_execution,
        'wall_seconds': last['seconds'],
        'examples_per_second': (fit_steps * c.batch_size / fit_seconds if fit_steps else None),
        'examples_per_second_note': 'training images per second over this '
                                    "process's training epochs, evaluation passes included",
        'versions': versions(),
        'config': c.as_dict(),
    }


def make_pipelines(config: TrainConfig) -> pipeline_lib.Pipelines:
  """The randomized pipelines of a run (section 2.1), as `run` trains on them."""
  return pipeline_lib.make_pipelines(config.dataset,
                                     config.data_dir,
                                     config.randomization,
                                     config.batch_size,
                                     config.train_size,
                                     config.random_crop,
                                     augment=config.augment,
                                     test_size=config.test_size,
                                     image_cache=config.image_cache)


def run(config: TrainConfig,
        strategy: tf.distribute.Strategy | None = None,
        flagfile: str | None = None) -> dict[str, Any]:
  """Trains one run (resuming it if interrupted) and returns results.json's dict.

  Args:
    config: the run.
    strategy: a tf.distribute strategy (default: the default strategy).
    flagfile: text of the resolved flagfile to store as `flags.cfg`.
  Raises:
    RunExists: the logdir holds a finished run or different settings.
    Diverged: a loss became non-finite (failed.txt's first line says where).
    sources.DataError: the data set is unavailable.
  """
  strategy = strategy or tf.distribute.get_strategy()
  worker = worker_dir(strategy)
  if worker:  # Every worker saves (collectively), each to its own directory.
    config = dataclasses.replace(config, logdir=os.path.join(config.logdir, worker), verbose=False)
  prepare_logdir(config, flagfile)
  try:
    trainer = Trainer(config, strategy)
    trainer.build(make_pipelines(config))
    results = trainer.train()
  except BaseException as e:  # Recorded for the sweep runner, then re-raised.
    first = str(e) if isinstance(e, Diverged) else f'{type(e).__name__}: {e}'
    rundir.write_failed(config.logdir, first)
    raise
  rundir.write_json(os.path.join(config.logdir, rundir.RESULTS), results)
  return results
