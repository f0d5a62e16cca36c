"""What a run's metrics.csv rows decide (paper sections 2 and 3.2), free of TensorFlow.

Which epochs are evaluated, whether the training set is fitted, when early
stopping ends a run, and results.json's numbers.

The paper evaluates after every epoch (`eval_every_epochs` = 1, the
default). With K > 1 the two evaluation passes (inference mode over the
whole randomized training set, and over the test set) run at epochs K, 2K,
..., at the last epoch and at an epoch whose training loss is not finite
(where the run ends); the other rows hold the training running averages,
the evaluated columns empty (None). Then `fit_epoch` is the first evaluated
epoch that reached the threshold (the fit happened within the K epochs
before it), early stopping counts epochs but is decided at evaluated epochs
(so it stops up to K - 1 epochs later than at K = 1), and the best test
accuracy is the best of the evaluated epochs.
"""

from __future__ import annotations

from typing import Any

from rethinking_tf.training.rundir import evaluated

Row = dict[str, Any]


def evaluates(epoch: int, eval_every_epochs: int, epochs: int) -> bool:
  """Whether `epoch` runs the evaluation passes: every `eval_every_epochs`-th
  epoch and the last (`epochs`, or any later one a resumed run sits at)."""
  return epoch % eval_every_epochs == 0 or epoch >= epochs


def fit_epoch(rows: list[Row], threshold: float) -> Row | None:
  """The first evaluated row whose evaluated training accuracy reached `threshold`."""
  return next((r for r in rows if evaluated(r) and r['train_eval_accuracy'] >= threshold), None)


def early_stop(rows: list[Row], patience: int) -> bool:
  """`patience` epochs (> 0) from the best evaluated test accuracy to the last evaluated epoch."""
  done = [r for r in rows if evaluated(r)]
  if not patience or not done:
    return False
  best = max(done, key=lambda r: r['test_accuracy'])  # the first of equals
  return done[-1]['epoch'] - best['epoch'] >= patience


def numbers(rows: list[Row], fit_threshold: float, eval_every_epochs: int) -> dict[str, Any]:
  """results.json's numbers from the rows of a run whose last epoch was evaluated."""
  last = rows[-1]
  if not evaluated(last):
    raise ValueError(f'epoch {last["epoch"]}, the last, was not evaluated')
  done = [r for r in rows if evaluated(r)]
  best = max(done, key=lambda r: r['test_accuracy'])
  fit = fit_epoch(rows, fit_threshold)
  return {
      'train_accuracy': last['train_eval_accuracy'],
      'train_loss': last['train_eval_loss'],
      'train_running_accuracy': last['train_accuracy'],
      'test_accuracy': last['test_accuracy'],
      'test_loss': last['test_loss'],
      'best_test_accuracy': best['test_accuracy'],
      'train_top5_accuracy': last['train_eval_top5_accuracy'],
      'test_top5_accuracy': last['test_top5_accuracy'],
      'best_test_top5_accuracy': max(r['test_top5_accuracy'] for r in done),
      'best_test_epoch': int(best['epoch']),
      'epochs_completed': int(last['epoch']),
      'steps_completed': int(last['step']),
      'eval_every_epochs': eval_every_epochs,
      'evaluated_epochs': len(done),
      'fit_epoch': int(fit['epoch']) if fit else None,
      'fit_step': int(fit['step']) if fit else None,
      'fit_threshold': fit_threshold,
      'wall_seconds': last['seconds'],
  }
