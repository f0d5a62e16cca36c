"""Runs under a --logdir and the table rows and figure conditions they fill (section 3).

A run is a directory holding config.json (the resolved settings the training
binary writes; results.json once finished), read through `training.rundir`.
Each table row or figure condition is defined by its flagfile under flags/:
a run fills it when its config.json has the flagfile's settings, the
training defaults filling what the flagfile leaves out; scale settings (data
set, subset sizes, epochs, precision, seed, ...) do not decide (see DEFINING,
TUNING and SCALE). Where several runs match one is chosen
(`RunIndex.candidates`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Sequence

from rethinking_tf import arguments
from rethinking_tf.sweep.flagfiles import (DIVERGED, EXTRA_FLAGS, TRAIN_FLAGS, canonical_flags,
                                           read_flagfile)
from rethinking_tf.sweep.lock import lock_held
from rethinking_tf.training import rundir as rundir_lib

STATUSES = ('finished', 'running', 'incomplete', 'diverged', 'failed', 'missing')
CONFIG, RESULTS, METRICS, FAILED = (rundir_lib.CONFIG, rundir_lib.RESULTS, rundir_lib.METRICS,
                                    rundir_lib.FAILED)
REUSED = 'reused_from.txt'  # written by the sweep runner for a copied run
# Window means of the training loss and accuracy every --log_every_steps steps
# (columns step, epoch, train_loss, train_accuracy), when the run logged them.
STEPS = 'steps.csv'
# The flagfiles of the rows and conditions: flags/ of the checkout holding this package.
FLAGS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'flags')

# What decides the row (or figure condition) a run fills: these settings,
# with the training binary's defaults where a flagfile leaves them out, plus
# any other setting the row's flagfile names. The tuning settings decide only
# where the flagfile names them; elsewhere a run with other values still
# fills the row, they are named in its scale column, and a run with the
# flagfile's values is preferred. Scale settings never decide (the scale
# column shows them) and neither does anything not listed here.
DEFINING = ('model', 'labels', 'corrupt_prob', 'inputs', 'random_crop', 'augment', 'batch_norm',
            'weight_decay', 'dropout', 'early_stopping_patience', 'stop_on_fit')
TUNING = ('learning_rate', 'lr_decay', 'momentum', 'batch_size', 'bn_momentum', 'fit_threshold')
SCALE = ('dataset', 'data_dir', 'train_size', 'test_size', 'epochs', 'lr_decay_steps', 'precision',
         'seed', 'steps_per_execution', 'image_cache', 'quiet', 'verbose', 'logdir', 'overwrite',
         'strategy', 'num_cpu_devices', 'log_every_steps', 'eval_every_epochs')


def paper_learning_rate(model: str) -> float:
  """Appendix A: 0.1 for the Inceptions, 0.01 otherwise (the binary's default)."""
  return 0.1 if model in ('inception', 'inception_v3') else 0.01


def _canonical(values: dict) -> dict:
  """Comparable settings (numbers as floats, bools, corrupted p = 0/1 as true/random)."""
  known = {**TRAIN_FLAGS, **EXTRA_FLAGS}
  values = {k: v for k, v in values.items() if k in known and v is not None}
  out = canonical_flags(values)
  if not out.get('learning_rate'):  # 0 = the model's default
    out['learning_rate'] = paper_learning_rate(str(out.get('model')))
  return out


@dataclasses.dataclass(frozen=True)
class Condition:
  """A table row or figure condition: its flagfile's resolved settings."""
  name: str  # flagfile under flags/ without .cfg, e.g. 'table1/mlp_1x512_wd'
  settings: dict  # the deciding settings
  tuning: dict  # the tuning settings the row's flagfile resolves to

  def matches(self, run: Run) -> bool:
    """Whether the run's settings are the condition's deciding ones."""
    if run.config is None:
      return False
    have = _canonical(run.config)
    return all(have.get(k) == v for k, v in self.settings.items())

  def tuning_differences(self, run: Run) -> dict:
    """The run's tuning settings that differ from the flagfile's: {name: value}."""
    have = _canonical(run.config or {})
    return {k: have[k] for k, v in self.tuning.items() if k in have and have[k] != v}


@functools.cache
def condition(name: str) -> Condition:
  """The row or figure condition of flags/<name>.cfg."""
  named = dict(read_flagfile(os.path.join(FLAGS_DIR, name + '.cfg')))
  resolved = _canonical(named)
  keys = (set(DEFINING) | set(named)) - set(SCALE) - set(TUNING)
  keys |= set(named) & set(TUNING)
  return Condition(name, {k: resolved[k] for k in sorted(keys)},
                   {k: resolved[k] for k in TUNING if k not in keys})


@dataclasses.dataclass
class Run:
  """What a run directory (any directory holding config.json) holds.

  status: finished (results.json), diverged (a loss became NaN or infinite:
  failed.txt says `diverged at epoch E, step S`, or metrics.csv has a
  non-finite loss), failed (failed.txt, no results.json), running (a sweep
  holds its lock), incomplete (started, neither finished nor failed nor
  running: run it again to resume), missing (no run matches the row).
  config: config.json, the run's resolved settings.
  """
  name: str  # path under --logdir
  rundir: str
  status: str
  results: dict | None = None
  config: dict | None = None
  metrics: list[dict] = dataclasses.field(default_factory=list)
  failure: str = ''
  copy: bool = False  # outputs copied from an identical run (reused_from.txt)
  steps: list[dict] = dataclasses.field(default_factory=list)  # steps.csv rows, if any

  @property
  def epochs_done(self) -> int:
    """Epochs completed (results.json, else metrics.csv rows)."""
    if self.results and self.results.get('epochs_completed') is not None:
      return int(self.results['epochs_completed'])
    return len(self.metrics)

  def int_setting(self, name: str) -> int | None:
    """An integer setting of the run; None if absent or not an integer."""
    value = (self.config or {}).get(name)
    try:
      return int(value) if value is not None else None
    except (TypeError, ValueError):
      return None

  @property
  def epochs_target(self) -> int | None:
    """The --epochs the run was asked for; None if unknown."""
    return self.int_setting('epochs')

  @property
  def eval_every(self) -> int:
    """The run's --eval_every_epochs (1, the paper's every epoch, when unset)."""
    return self.int_setting('eval_every_epochs') or 1

  @property
  def train_size(self) -> int | None:
    """Training examples asked for; 0 = all, None = unknown."""
    if self.config is None or 'train_size' not in self.config:
      return None
    return self.int_setting('train_size') or 0

  def scale(self, dataset: str | None = None, tuning: dict | None = None) -> str:
    """E.g. '5,000 ex, 37/100 ep' ('all' = the full training set), with
    ', test 1,000' when the run evaluated a test subset (--test_size),
    ', evaluated every 5 ep' when it evaluated every K > 1 epochs
    (--eval_every_epochs: fit_epoch at that resolution), the precision
    policy when it is not float32 (the paper's), then the `tuning` settings
    that differ from the row's flagfile.

    Prefixed by the run's data set when it is not `dataset` (the paper's).
    """
    if self.status == 'missing':
      return ''
    config = self.config or {}
    ran_on = config.get('dataset')
    prefix = f'{ran_on}, ' if dataset and ran_on and ran_on != dataset else ''
    size = self.train_size
    size_text = 'all' if size == 0 else ('?' if size is None else f'{size:,}')
    target = self.epochs_target
    test = self.int_setting('test_size')
    test_text = f', test {test:,}' if test else ''
    every_text = f', evaluated every {self.eval_every} ep' if self.eval_every > 1 else ''
    precision = config.get('precision') or 'float32'
    precision_text = f', {precision}' if precision != 'float32' else ''
    tuning_text = ''.join(
        f', {k} {v:g}' if isinstance(v, float) else f', {k} {v}' for k, v in (tuning or {}).items())
    return (f'{prefix}{size_text} ex{test_text}, '
            f'{self.epochs_done}/{target if target is not None else "?"} ep'
            f'{every_text}{precision_text}{tuning_text}')

  def loss_curve(self) -> tuple[list[tuple[float, float]], str]:
    """Training loss against steps (Figure 1a) and its resolution.

    From steps.csv when the run has it (resolution e.g. '50-step window
    (steps.csv)'), else from metrics.csv ('epoch (metrics.csv)': each epoch's
    running mean).
    """
    for rows, source in ((self.steps, 'steps'), (self.metrics, 'epochs')):
      points = [(r['step'], r['train_loss'])
                for r in rows
                if isinstance(r.get('step'), float) and isinstance(r.get('train_loss'), float)]
      if points and source == 'steps':
        return points, f'{self.log_every_steps(points):,}-step window (steps.csv)'
      if points:
        return points, 'epoch (metrics.csv)'
    return [], 'no data'

  def log_every_steps(self, points: Sequence[tuple[float, float]] = ()) -> int:
    """The steps.csv window: --log_every_steps, else the first row's step."""
    return self.int_setting('log_every_steps') or (int(points[0][0]) if points else 0)

  def steps_to_loss(self, loss: float) -> tuple[int | None, str]:
    """(first step whose training loss is <= `loss`, the resolution it was read at).

    Figure 1a's convergence measure: read from steps.csv when the run has
    it, else from the per-epoch means of metrics.csv; None if never reached.
    """
    points, resolution = self.loss_curve()
    return next((int(s) for s, l in points if l <= loss), None), resolution

  def label(self) -> str:
    """What to print instead of a number when the run is not finished."""
    if self.status in ('running', 'incomplete'):
      return f'{self.status} ({self.epochs_done}/{self.epochs_target or "?"} ep)'
    return self.status

  def value(self, key: str) -> float | None:
    """A finished run's results.json number (fraction), None if absent."""
    if self.status != 'finished' or not self.results:
      return None
    value = self.results.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first_divergence(metrics: list[dict]) -> str | None:
  """'diverged at epoch E, step S' for the first row with a non-finite loss."""
  for row in metrics:
    losses = [row.get(k) for k in ('train_loss', 'train_eval_loss', 'test_loss')]
    if any(isinstance(v, float) and not math.isfinite(v) for v in losses):
      step = row.get('step')
      where = f', step {int(step)}' if isinstance(step, float) and math.isfinite(step) else ''
      return f'{DIVERGED}{int(row.get("epoch") or 0)}{where}'
  return None


def read_run(rundir: str, name: str | None = None) -> Run | None:
  """The run in `rundir` (named `name`, default its path); None if no config.json."""
  if not os.path.isfile(os.path.join(rundir, CONFIG)):
    return None
  run = Run(name or rundir, rundir, 'incomplete')
  try:
    with open(os.path.join(rundir, CONFIG)) as f:
      run.config = json.load(f)
    if not isinstance(run.config, dict):
      raise ValueError('not a JSON object')
  except (OSError, ValueError) as e:
    run.config, run.status, run.failure = None, 'failed', f'config.json unreadable: {e}'
    return run
  run.copy = os.path.exists(os.path.join(rundir, REUSED))
  run.metrics = rundir_lib.read_metrics(os.path.join(rundir, METRICS))
  run.steps = rundir_lib.read_metrics(os.path.join(rundir, STEPS))
  results_path = os.path.join(rundir, RESULTS)
  failed_path = os.path.join(rundir, FAILED)
  if os.path.exists(results_path):
    try:
      with open(results_path) as f:
        run.results = json.load(f)
      run.status = 'finished'
    except (OSError, ValueError) as e:
      run.status, run.failure = 'failed', f'results.json unreadable: {e}'
  elif os.path.exists(failed_path):
    run.status = 'failed'
    with open(failed_path, errors='replace') as f:
      lines = [l.strip() for l in f if l.strip()]
    run.failure = lines[0] if lines else 'failed.txt is empty'
    if run.failure.startswith(DIVERGED):
      run.status = 'diverged'
  elif lock_held(rundir):
    run.status = 'running'
  diverged = _first_divergence(run.metrics)
  if diverged and run.status != 'diverged':  # e.g. a run that finished with NaN
    run.status, run.failure = 'diverged', diverged
  return run


def find_runs(logdir: str) -> list[Run]:
  """Every run under `logdir` (itself included), named by its path under it.

  A run is a directory holding config.json; its own subdirectories
  (checkpoints/, workers/) are not searched.
  """
  runs = []
  for root, dirs, _ in os.walk(logdir):
    run = read_run(root, os.path.relpath(root, logdir))
    if run is not None:
      if run.name == '.':
        run.name = os.path.basename(os.path.abspath(root))
      runs.append(run)
      dirs[:] = []
    else:
      dirs[:] = sorted(d for d in dirs if d != 'checkpoints')
  return runs


class RunIndex:
  """The runs under one --logdir, matched to rows and figure conditions."""

  def __init__(self, logdir: str):
    self.logdir = logdir
    self.runs = find_runs(logdir)
    self.matched: set[str] = set()  # names of runs that match some condition asked for
    self.several: set[str] = set()  # conditions that more than one run matches

  def candidates(self, name: str) -> list[Run]:
    """The runs that match condition `name`, the one to show first."""
    cond = condition(name)
    found = [r for r in self.runs if cond.matches(r)]
    # The sweep's layout: tools/run_sweep.py runs flags/<name>.cfg into <logdir>/<name>.
    laid_out = lambda r: ('/' + r.name.replace(os.sep, '/')).endswith('/' + name)
    return sorted(found,
                  key=lambda r: (r.status != 'finished', not laid_out(r),
                                 len(cond.tuning_differences(r)), -r.epochs_done, r.copy, r.name))

  def get(self, name: str) -> Run:
    """The run shown for condition `name` (status missing if none matches)."""
    found = self.candidates(name)
    self.matched.update(r.name for r in found)
    if len(found) > 1:
      self.several.add(name)
    return found[0] if found else Run('', '', 'missing')

  def unmatched(self) -> list[Run]:
    """The runs that match no condition asked for so far."""
    return [r for r in self.runs if r.name not in self.matched]


def as_index(logdir: RunIndex | str) -> RunIndex:
  """`logdir`'s runs (an index is passed through)."""
  return logdir if isinstance(logdir, RunIndex) else RunIndex(logdir)


def names_line(runs: Sequence[Run], limit: int = 8) -> str:
  """'a, b, c (and 4 more)'."""
  names = [r.name for r in runs]
  more = f' (and {len(names) - limit} more)' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def report_matches(index: RunIndex, logdir: str, what: str) -> None:
  """Exits 1 when no run under `logdir` matched any `what` (e.g. 'row of Table 1');
  otherwise notes on stderr the runs that matched none."""
  if not index.matched:
    arguments.fail(
        f'no run under --logdir={logdir} matches a {what} '
        f'({len(index.runs)} run directories found; a run is a directory '
        'holding config.json)',
        code=1)
  unmatched = index.unmatched()
  if unmatched:
    print(
        f'note: {len(unmatched)} of {len(index.runs)} runs under {logdir} match no '
        f'{what}: {names_line(unmatched)}',
        file=sys.stderr)
