"""Optimization-based measures (Jiang et al. 2020 section 6: steps to a loss).

* steps to training cross-entropy 0.1: the first step at which the logged
  training loss is <= 0.1. From the step-resolution log `steps.csv`
  (columns step, epoch, train_loss, train_accuracy: the training loss averaged
  over each window of --log_every_steps steps)
  when the run has one, else from metrics.csv's evaluated training loss
  (`train_eval_loss`, inference mode over the whole randomized training
  set), at epoch resolution (the step of the first epoch that reached it).
  Jiang et al. train every model to 0.01 and count steps to 0.1.
* steps to fit: the step of the first epoch whose evaluated training
  accuracy reached the run's fit threshold (results.json `fit_step`).
* final training loss: the last epoch's evaluated training cross-entropy.
A run that never got there has the measure missing, with the reason.
"""

from __future__ import annotations

import math

LOSS_TARGET = 0.1


def steps_to_loss(rows: list[dict[str, float]],
                  key: str,
                  target: float = LOSS_TARGET) -> tuple[int | None, float]:
  """(first step with rows[key] <= target, or None; the smallest loss seen)."""
  best = math.inf
  for row in rows:
    loss = row[key]  # An empty cell (an epoch not evaluated) is not a float.
    if isinstance(loss, float) and math.isfinite(loss):
      best = min(best, loss)
      if loss <= target:
        return int(row['step']), best
  return None, best


def optimization_measures(metrics: list[dict[str, float]], steps: list[dict[str, float]] | None,
                          results: dict) -> dict[str, float | str]:
  """The three measures; a str value says why one is missing."""
  out: dict[str, float | str] = {}
  if steps:
    step, best = steps_to_loss(steps, 'train_loss')
    source = 'steps.csv'
  else:
    step, best = steps_to_loss(metrics, 'train_eval_loss')
    source = 'metrics.csv (epoch resolution)'
  out['steps_to_loss_0.1'] = (float(step) if step is not None else
                              f'training loss never reached {LOSS_TARGET} in {source} '
                              f'(lowest {best:.4g})')
  fit_step = results.get('fit_step')
  out['steps_to_fit'] = (float(fit_step) if fit_step is not None else
                         f'never fitted (fit_threshold {results.get("fit_threshold")}, final '
                         f'training accuracy {results.get("train_accuracy", float("nan")):.4f})')
  out['final_train_loss'] = (float(metrics[-1]['train_eval_loss'])
                             if metrics else 'metrics.csv has no rows')
  out['_source'] = source
  return out
