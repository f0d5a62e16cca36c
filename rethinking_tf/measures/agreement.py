"""Disagreement of two runs that differ only in seed (Jiang, Nagarajan, Baek,
Kolter, "Assessing generalization of SGD via disagreement", ICLR 2022).

disagreement = (1/n) sum_i 1[h_a(x_i) != h_b(x_i)] over the n test inputs
(no labels needed), h the predicted class; for well-calibrated ensembles
it approximates the test error. A study-level measure: `compute` saves each
run's test predictions (test_predictions.npy), and `study` pairs runs whose
settings differ only in seed.
"""

from __future__ import annotations

import numpy as np


def disagreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
  """Fraction of inputs on which the two prediction vectors differ."""
  pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
  if pred_a.shape != pred_b.shape or pred_a.ndim != 1:
    raise ValueError(f'predictions of shapes {pred_a.shape} and {pred_b.shape}; allowed: two '
                     'vectors of the same length (the same test set)')
  return float(np.mean(pred_a != pred_b))
