"""Which measures track the generalization gap over a set of runs (PAPER.md section 7).

The protocol of Jiang et al., "Fantastic Generalization Measures and Where
to Find Them" (ICLR 2020, section 4), on the runs under a directory, g the
generalization gap (train accuracy - test accuracy, results.json) and mu a
measure (measures.json):

* Kendall's tau over all pairs of runs (tau-a): (concordant - discordant) /
  pairs; a pair tied in mu or g counts as neither.
* Granulated Psi (their eq. 4): for each varied hyperparameter h, psi_h =
  the mean over the groups of runs that agree on every other
  hyperparameter (groups of >= 2 runs) of tau within the group; Psi = the
  mean of psi_h over the h that have a group.
* The conditional-independence score K (their eq. 5 and PGDL's scoring
  program): over ordered pairs of distinct runs, V_mu = 1[mu_a > mu_b],
  V_g = 1[g_a > g_b] (as PGDL: a tie counts as 'not greater' in both
  orders of the pair, so a tied measure carries no information), U_S the pair's
  values of the hyperparameters in S; for every S of at most two varied
  hyperparameters (the empty set included), I(V_mu; V_g | U_S) / H(V_g |
  U_S), both averaged over U_S with its frequency; K is the minimum over S
  (as a fraction; PGDL's scores are 100 K). PGDL's program takes |S| = 2
  only and averages the cells unweighted; we follow the paper.

Hyperparameters (from config.json): label corruption p (labels=random is
p = 1), inputs, weight decay, random crop, model (with depth and width for
the MLPs), seed, and the learning rate, dropout, batch size, training-set
size and data set; those that vary under the directory are used. A
run-level `disagreement` is added here from the runs' test_predictions.npy:
the mean test disagreement with the runs whose settings differ only in
seed. Needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections import Counter
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from rethinking_tf.measures import MEASURES
from rethinking_tf.measures import MEASURES_FILE
from rethinking_tf.measures import PREDICTIONS_FILE
from rethinking_tf.measures import agreement

HPARAMS = ('p', 'inputs', 'weight_decay', 'random_crop', 'model', 'depth', 'width', 'seed',
           'learning_rate', 'dropout', 'batch_size', 'train_size', 'dataset')
# model is determined by (depth, width) and the other way round: never group by both.
_TIED = {'model': ('depth', 'width'), 'depth': ('model',), 'width': ('model',)}
_NOT_SETTINGS = ('seed', 'logdir', 'overwrite', 'verbose', 'image_cache', 'steps_per_execution',
                 'epochs', 'data_dir')
# Settings added to config.json after some runs were recorded, with the value
# those runs trained with (the binary's default then and now).
_LATER_SETTINGS = {'eval_every_epochs': 1}


@dataclasses.dataclass
class StudyRun:
  """One finished run: its hyperparameters, gap, measure values (None: missing)."""
  name: str
  hparams: dict
  gap: float
  values: dict[str, float | None]
  missing: dict[str, str]
  settings: tuple  # every setting but the seed (for the seed pairs)
  predictions: np.ndarray | None
  fitted: bool = True  # reached its fit threshold (results.json fit_epoch)


def hyperparameters(config: dict) -> dict:
  """The study's hyperparameters of a run from its config.json."""
  p = {'true': 0.0, 'random': 1.0}.get(config.get('labels'), config.get('corrupt_prob', 0.0))
  model = config.get('model')
  depth = width = model
  if model and model.startswith('mlp_'):
    depth, width = (int(v) for v in model[4:].split('x'))
  return {
      'p': p,
      'inputs': config.get('inputs'),
      'weight_decay': config.get('weight_decay'),
      'random_crop': config.get('random_crop'),
      'model': model,
      'depth': depth,
      'width': width,
      'seed': config.get('seed'),
      'learning_rate': config.get('learning_rate'),
      'dropout': config.get('dropout'),
      'batch_size': config.get('batch_size'),
      'train_size': config.get('train_size'),
      'dataset': config.get('dataset'),
  }


def _settings(config: dict) -> tuple:
  """Every setting of a run but the seed (and its bookkeeping), comparable across versions."""
  config = {**_LATER_SETTINGS, **config}
  return tuple(sorted((k, json.dumps(v)) for k, v in config.items() if k not in _NOT_SETTINGS))


def read_runs(root: str) -> list[StudyRun]:
  """Every finished run (config.json and results.json) under `root`, sorted by path."""
  runs = []
  for path, dirs, files in os.walk(root):
    dirs.sort()
    if 'results.json' not in files or 'config.json' not in files:
      continue
    with open(os.path.join(path, 'config.json')) as f:
      config = json.load(f)
    with open(os.path.join(path, 'results.json')) as f:
      results = json.load(f)
    measured = {}
    if MEASURES_FILE in files:
      with open(os.path.join(path, MEASURES_FILE)) as f:
        measured = json.load(f)['measures']
    values, missing = {}, {}
    for name in MEASURES:
      entry = measured.get(name, {'missing': f'no {MEASURES_FILE}'})
      values[name] = entry.get('value')
      if 'value' not in entry:
        missing[name] = entry.get('missing', 'missing')
    preds = os.path.join(path, PREDICTIONS_FILE)
    runs.append(
        StudyRun(name=os.path.relpath(path, root),
                 hparams=hyperparameters(config),
                 gap=results['train_accuracy'] - results['test_accuracy'],
                 values=values,
                 missing=missing,
                 settings=_settings(config),
                 predictions=np.load(preds) if os.path.exists(preds) else None,
                 fitted=results.get('fit_epoch') is not None))
  add_disagreement(runs)
  return runs


def add_disagreement(runs: list[StudyRun]) -> None:
  """Each run's mean test disagreement with the runs that differ from it only in seed."""
  for run in runs:
    partners = [
        o for o in runs if o is not run and o.settings == run.settings and
        o.hparams['seed'] != run.hparams['seed'] and o.predictions is not None
    ]
    if run.predictions is None or not partners:
      run.values['disagreement'] = None
      run.missing['disagreement'] = (f'no {PREDICTIONS_FILE}' if run.predictions is None else
                                     'no run that differs only in seed')
      continue
    run.values['disagreement'] = float(
        np.mean([agreement.disagreement(run.predictions, o.predictions) for o in partners]))
    run.missing.pop('disagreement', None)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
  """tau-a: (concordant - discordant) / pairs; None for fewer than 2 points."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = len(x)
  if n < 2:
    return None
  i, j = np.triu_indices(n, 1)
  return float(np.sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])) / len(i))


def varied(runs: Sequence[StudyRun]) -> list[str]:
  """The hyperparameters that take more than one value among `runs`."""
  return [h for h in HPARAMS if len({json.dumps(r.hparams[h]) for r in runs}) > 1]


def _present(runs: Sequence[StudyRun], measure: str) -> list[StudyRun]:
  return [r for r in runs if r.values.get(measure) is not None]


def granulated_psi(runs: Sequence[StudyRun], measure: str,
                   hparams: Sequence[str]) -> tuple[float | None, dict[str, float | None]]:
  """(Psi, {h: psi_h}) of `measure` over `runs` (see the module docstring)."""
  runs = _present(runs, measure)
  per_h: dict[str, float | None] = {}
  for h in hparams:
    others = [o for o in hparams if o != h and o not in _TIED.get(h, ())]
    groups = defaultdict(list)
    for r in runs:
      groups[json.dumps([r.hparams[o] for o in others])].append(r)
    taus = [
        kendall_tau([r.values[measure]
                     for r in g], [r.gap
                                   for r in g])
        for g in groups.values()
        if len(g) >= 2 and len({json.dumps(r.hparams[h]) for r in g}) > 1
    ]
    per_h[h] = float(np.mean(taus)) if taus else None
  found = [v for v in per_h.values() if v is not None]
  return (float(np.mean(found)) if found else None), per_h


def _entropy(counts: np.ndarray) -> float:
  p = counts[counts > 0] / counts.sum()
  return float(-np.sum(p * np.log2(p)))


def _mutual_information(table: np.ndarray) -> float:
  """I(A; B) in bits of a 2x2 contingency table."""
  total = table.sum()
  return _entropy(table.sum(1)) + _entropy(table.sum(0)) - _entropy(table.ravel()) if total else 0.0


def conditional_mi_score(runs: Sequence[StudyRun], measure: str,
                         hparams: Sequence[str]) -> tuple[float | None, tuple[str, ...] | None]:
  """(K, the S attaining it) of `measure` (see the module docstring)."""
  runs = _present(runs, measure)
  pairs = [(a, b, int(a.gap > b.gap), int(a.values[measure] > b.values[measure]))
           for a, b in itertools.permutations(runs, 2)]
  if not pairs:
    return None, None
  best, best_s = None, None
  subsets = [()] + [(h,) for h in hparams] + list(itertools.combinations(hparams, 2))
  for s in subsets:
    cells = defaultdict(lambda: np.zeros((2, 2)))
    for a, b, g, m in pairs:
      cells[json.dumps([[a.hparams[h], b.hparams[h]] for h in s])][g, m] += 1
    n = len(pairs)
    mi = sum(t.sum() / n * _mutual_information(t) for t in cells.values())
    h_g = sum(t.sum() / n * _entropy(t.sum(1)) for t in cells.values())
    if h_g > 1e-12:
      score = mi / h_g
      if best is None or score < best:
        best, best_s = score, s
  return best, best_s


@dataclasses.dataclass
class Row:
  """One measure's scores over the study."""
  measure: str
  family: str
  runs: int  # runs where the measure is present
  tau: float | None
  psi: float | None
  psi_by_h: dict[str, float | None]
  k: float | None
  k_set: tuple[str, ...] | None
  missing: str | None  # why it is missing where it is (the most common reason, else the first)


def study(runs: Sequence[StudyRun]) -> tuple[list[Row], list[str]]:
  """Each measure's tau, Psi, K over `runs`; and the varied hyperparameters."""
  hparams = varied(runs)
  rows = []
  for name, (family, _) in MEASURES.items():
    present = _present(runs, name)
    tau = kendall_tau([r.values[name] for r in present], [r.gap for r in present])
    psi, per_h = granulated_psi(runs, name, hparams)
    k, k_set = conditional_mi_score(runs, name, hparams)
    reasons = [r.missing[name] for r in runs if name in r.missing]
    # the most common reason; among equally common ones, the first run's (runs are sorted)
    missing = Counter(reasons).most_common(1)[0][0] if reasons else None
    rows.append(Row(name, family, len(present), tau, psi, per_h, k, k_set, missing))
  return rows, hparams


def _fmt(v: float | None) -> str:
  return '' if v is None else f'{v:+.3f}'


def to_csv(rows: Sequence[Row], hparams: Sequence[str]) -> str:
  """The scores as CSV (empty cells where a score cannot be computed)."""
  head = ['measure', 'family', 'runs', 'tau', 'psi'] + [f'psi_{h}' for h in hparams
                                                       ] + ['k', 'k_set', 'missing']
  lines = [','.join(head)]
  for r in rows:
    cells = [r.measure, r.family, str(r.runs), _fmt(r.tau), _fmt(r.psi)]
    cells += [_fmt(r.psi_by_h.get(h)) for h in hparams]
    cells += [_fmt(r.k), '+'.join(r.k_set or ()), (r.missing or '').replace(',', ';')]
    lines.append(','.join(cells))
  return '\n'.join(lines) + '\n'


def to_markdown(rows: Sequence[Row],
                hparams: Sequence[str],
                num_runs: int,
                unfitted: Sequence[str] = ()) -> str:
  """The scores as a Markdown table; a measure with no value says why; the
  runs that did not reach their fit threshold are listed."""
  head = ['family', 'measure', 'runs', 'tau', 'Psi'] + [f'psi({h})' for h in hparams] + ['K']
  out = [
      f'{num_runs} runs; varied: {", ".join(hparams) or "nothing"}. tau: Kendall with the gap '
      '(train - test accuracy); Psi: granulated tau; K: conditional-MI score (fraction).', '',
      '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)
  ]
  for r in rows:
    if r.runs == 0:
      cells = [r.family, r.measure, '0', f'missing: {r.missing}'] + [''] * (len(head) - 4)
    else:
      cells = [r.family, r.measure, str(r.runs), _fmt(r.tau), _fmt(r.psi)]
      cells += [_fmt(r.psi_by_h.get(h)) for h in hparams] + [_fmt(r.k)]
    out.append('| ' + ' | '.join(cells) + ' |')
  if unfitted:
    out += [
        '', f'Runs that did not reach their fit threshold ({len(unfitted)}): ' +
        ', '.join(unfitted) + '.'
    ]
  return '\n'.join(out) + '\n'


def figure(runs: Sequence[StudyRun], rows: Sequence[Row], path: str) -> None:
  """Measure against gap, one panel per measure, coloured by p; missing shown as such."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = 6
  lines = math.ceil(len(rows) / cols)
  fig, axes = plt.subplots(lines, cols, figsize=(3 * cols, 2.6 * lines), squeeze=False)
  points = None
  for ax, row in zip(axes.ravel(), rows):
    present = _present(runs, row.measure)
    ax.set_title(row.measure, fontsize=8)
    ax.tick_params(labelsize=6)
    if not present:
      ax.text(0.5,
              0.5,
              f'missing:\n{(row.missing or "")[:60]}',
              ha='center',
              va='center',
              fontsize=6,
              wrap=True,
              transform=ax.transAxes)
      ax.set_xticks([])
      ax.set_yticks([])
      continue
    points = ax.scatter([r.gap for r in present], [r.values[row.measure] for r in present],
                        c=[r.hparams['p'] for r in present],
                        cmap='viridis',
                        vmin=0,
                        vmax=1,
                        s=12)
    note = f'tau {_fmt(row.tau)}'
    if len(present) < len(runs):
      note += f', {len(runs) - len(present)} missing'
    ax.text(0.02, 0.98, note, fontsize=6, va='top', transform=ax.transAxes)
  for ax in axes.ravel()[len(rows):]:
    ax.axis('off')
  fig.supxlabel('generalization gap (train - test accuracy)')
  if points is not None:
    fig.colorbar(points, ax=axes, label='label corruption p', shrink=0.6)
  fig.savefig(path, dpi=90)
  plt.close(fig)
