"""All the measures of one finished run, into `<run>/measures.json`.

measures.json: {"run", "initial_weights" (the file, "rebuilt from seed", or
why missing), "train_accuracy" / "test_accuracy" (results.json) and
"train_accuracy_recomputed" (the loaded model on the loaded training set:
a check that the run was reloaded faithfully), "budget" (of the sharpness
searches), "measures": {name: {"value", "seconds"} or {"missing": reason,
"seconds"}}}. Every measure of `rethinking_tf.measures.MEASURES` appears,
computed or missing. Cached: a measure already in the file is kept, and one not in it is
computed if its family is asked for; `recompute` computes the asked-for
families again (the others are kept). The
test-set predictions go to test_predictions.npy (uint16 class indices) for
the seed-disagreement measure, which the study computes (it needs two runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rethinking_tf.measures import MEASURES
from rethinking_tf.measures import MEASURES_FILE
from rethinking_tf.measures import PREDICTIONS_FILE
from rethinking_tf.measures import layers as layers_lib
from rethinking_tf.measures import margins
from rethinking_tf.measures import norms
from rethinking_tf.measures import optimization
from rethinking_tf.measures import rademacher
from rethinking_tf.measures import run as run_lib
from rethinking_tf.measures import sharpness

_NOT_ASKED = ('not computed: family {family} not asked for '
              '(python -m rethinking_tf.measure --families)')


def read_cached(logdir: str) -> dict[str, Any] | None:
  """The run's measures.json, or None."""
  path = os.path.join(logdir, MEASURES_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _entry(value: Any, seconds: float) -> dict[str, Any]:
  if isinstance(value, str):
    return {'missing': value, 'seconds': round(seconds, 4)}
  return {'value': float(value), 'seconds': round(seconds, 4)}


def _kernel_vector(model) -> np.ndarray:
  return np.concatenate([l.kernel.ravel() for l in layers_lib.linear_layers(model)])


def compute(run: run_lib.LoadedRun,
            families: Sequence[str],
            budget: sharpness.Budget,
            rademacher_epochs: int = 20,
            rademacher_examples: int = 5000,
            recompute: bool = False) -> dict[str, Any]:
  """Computes the asked-for families' measures of `run` and writes measures.json."""
  cached = read_cached(run.logdir)
  old = dict(cached['measures']) if cached else {}

  def todo(*names: str) -> bool:
    return recompute or any(
        n not in old or 'value' not in old[n] and old[n]['missing'].startswith('not computed')
        for n in names)

  new: dict[str, dict[str, Any]] = {}
  put = lambda name, value, seconds: new.__setitem__(name, _entry(value, seconds))

  start = time.perf_counter()
  train_logits = margins.logits(run.model, run.x_train)
  logit_seconds = time.perf_counter() - start
  train_acc = float(np.mean(np.argmax(train_logits, 1) == run.y_train))
  gamma = margins.margin(train_logits, run.y_train)
  test_pred = np.argmax(margins.logits(run.model, run.x_test), 1).astype(np.uint16)
  np.save(os.path.join(run.logdir, PREDICTIONS_FILE), test_pred)

  if 'margin' in families and todo('margin', 'inverse_margin'):
    for k, v in margins.margin_measures(train_logits, run.y_train).items():
      put(k, v, logit_seconds)
  norm_names = [n for n, (f, _) in MEASURES.items() if f == 'norm']
  if 'norm' in families and todo(*norm_names):
    seconds: dict[str, float] = {}
    for k, v in norms.norm_measures(run.model, run.initial, gamma, seconds).items():
      put(k, v, seconds[k] + (logit_seconds if 'margin' in k else 0.0))
  if 'sharpness' in families and todo('pacbayes_sigma', 'pacbayes_mag_sigma', 'worst_case_alpha'):
    _sharpness(run, budget, put)
  if 'optimization' in families and todo('steps_to_loss_0.1', 'steps_to_fit', 'final_train_loss'):
    start = time.perf_counter()
    values = optimization.optimization_measures(run.metrics, run.steps, run.results)
    values.pop('_source')
    for k, v in values.items():
      put(k, v, time.perf_counter() - start)
  if 'rademacher' in families and todo('rademacher', 'rademacher_sign'):
    start = time.perf_counter()
    n = min(rademacher_examples, len(run.y_train))
    x = run.x_train[:n]  # the data set's order: a fixed sample z_1..z_n
    values = rademacher.estimate(lambda k: run.build(k),
                                 x,
                                 epochs=rademacher_epochs,
                                 seed=run.config['seed'],
                                 **run_lib.training_hyperparameters(run.config))
    seconds = time.perf_counter() - start
    put('rademacher', values['rademacher'], seconds)
    put('rademacher_sign', values['rademacher_sign'], seconds)
    note = (f'{n} training inputs, {rademacher_epochs} epochs; accuracy on the +-1 labels '
            f'{values["sigma_train_accuracy"]:.4f}')
    new['rademacher']['note'] = new['rademacher_sign']['note'] = note

  measures = {}
  for name, (family, _) in MEASURES.items():
    if name in new:
      measures[name] = new[name]
    elif name in old:
      measures[name] = old[name]
    elif family == 'agreement':
      measures[name] = {
          'missing': 'a study-level measure: the study computes it from '
                     f'{PREDICTIONS_FILE} of runs that differ only in seed'
      }
    else:
      measures[name] = {'missing': _NOT_ASKED.format(family=family)}
  sharp_budget = (dataclasses.asdict(budget) if any(
      k in new for k in ('pacbayes_sigma', 'worst_case_alpha')) else (cached or {}).get('budget'))
  out = {
      'run': os.path.basename(os.path.normpath(run.logdir)),
      'initial_weights': run.initial_source,
      'train_accuracy': run.results.get('train_accuracy'),
      'test_accuracy': run.results.get('test_accuracy'),
      'train_accuracy_recomputed': train_acc,
      'num_train': int(len(run.y_train)),
      'budget': sharp_budget,
      'measures': measures,
  }
  tmp = os.path.join(run.logdir, MEASURES_FILE + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(out, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(run.logdir, MEASURES_FILE))
  return out


def _sharpness(run: run_lib.LoadedRun, budget: sharpness.Budget, put) -> None:
  """The three searches and the PAC-Bayes terms built from them."""
  m = len(run.y_train)
  w = _kernel_vector(run.model)
  w0 = _kernel_vector(run.initial) if run.initial is not None else None
  no_init = 'no initial weights'
  for magnitude, terms_of, prefix in ((False, sharpness.pacbayes_terms, 'pacbayes_'),
                                      (True, sharpness.magnitude_terms, 'pacbayes_mag_')):
    start = time.perf_counter()
    sigma = sharpness.noise_sigma(run.model, run.x_train, run.y_train, budget, magnitude=magnitude)
    seconds = time.perf_counter() - start
    terms = terms_of(sigma, w, w0, m)
    put(prefix + 'sigma', sigma, seconds)
    for k in ('flatness', 'init', 'orig'):
      put(prefix + k, terms.get(prefix + k, no_init), seconds)
  start = time.perf_counter()
  alpha = sharpness.worst_case_alpha(run.model, run.x_train, run.y_train, budget)
  seconds = time.perf_counter() - start
  put('worst_case_alpha', alpha, seconds)
  put('worst_case_flatness', 1.0 / alpha**2, seconds)
