"""The shared training loop (paper section 2 and appendix A), free of flags.

`run(config)` trains one model on one (randomized) data set and writes to
`config.logdir`:

* `train/`, `train_eval/`, `test/`: TensorBoard events, one directory per
  split with the tags `loss`, `accuracy` (top-5 too for the evaluated
  splits), step = epoch; `learning_rate` and, with `log_every_steps`, the
  step-resolution `batch_loss` and `batch_accuracy` in `train/` (see
  `summaries`); the hparams record in the logdir, written at the end.
* `metrics.csv`: one row per epoch: the training-mode running averages over
  the epoch, an inference-mode pass over the whole randomized training set
  (`train_eval_*`) and over the test set, the global step and wall time.
  The two passes run every epoch by default (the paper's), else every
  `eval_every_epochs`-th epoch and at the last (see `progress`); a row
  without them has those columns empty, and `train_eval/`, `test/` get no
  point for that epoch.
* `steps.csv` (with `log_every_steps` = N > 0): every N steps the training
  loss and accuracy over the examples of those N steps (training mode).
* `initial.weights.h5`: the weights before the first training step.
* `checkpoints/`: the model, optimizer (its step counter), the dropout
  layers' seed states and the epoch's running training sums, after each
  epoch (the last two).
* `results.json`: the final numbers and the start-up's phases (`startup`),
  written only when the run finished.
* `failed.txt`: the error of a run that failed; its first line is
  `diverged at epoch E, step S` for a run that diverged (below).

Resume is exact: the epoch and step come from the checkpoint's step counter
(checkpoints are written at epoch ends), rows of metrics.csv and steps.csv
beyond it are dropped, and an epoch whose checkpoint was saved but whose
metrics row was not gets the row recomputed from the restored state (by
evaluation if the epoch is evaluated). An epoch's end writes its summaries,
then the checkpoint, then metrics.csv (atomically), so any kill leaves a
consistent pair (TensorBoard points written after the last checkpoint are
written again on resume, with the same values).

SGD with momentum 0.9; the learning rate is multiplied by `lr_decay` every
epoch (appendix A), or every `lr_decay_steps` steps when that is set, so
runs on a subset can keep the full data set's per-step schedule (391 steps =
one CIFAR-10 epoch at batch 128). The default is per epoch of the data
actually trained on: it is the paper's literal schedule, and with it a
subset run anneals within the same number of epochs as a full run.

Early stopping (section 3.2) watches test accuracy, as the paper reports it:
training stops after `early_stopping_patience` epochs without a new best, and
`best_test_accuracy` is the paper's parenthesised number (both over the
evaluated epochs).

Divergence: an epoch whose training loss (checked every epoch) or evaluated
training or test loss (at evaluated epochs; an epoch with a non-finite
training loss is evaluated) is NaN or infinite ends the run. Its metrics.csv
row is kept, no checkpoint is saved for it and no results.json is written;
`run` raises `Diverged`.
"""

from __future__ import annotations

import dataclasses
import functools
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
from rethinking_tf.training import progress
from rethinking_tf.training import rundir
from rethinking_tf.training import startup
from rethinking_tf.training import steplog as steplog_lib
from rethinking_tf.training import summaries as summaries_lib
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
  """Called by `Trainer.train` during each epoch; a no-op by default.

  `steps_done(epoch, step)` runs after each training call (several steps),
  `training_done(epoch, step)` right after the epoch's last training step,
  before evaluation; `checkpoint_saved(epoch, step)` right after the epoch's
  checkpoint, before metrics.csv; `epoch_done(epoch, step, eval_seconds)`
  after the epoch-end work (evaluation, summaries, checkpoint, metrics.csv),
  with the seconds its two evaluation passes took (0 for an epoch without
  them). The benchmark times through these; the resume test kills a run in
  them.
  """

  def steps_done(self, epoch: int, step: int) -> None:
    del epoch, step

  def training_done(self, epoch: int, step: int) -> None:
    del epoch, step

  def checkpoint_saved(self, epoch: int, step: int) -> None:
    del epoch, step

  def epoch_done(self, epoch: int, step: int, eval_seconds: float) -> None:
    del epoch, step, eval_seconds


class Trainer:
  """One run's state; see `run`."""

  def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy):
    self.config, self.strategy = config, strategy
    self.csv_path = os.path.join(config.logdir, rundir.METRICS)
    self.steps_path = os.path.join(config.logdir, rundir.STEPS)
    self.ckpt_dir = os.path.join(config.logdir, rundir.CHECKPOINTS)
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
    self.summaries = summaries_lib.Summaries(c.logdir)
    self.steplog = steplog_lib.StepLog(self.loop, self.summaries, self.steps_path,
                                       c.log_every_steps)
    # The optimizer's `iterations` is the step counter: the checkpoint holds it.
    self.checkpoint = tf.train.Checkpoint(model=self.model,
                                          optimizer=self.optimizer,
                                          seeds=loop_lib.seed_states(self.model),
                                          train_sums=self.loop.train_variables,
                                          window=self.steplog.variables)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir, 2)

  @functools.cached_property
  def test(self) -> tf.distribute.DistributedDataset:
    """The distributed test set, made at its first use (the first evaluation)."""
    test = self.p.test  # For in-memory data the test set's copy is made here.
    return self.loop.distribute(lambda: test)

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

  def restore(self) -> int:
    """Restores the last checkpoint; returns its epoch (0 for a new run).

    The epoch is the checkpoint's step counter over the steps per epoch; rows
    after it are dropped, and its own row, when missing (a kill between the
    checkpoint and metrics.csv), is recomputed: the training averages from the
    checkpoint's running sums, the evaluation passes if the epoch is evaluated.
    So is a row without evaluation at an epoch now evaluated (a run resumed
    with fewer --epochs than it had done: its last epoch).
    """
    rows = rundir.trainer_rows(self.csv_path)
    latest = self.manager.latest_checkpoint
    self.rows = []
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    step = self.loop.step
    epoch, rest = divmod(step, self.p.steps_per_epoch)
    if rest:
      raise RuntimeError(f'{latest} holds step {step}, not the end of an epoch of '
                         f'{self.p.steps_per_epoch} steps')
    if not epoch:
      rundir.truncate_steps(self.steps_path, 0)
      return 0
    self.rows = [r for r in rows if r['epoch'] <= epoch]
    evaluate = self.evaluates(epoch)
    if [r['epoch'] for r in self.rows] == list(range(1, epoch)):
      self.rows.append(self.epoch_row(epoch, self.loop.train_metrics(), evaluate))
      rundir.write_metrics(self.csv_path, self.rows)
    elif [r['epoch'] for r in self.rows] != list(range(1, epoch + 1)):
      raise RuntimeError(f'{self.csv_path} lacks rows before epoch {epoch} of {latest}')
    elif evaluate and not rundir.evaluated(self.rows[-1]):
      row = self.epoch_row(epoch, self.loop.train_metrics(), evaluate)
      self.rows[-1].update({k: row[k] for k in rundir.EVAL_FIELDS})
      self.summaries.epoch(self.rows[-1])
      rundir.write_metrics(self.csv_path, self.rows)
    rundir.truncate_steps(self.steps_path, step)
    self.start -= self.rows[-1]['seconds'] if self.rows else 0.0
    return epoch

  def evaluate(self, ds: tf.distribute.DistributedDataset) -> tuple[float, float, float]:
    """(loss, top-1 accuracy, top-5 accuracy) in inference mode."""
    out = self.loop.evaluate(ds)
    return out['loss'], out['accuracy'], out['top5']

  def evaluates(self, epoch: int) -> bool:
    """Whether `epoch` runs the two evaluation passes (`progress.evaluates`)."""
    return progress.evaluates(epoch, self.config.eval_every_epochs, self.config.epochs)

  def epoch_row(self, epoch: int, train: dict[str, float], evaluate: bool) -> dict[str, Any]:
    """metrics.csv's row of an epoch: `train` (its running averages) and, if
    `evaluate`, the two evaluation passes of the current weights (else None);
    `eval_seconds` is their time."""
    eval_start, passes = time.perf_counter(), {}
    if evaluate:
      passes = {'train_eval': self.evaluate(self.train_eval), 'test': self.evaluate(self.test)}
    self.eval_seconds = time.perf_counter() - eval_start if evaluate else 0.0
    step = self.loop.step
    row = dict(epoch=epoch,
               step=step,
               learning_rate=float(self.schedule(max(step - 1, 0))),
               train_loss=train['loss'],
               train_accuracy=train['accuracy'],
               seconds=time.time() - self.start)
    for split in ('train_eval', 'test'):
      values = passes.get(split, (None, None, None))
      for name, value in zip(('loss', 'accuracy', 'top5_accuracy'), values):
        row[f'{split}_{name}'] = value
    return row

  def end_epoch(self, epoch: int, train: dict[str, float], hooks: EpochHooks) -> tuple[bool, float]:
    """Evaluates, then writes the summaries, the checkpoint and metrics.csv, in
    that order; returns (stop, evaluation seconds)."""
    c = self.config
    evaluate = self.evaluates(epoch) or not np.isfinite(train['loss'])
    row = self.epoch_row(epoch, train, evaluate)
    self.rows.append(row)
    self.summaries.epoch(row)
    losses = [row[k] for k in ('train_loss', 'train_eval_loss', 'test_loss') if row[k] is not None]
    diverged = not all(np.isfinite(v) for v in losses)
    if not diverged:  # A diverged epoch's weights are not worth resuming from.
      self.manager.save(checkpoint_number=epoch)
      hooks.checkpoint_saved(epoch, row['step'])
    rundir.write_metrics(self.csv_path, self.rows)
    if c.verbose:
      until = f' (or until {c.fit_threshold:.0%} eval train acc)' if c.stop_on_fit else ''
      evaluated = (f'eval train acc {row["train_eval_accuracy"]:.4f}  '
                   f'test acc {row["test_accuracy"]:.4f}  ') if evaluate else ''
      print(
          f'epoch {epoch:4d}/{c.epochs}{until}  step {row["step"]:7d}  '
          f'lr {row["learning_rate"]:.5f}  '
          f'loss {row["train_loss"]:.4f}  train acc {row["train_accuracy"]:.4f}  '
          f'{evaluated}{row["seconds"]:.0f}s',
          flush=True)
    if diverged:
      raise Diverged(epoch, row['step'], self.csv_path)
    return evaluate and self.should_stop(), self.eval_seconds

  def should_stop(self) -> bool:
    """Stop on fit (if asked) or after `early_stopping_patience` epochs without a
    best (both read at evaluated epochs: `progress`)."""
    c = self.config
    if c.stop_on_fit and progress.fit_epoch(self.rows, c.fit_threshold):
      return True
    return progress.early_stop(self.rows, c.early_stopping_patience)

  def _save_initial_weights(self) -> None:
    path = os.path.join(self.config.logdir, rundir.INITIAL_WEIGHTS)
    if not os.path.exists(path):
      tmp = path[:-len('.weights.h5')] + '.tmp.weights.h5'
      self.model.save_weights(tmp)
      os.replace(tmp, path)

  def train(self, hooks: EpochHooks | None = None) -> dict[str, Any]:
    """Trains the remaining epochs (resuming from the last checkpoint); the results."""
    c = self.config
    hooks = hooks or EpochHooks()
    initial_epoch = self.restore()
    if initial_epoch and c.verbose:
      print(f'resuming from epoch {initial_epoch} in {c.logdir}', flush=True)
    if initial_epoch == 0:
      self._save_initial_weights()
    fit_start, fit_steps = time.time(), 0
    if initial_epoch < c.epochs and not (initial_epoch and self.should_stop()):
      step = steps_before = self.loop.step
      iterator = iter(self.loop.distribute(lambda: self.p.train(initial_epoch)))
      for epoch in range(initial_epoch + 1, c.epochs + 1):
        self.loop.reset_train_metrics()
        self.steplog.start_epoch()
        for size in loop_lib.call_sizes(self.p.steps_per_epoch, self.steps_per_execution, step,
                                        c.log_every_steps):
          self.loop.train(iterator, size)
          step += size
          self.steplog.after_call(epoch, step)
          hooks.steps_done(epoch, step)
        self.steplog.end_epoch(step)
        train = self.loop.train_metrics()  # also waits for the last step
        hooks.training_done(epoch, self.loop.step)
        stop, eval_seconds = self.end_epoch(epoch, train, hooks)
        hooks.epoch_done(epoch, self.loop.step, eval_seconds)
        if stop:
          break
      fit_steps = self.loop.step - steps_before
    results = self.results(fit_steps, time.time() - fit_start)
    self.summaries.hparams(c.as_dict(), results, trial_id=os.path.basename(c.logdir))
    return results

  def results(self, fit_steps: int, fit_seconds: float) -> dict[str, Any]:
    """results.json's dict for the epochs in metrics.csv."""
    c = self.config
    out = progress.numbers(self.rows, c.fit_threshold, c.eval_every_epochs)
    out.update({
        'trainable_params': models.trainable_params(self.model),
        'label_noise_fraction': self.p.label_noise_fraction,
        'num_train': self.p.num_train,
        'num_test': self.p.num_test,
        'num_replicas': self.strategy.num_replicas_in_sync,
        'steps_per_execution': self.steps_per_execution,
        'examples_per_second': (fit_steps * c.batch_size / fit_seconds if fit_steps else None),
        'examples_per_second_note': 'training images per second over this '
                                    "process's training epochs, evaluation passes included",
        'versions': versions(),
        'config': c.as_dict(),
    })
    return out


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
        flagfile: str | None = None,
        hooks: EpochHooks | None = None) -> dict[str, Any]:
  """Trains one run (resuming it if interrupted) and returns results.json's dict.

  Args:
    config: the run.
    strategy: a tf.distribute strategy (default: the default strategy).
    flagfile: text of the resolved flagfile to store as `flags.cfg`.
    hooks: called during each epoch (`EpochHooks`).
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
  clock = startup.Clock(config.verbose)
  try:
    trainer = Trainer(config, strategy)
    trainer.build(clock.pipelines(make_pipelines(config)))
    clock.phase('model')
    results = trainer.train(startup.FirstCallHooks(hooks or EpochHooks(), clock))
    results['startup'] = clock.final()
  except BaseException as e:  # Recorded for the sweep runner, then re-raised.
    first = str(e) if isinstance(e, Diverged) else f'{type(e).__name__}: {e}'
    rundir.write_failed(config.logdir, first)
    raise
  rundir.write_json(os.path.join(config.logdir, rundir.RESULTS), results)
  return results
