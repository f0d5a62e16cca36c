"""Step-resolution training curves for Figure 1 (section 2.2's convergence).

With `log_every_steps` = N > 0, every N global steps the training loss and
accuracy averaged over the examples of those N steps (training mode, dropout
on: the running loss the optimizer sees) go to `steps.csv`
(step,epoch,train_loss,train_accuracy) and to TensorBoard (`train/batch_loss`,
`train/batch_accuracy`, step = global step). The trainer calls the loop so
that calls end on multiples of N (`loop.call_sizes(..., every=N)`); a window
is the difference of the epoch's running sums at its ends, and a window that
spans an epoch's end is carried in float64 variables that the checkpoint
holds, so a resumed run writes the same rows.
"""

from __future__ import annotations

import tensorflow as tf

from rethinking_tf.training import loop as loop_lib
from rethinking_tf.training import rundir
from rethinking_tf.training import summaries as summaries_lib

_KEYS = ('loss_sum', 'correct', 'count')


class StepLog:
  """The open window of one run's step-resolution log (see the module doc)."""

  def __init__(self, loop: loop_lib.Loop, summaries: summaries_lib.Summaries, path: str,
               every: int):
    self.loop, self.summaries, self.path, self.every = loop, summaries, path, every
    with loop.strategy.scope():
      self.variables = {
          k: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=f'window_{k}') for k in _KEYS
      }
    self.mark = (0.0, 0.0, 0.0)

  def start_epoch(self) -> None:
    """Called once the loop's running sums were reset."""
    self.mark = (0.0, 0.0, 0.0)

  def _add(self) -> None:
    now = self.loop.train_totals()
    for key, a, b in zip(_KEYS, now, self.mark):
      v = self.variables[key]
      v.assign(float(v.numpy()) + (a - b))
    self.mark = now

  def after_call(self, epoch: int, step: int) -> None:
    """After a train call ending at `step`: writes a row at a multiple of N."""
    if not self.every or step % self.every:
      return
    self._add()
    w = {k: float(v.numpy()) for k, v in self.variables.items()}
    count = max(w['count'], 1.0)
    loss, accuracy = w['loss_sum'] / count, w['correct'] / count
    rundir.append_steps(self.path,
                        dict(step=step, epoch=epoch, train_loss=loss, train_accuracy=accuracy))
    self.summaries.steps(step, loss, accuracy)
    for v in self.variables.values():
      v.assign(0.0)

  def end_epoch(self, step: int) -> None:
    """At an epoch's last step: carries an open window into the variables."""
    if self.every and step % self.every:
      self._add()
