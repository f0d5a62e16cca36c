"""A run's TensorBoard events, laid out as Keras' TensorBoard callback writes them.

One event directory per split under the run's logdir, each with the same tag
names, so that TensorBoard draws a run's training and test curves in one chart
(the generalization gap of section 2 at a glance):

* `train/`: `loss`, `accuracy` (training-mode averages over the epoch) and
  `learning_rate`, step = epoch; with `log_every_steps`, `batch_loss` and
  `batch_accuracy` (means over each window of steps), step = global step.
* `train_eval/`, `test/`: `loss`, `accuracy`, `top5_accuracy` (inference
  mode over the whole randomized training set / the test set), step = epoch,
  at the evaluated epochs only (every `eval_every_epochs`-th and the last).
* the logdir itself: the hparams-plugin record of the run's settings with its
  final `test_accuracy`, `train_accuracy` and `gap` (their difference),
  written when the run ends.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

SPLITS = ('train', 'train_eval', 'test')


class Summaries:
  """The event writers of one run (see the module doc); created on first use."""

  def __init__(self, logdir: str):
    self.logdir = logdir
    self._writers: dict[str, Any] = {}

  def _writer(self, split: str):
    if split not in self._writers:
      path = os.path.join(self.logdir, split) if split else self.logdir
      self._writers[split] = tf.summary.create_file_writer(path)
    return self._writers[split]

  def epoch(self, row: dict[str, float | None]) -> None:
    """One metrics.csv row's scalars, step = its epoch; an evaluated split only
    when the row holds it (its loss is not None)."""
    epoch = int(row['epoch'])
    for split in SPLITS:
      if row[f'{split}_loss'] is None:
        continue
      with self._writer(split).as_default(step=epoch):
        tf.summary.scalar('loss', row[f'{split}_loss'])
        tf.summary.scalar('accuracy', row[f'{split}_accuracy'])
        if split != 'train':
          tf.summary.scalar('top5_accuracy', row[f'{split}_top5_accuracy'])
        else:
          tf.summary.scalar('learning_rate', row['learning_rate'])
    self.flush()

  def steps(self, step: int, loss: float, accuracy: float) -> None:
    """A window's training loss and accuracy, step = the global step."""
    with self._writer('train').as_default(step=step):
      tf.summary.scalar('batch_loss', loss)
      tf.summary.scalar('batch_accuracy', accuracy)

  def hparams(self, config: dict[str, Any], results: dict[str, Any], trial_id: str) -> None:
    """The hparams record: the settings and the final accuracies and gap."""
    from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()}
    with self._writer('').as_default(step=int(results['epochs_completed'])):
      hp.hparams(values, trial_id=trial_id)
      tf.summary.scalar('test_accuracy', results['test_accuracy'])
      tf.summary.scalar('train_accuracy', results['train_accuracy'])
      tf.summary.scalar('gap', results['train_accuracy'] - results['test_accuracy'])
    self.flush()

  def flush(self) -> None:
    """Flushes every open writer."""
    for writer in self._writers.values():
      writer.flush()
