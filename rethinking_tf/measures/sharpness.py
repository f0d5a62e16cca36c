"""Sharpness- and PAC-Bayes-based measures (Jiang et al. 2020 appendix C.3-C.5).

On a subset of the training set (`Budget.examples`), acc(w) the training
accuracy with weights w, w every trainable variable of the model:

* `sigma`: the largest sigma with acc(w) - E_u acc(w + u) <= 0.1,
  u ~ N(0, sigma^2 I) (isotropic); E_u by `Budget.mc_samples` Monte-Carlo
  draws. Found by bisection as in Jiang et al., but on log(sigma) over
  [1e-5, 2] (weights are ~1e-2, so a linear bisection over [0, 2] resolves
  sigma poorly in few steps), `Budget.search_depth` steps; the result is
  the largest sigma tried whose drop was <= 0.1. Unlike Jiang et al. the
  search does not stop early once a drop is within 0.01 of 0.1: an early
  stop at step k leaves one of 2^k values, and runs then tie on sigma;
  at the default depth 10 every result has the resolution 2^-10 of the
  log range (1.2% in sigma).
* `magnitude_sigma`: the same with u_i ~ N(0, sigma'^2 w_i^2 + eps^2),
  eps = 1e-3 (magnitude-aware).
* `worst_case_alpha`: the largest alpha such that `Budget.ascent_steps`
  steps of projected sign-gradient ASCENT on the training cross-entropy,
  from w inside the box |dw| <= alpha |w| (step 2 alpha |w| / steps), keep
  the accuracy drop <= 0.1; the same bisection over alpha. The flatness
  measure is 1 / alpha^2.

PAC-Bayes terms (eqs. 48, 49, 53, 56, 57, 61), m the training-set size, w
and w0 the final and initial folded kernels as one vector of omega entries
(as for the norms; biases left out), sigma from the search:
  init  = ||w - w0||^2 / (4 sigma^2) + log(m / sigma) + 10,
  orig  = ||w||^2 / (4 sigma^2) + log(m / sigma) + 10,
  flatness = 1 / sigma^2;
  mag_init = 1/4 sum_i log((eps^2 + (sigma'^2 + 1) ||w - w0||^2 / omega) /
             (eps^2 + sigma'^2 (w_i - w0_i)^2)) + log(m / sigma') + 10,
  mag_orig = the same with w for w - w0, mag_flatness = 1 / sigma'^2.
The search perturbs the model as trained (BatchNorm not folded).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from rethinking_tf.measures import layers as layers_lib
from rethinking_tf.measures import margins

MAGNITUDE_EPS = 1e-3
TARGET_DROP = 0.1
SEARCH_RANGE = (1e-5, 2.0)


@dataclasses.dataclass(frozen=True)
class Budget:
  """What bounds the searches: examples per accuracy estimate, Monte-Carlo
  draws per sigma, bisection steps, ascent steps per alpha, and the seed."""
  examples: int = 5000
  mc_samples: int = 5
  search_depth: int = 10
  ascent_steps: int = 5
  seed: int = 0


def bisect(drop_at: Callable[[float], float], depth: int) -> float:
  """The largest s in SEARCH_RANGE with drop_at(s) <= TARGET_DROP, by bisection
  on log s (see the module docstring)."""
  lo, hi = (math.log(v) for v in SEARCH_RANGE)
  best = SEARCH_RANGE[0]
  for _ in range(depth):
    mid = (lo + hi) / 2
    if drop_at(math.exp(mid)) > TARGET_DROP:
      hi = mid
    else:
      lo, best = mid, math.exp(mid)
  return best


def _subset(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  if n >= len(y):
    return x, y
  keep = np.sort(np.random.default_rng(seed).choice(len(y), n, replace=False))
  return x[keep], y[keep]


def noise_sigma(model: keras.Model, x: np.ndarray, y: np.ndarray, budget: Budget,
                magnitude: bool) -> float:
  """sigma (isotropic) or sigma' (`magnitude`-aware): see the module docstring."""
  x, y = _subset(x, y, budget.examples, budget.seed)
  variables = model.trainable_variables
  weights = [layers_lib.value(v) for v in variables]
  base = margins.accuracy(model, x, y)
  rng = np.random.default_rng(budget.seed + (1 if magnitude else 0))

  def drop_at(s: float) -> float:
    accs = []
    for _ in range(budget.mc_samples):
      if magnitude:
        noisy = [
            w + rng.standard_normal(w.shape) * np.sqrt(s**2 * w**2 + MAGNITUDE_EPS**2)
            for w in weights
        ]
      else:
        noisy = [w + s * rng.standard_normal(w.shape) for w in weights]
      with layers_lib.assigned(variables, noisy):
        accs.append(margins.accuracy(model, x, y))
    return base - float(np.mean(accs))

  return bisect(drop_at, budget.search_depth)


def _gradient_fn(model: keras.Model):
  variables = model.trainable_variables

  @tf.function(reduce_retracing=True)
  def grads(x, y):
    with tf.GradientTape() as tape:
      out = tf.cast(model(x, training=False), tf.float32)
      loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True))
    return tape.gradient(loss, variables)

  return grads


def worst_case_alpha(model: keras.Model,
                     x: np.ndarray,
                     y: np.ndarray,
                     budget: Budget,
                     batch_size: int = 1000) -> float:
  """alpha of the worst-case box sharpness: see the module docstring."""
  x, y = _subset(x, y, budget.examples, budget.seed)
  variables = model.trainable_variables
  weights = [layers_lib.value(v) for v in variables]
  base = margins.accuracy(model, x, y)
  grads = _gradient_fn(model)
  steps = max(budget.ascent_steps, 1)

  def gradient() -> list[np.ndarray]:
    total = [np.zeros_like(w) for w in weights]
    for i in range(0, len(y), batch_size):
      g = grads(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]))
      total = [t + (np.asarray(gi) if gi is not None else 0.0) for t, gi in zip(total, g)]
    return total

  def drop_at(alpha: float) -> float:
    bound = [alpha * np.abs(w) for w in weights]
    delta = [np.zeros_like(w) for w in weights]
    for _ in range(steps):
      with layers_lib.assigned(variables, [w + d for w, d in zip(weights, delta)]):
        g = gradient()
      delta = [np.clip(d + 2 * b / steps * np.sign(gi), -b, b) for d, b, gi in zip(delta, bound, g)]
    with layers_lib.assigned(variables, [w + d for w, d in zip(weights, delta)]):
      return base - margins.accuracy(model, x, y)

  return bisect(drop_at, budget.search_depth)


def pacbayes_terms(sigma: float, w: np.ndarray, w0: np.ndarray | None, m: int) -> dict[str, float]:
  """The isotropic PAC-Bayes terms (eqs. 48, 49, 53) for kernel vectors w, w0."""
  out = {
      'pacbayes_flatness': 1.0 / sigma**2,
      'pacbayes_orig': float(np.sum(w**2)) / (4 * sigma**2) + math.log(m / sigma) + 10
  }
  if w0 is not None:
    out['pacbayes_init'] = float(np.sum((w - w0)**2)) / (4 * sigma**2) + math.log(m / sigma) + 10
  return out


def magnitude_terms(sigma: float, w: np.ndarray, w0: np.ndarray | None, m: int) -> dict[str, float]:
  """The magnitude-aware PAC-Bayes terms (eqs. 56, 57, 61)."""
  eps2, s2, omega = MAGNITUDE_EPS**2, sigma**2, w.size

  def term(ref: np.ndarray) -> float:
    num = eps2 + (s2 + 1) * float(np.sum(ref**2)) / omega
    return 0.25 * float(np.sum(np.log(num / (eps2 + s2 * ref**2)))) + math.log(m / sigma) + 10

  out = {'pacbayes_mag_flatness': 1.0 / s2, 'pacbayes_mag_orig': term(w)}
  if w0 is not None:
    out['pacbayes_mag_init'] = term(w - w0)
  return out
