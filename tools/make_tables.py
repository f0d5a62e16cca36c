#!/usr/bin/env python
"""Tables 1 and 2 of the paper (section 3), our numbers beside the paper's.

    python tools/make_tables.py --logdir=DIR [--format=markdown|latex|csv]
        [--table=1|2|all] [--out=FILE]

Reads every run under DIR, in any layout: a run is a directory holding
config.json (the resolved settings the training binary writes; results.json
once finished). Each table row is defined by its flagfile under flags/
(flags/table1/<row>.cfg): a run fills the row when its config.json has the
flagfile's settings, the training defaults filling what the flagfile leaves
out; scale settings (data set, subset sizes, epochs, precision, seed, ...)
do not decide the row, they are shown in its scale column (see DEFINING,
TUNING and SCALE). Where several runs match a row one is chosen
(`RunIndex.candidates`) and a table note says so. Each row gives the
paper's accuracy, ours and the difference (ours minus paper, in percentage
points). A run that is missing, still running, interrupted, failed or
diverged (a loss became NaN) shows as such, never as a number. Runs that
fill no row are counted on stderr; when none fills any, the tool says so on
stderr and exits 1.

The paper's numbers live here, in PAPER_TABLE1 and PAPER_TABLE2 (copied from
docs PAPER.md section 3). This module also holds the run reader and
matcher that tools/make_figures.py uses. Needs no TensorFlow.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable-next=wrong-import-position
from run_sweep import (DIVERGED, EXTRA_FLAGS, TRAIN_FLAGS, canonical_flags, lock_held,
                       read_flagfile)
from rethinking_tf import arguments  # pylint: disable=wrong-import-position

# --- The paper's numbers (accuracy %), PAPER.md section 3 -------------------


@dataclasses.dataclass(frozen=True)
class Table1Row:
  """One row of Table 1 (CIFAR-10) and the run that replicates it."""
  run: str  # the row's flagfile under flags/ without .cfg
  model: str
  crop: bool
  weight_decay: bool
  train: float
  test: float


@dataclasses.dataclass(frozen=True)
class Table2Row:
  """One row of Table 2 (ImageNet, Inception V3); *_best: early stopping."""
  run: str
  labels: str
  augment: bool
  dropout: bool
  weight_decay: bool
  train_top1: float
  train_top5: float
  test_top1: float
  test_top5: float
  best_top1: float | None = None
  best_top5: float | None = None


PAPER_TABLE1: tuple[Table1Row, ...] = (
    Table1Row('table1/inception_crop_wd', 'Inception', True, True, 100.0, 89.05),
    Table1Row('table1/inception_crop', 'Inception', True, False, 100.0, 89.31),
    Table1Row('table1/inception_wd', 'Inception', False, True, 100.0, 86.03),
    Table1Row('table1/inception', 'Inception', False, False, 100.0, 85.75),
    Table1Row('table1/inception_random_labels', 'Inception, random labels', False, False, 100.0,
              9.78),
    Table1Row('table1/inception_nobn_wd', 'Inception w/o BN', False, True, 100.0, 83.00),
    Table1Row('table1/inception_nobn', 'Inception w/o BN', False, False, 100.0, 82.00),
    Table1Row('table1/inception_nobn_random_labels', 'Inception w/o BN, random labels', False,
              False, 100.0, 10.12),
    Table1Row('table1/alexnet_crop_wd', 'Alexnet', True, True, 99.90, 81.22),
    Table1Row('table1/alexnet_crop', 'Alexnet', True, False, 99.82, 79.66),
    Table1Row('table1/alexnet_wd', 'Alexnet', False, True, 100.0, 77.36),
    Table1Row('table1/alexnet', 'Alexnet', False, False, 100.0, 76.07),
    Table1Row('table1/alexnet_random_labels', 'Alexnet, random labels', False, False, 99.82, 9.86),
    Table1Row('table1/mlp_3x512_wd', 'MLP 3x512', False, True, 100.0, 53.35),
    Table1Row('table1/mlp_3x512', 'MLP 3x512', False, False, 100.0, 52.39),
    Table1Row('table1/mlp_3x512_random_labels', 'MLP 3x512, random labels', False, False, 100.0,
              10.48),
    Table1Row('table1/mlp_1x512_wd', 'MLP 1x512', False, True, 99.80, 50.39),
    Table1Row('table1/mlp_1x512', 'MLP 1x512', False, False, 100.0, 50.51),
    Table1Row('table1/mlp_1x512_random_labels', 'MLP 1x512, random labels', False, False, 99.34,
              10.61),
)

PAPER_TABLE2: tuple[Table2Row, ...] = (
    Table2Row('table2/inception_v3_aug_dropout_wd', 'true', True, True, True, 92.18, 99.21, 77.84,
              93.92),
    Table2Row('table2/inception_v3_aug', 'true', True, False, False, 92.33, 99.17, 72.95, 90.43),
    Table2Row('table2/inception_v3_wd', 'true', False, False, True, 90.60, 100.0, 67.18, 86.44,
              72.57, 91.31),
    Table2Row('table2/inception_v3', 'true', False, False, False, 99.53, 100.0, 59.80, 80.38, 63.16,
              84.49),
    Table2Row('table2/inception_v3_random_labels_dropout_wd', 'random', False, True, True, 91.18,
              97.95, 0.09, 0.49),
    Table2Row('table2/inception_v3_random_labels_wd', 'random', False, False, True, 87.81, 96.15,
              0.12, 0.50),
    Table2Row('table2/inception_v3_random_labels', 'random', False, False, False, 95.20, 99.14,
              0.11, 0.56),
)

# --- Runs and the rows they fill --------------------------------------------

STATUSES = ('finished', 'running', 'incomplete', 'diverged', 'failed', 'missing')
CONFIG, RESULTS, METRICS, FAILED, REUSED = ('config.json', 'results.json', 'metrics.csv',
                                            'failed.txt', 'reused_from.txt')
FLAGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'flags')

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
         'strategy', 'num_cpu_devices')


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

  @property
  def epochs_done(self) -> int:
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
    return self.int_setting('epochs')

  @property
  def train_size(self) -> int | None:
    """Training examples asked for; 0 = all, None = unknown."""
    if self.config is None or 'train_size' not in self.config:
      return None
    return self.int_setting('train_size') or 0

  def scale(self, dataset: str | None = None, tuning: dict | None = None) -> str:
    """E.g. '5,000 ex, 37/100 ep' ('all' = the full training set), with
    ', test 1,000' when the run evaluated a test subset (--test_size), and
    the precision policy when it is not float32 (the paper's), then the
    `tuning` settings that differ from the row's flagfile.

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
    precision = config.get('precision') or 'float32'
    precision_text = f', {precision}' if precision != 'float32' else ''
    tuning_text = ''.join(
        f', {k} {v:g}' if isinstance(v, float) else f', {k} {v}' for k, v in (tuning or {}).items())
    return (f'{prefix}{size_text} ex{test_text}, '
            f'{self.epochs_done}/{target if target is not None else "?"} ep'
            f'{precision_text}{tuning_text}')

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


def read_metrics(path: str) -> list[dict]:
  """metrics.csv rows with numeric values as floats (non-numbers kept as text)."""
  rows = []
  try:
    with open(path, newline='') as f:
      for row in csv.DictReader(f):
        parsed = {}
        for key, value in row.items():
          try:
            parsed[key] = float(value)
          except (TypeError, ValueError):
            parsed[key] = value
        rows.append(parsed)
  except OSError:
    pass
  return rows


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
  run.metrics = read_metrics(os.path.join(rundir, METRICS))
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
    return [r for r in self.runs if r.name not in self.matched]


def as_index(logdir: RunIndex | str) -> RunIndex:
  """`logdir`'s runs (an index is passed through)."""
  return logdir if isinstance(logdir, RunIndex) else RunIndex(logdir)


CHOICE_NOTE = ('A row is filled by a run under --logdir whose '
               'config.json has the settings of the row\'s flagfile under flags/ (scale '
               'settings aside); where several runs match, the one shown is finished, '
               'then laid out as the sweep runner does (its path ends with the flagfile\'s '
               'name), then has the fewest other tuning settings, then the most epochs, '
               'then is not a copy (reused_from.txt), then comes first by path.')

# --- Cells -------------------------------------------------------------------


def pct(fraction: float | None) -> str:
  """A fraction as a percentage with two decimals; empty for none."""
  return '' if fraction is None or math.isnan(fraction) else f'{100 * fraction:.2f}'


def diff(fraction: float | None, paper: float | None) -> str:
  """Ours minus the paper, in signed percentage points; empty if either is missing."""
  if fraction is None or paper is None or math.isnan(fraction):
    return ''
  return f'{100 * fraction - paper:+.2f}'


def paper_text(value: float | None, best: float | None = None) -> str:
  """The paper's number, with its best-epoch number in parentheses when given."""
  if value is None:
    return ''
  text = f'{value:.2f}' if value != 100.0 else '100.0'
  return text + (f' ({best:.2f})' if best is not None else '')


def yes(flag: bool) -> str:
  """'yes' or 'no'."""
  return 'yes' if flag else 'no'


@dataclasses.dataclass
class Table:
  """A rendered-agnostic table: header, rows of cells, footnotes, long CSV records."""
  title: str
  header: list[str]
  rows: list[list[str]]
  notes: list[str]
  records: list[dict]
  key_columns: int  # leading text columns that describe the row


def _metric_cells(run: Run,
                  key: str,
                  paper: float,
                  best_key: str | None = None,
                  paper_best: float | None = None) -> tuple[str, str, str]:
  """(paper, ours, difference) cells; ours is the status unless finished."""
  if run.status != 'finished':
    return paper_text(paper, paper_best), run.label(), ''
  value = run.value(key)
  if value is None:
    return paper_text(paper, paper_best), 'n/r', ''
  ours = pct(value)
  if paper_best is not None and best_key and run.value(best_key) is not None:
    ours += f' ({pct(run.value(best_key))})'
  return paper_text(paper, paper_best), ours, diff(value, paper)


def _record(table: str, row: str, run: Run, metric: str, paper: float | None, key: str,
            flagfile: str) -> dict:
  value = run.value(key)
  return dict(table=table,
              row=row,
              flagfile=flagfile,
              run=run.name,
              status=run.status,
              metric=metric,
              paper=paper,
              ours=None if value is None else round(100 * value, 4),
              difference=None if value is None or paper is None else round(100 * value - paper, 4),
              dataset=(run.config or {}).get('dataset'),
              train_size=run.train_size,
              epochs_completed=run.epochs_done if run.status != 'missing' else None,
              epochs_target=run.epochs_target)


def _status_notes(runs: list[Run]) -> list[str]:
  notes = []
  for run in runs:
    if run.status == 'failed':
      log = os.path.join(run.rundir, 'train.log')
      see = log if os.path.exists(log) else os.path.join(run.rundir, FAILED)
      notes.append(f'`{run.name}` failed: {run.failure} (see {see}).')
    elif run.status == 'diverged':
      notes.append(f'`{run.name}` {run.failure}: a loss became NaN or infinite (metrics '
                   f'up to it in {os.path.join(run.rundir, METRICS)}).')
  missing = sum(r.status == 'missing' for r in runs)
  if missing:
    notes.append(f'missing = no run under --logdir has the row\'s settings ({missing} of '
                 f'{len(runs)} rows).')
  if any(r.status == 'incomplete' for r in runs):
    notes.append('incomplete = started but neither finished nor running: run it again '
                 'to resume it.')
  return notes


def _choice_note(names: Sequence[str], index: RunIndex) -> list[str]:
  several = sum(n in index.several for n in names)
  return [f'{CHOICE_NOTE} {several} of {len(names)} rows had several.'] if several else []


SCALE_NOTE = ('Scale = the data set if not the paper\'s, training examples used ("all" = '
              'the full set; the paper always uses all), test examples when not all 10,000 '
              '(a subset of 1,000 gives a standard error of about 1.6 points) '
              'and epochs completed / epochs asked, then the precision if not float32. '
              'Numbers from smaller runs are not comparable to the paper\'s.')


def table1(logdir: RunIndex | str) -> Table:
  """Table 1 (CIFAR-10): train and test accuracy, paper vs ours."""
  index = as_index(logdir)
  header = [
      'model', 'random crop', 'weight decay', 'train (paper)', 'train (ours)', 'Δ', 'test (paper)',
      'test (ours)', 'Δ', 'scale'
  ]
  rows, records, runs = [], [], []
  for row in PAPER_TABLE1:
    run = index.get(row.run)
    runs.append(run)
    cells = [row.model, yes(row.crop), yes(row.weight_decay)]
    cells += _metric_cells(run, 'train_accuracy', row.train)
    cells += _metric_cells(run, 'test_accuracy', row.test)
    cells.append(run.scale('cifar10', condition(row.run).tuning_differences(run)))
    rows.append(cells)
    label = f'{row.model}, crop {yes(row.crop)}, wd {yes(row.weight_decay)}'
    records.append(_record('1', label, run, 'train', row.train, 'train_accuracy', row.run))
    records.append(_record('1', label, run, 'test', row.test, 'test_accuracy', row.run))
  notes = [
      'Accuracy in %; Δ = ours − paper in percentage points. Train accuracy is an '
      'inference-mode pass over the (randomized) training set.', SCALE_NOTE
  ]
  notes += _choice_note([r.run for r in PAPER_TABLE1], index)
  return Table('Table 1: CIFAR-10, train / test accuracy (%)', header, rows,
               notes + _status_notes(runs), records, 3)


def table2(logdir: RunIndex | str) -> Table:
  """Table 2 (ImageNet, Inception V3): top-1/top-5 train and test, paper vs ours."""
  index = as_index(logdir)
  header = ['labels', 'aug', 'dropout', 'wd']
  for what in ('top-1 train', 'top-5 train', 'top-1 test', 'top-5 test'):
    header += [f'{what} (paper)', f'{what} (ours)', 'Δ']
  header.append('scale')
  rows, records, runs = [], [], []
  metrics = (('top-1 train', 'train_accuracy', 'train_top1', None,
              None), ('top-5 train', 'train_top5_accuracy', 'train_top5', None, None),
             ('top-1 test', 'test_accuracy', 'test_top1', 'best_test_accuracy',
              'best_top1'), ('top-5 test', 'test_top5_accuracy', 'test_top5',
                             'best_test_top5_accuracy', 'best_top5'))
  for row in PAPER_TABLE2:
    run = index.get(row.run)
    runs.append(run)
    cells = [row.labels, yes(row.augment), yes(row.dropout), yes(row.weight_decay)]
    label = (f'{row.labels} labels, aug {yes(row.augment)}, dropout {yes(row.dropout)}, '
             f'wd {yes(row.weight_decay)}')
    for metric, key, attr, best_key, best_attr in metrics:
      paper_best = getattr(row, best_attr) if best_attr else None
      cells += _metric_cells(run, key, getattr(row, attr), best_key, paper_best)
      records.append(_record('2', label, run, metric, getattr(row, attr), key, row.run))
      if paper_best is not None:
        records.append(_record('2', label, run, metric + ' best', paper_best, best_key, row.run))
    cells.append(run.scale('imagenet2012', condition(row.run).tuning_differences(run)))
    rows.append(cells)
  notes = [
      'Accuracy in %; Δ = ours − paper (final accuracy) in percentage points. '
      'Parenthesised: best test accuracy during training (early stopping).',
      'n/r = not recorded in results.json (top-5 needs train_top5_accuracy / '
      'test_top5_accuracy / best_test_top5_accuracy).', SCALE_NOTE
  ]
  notes += _choice_note([r.run for r in PAPER_TABLE2], index)
  return Table('Table 2: ImageNet, Inception V3, top-1 / top-5 accuracy (%)', header, rows,
               notes + _status_notes(runs), records, 4)


# --- Renderers ---------------------------------------------------------------


def to_markdown(table: Table) -> str:
  """A table, its notes below it, as Markdown."""
  lines = [
      f'### {table.title}', '', '| ' + ' | '.join(table.header) + ' |',
      '|' + '|'.join('---' for _ in table.header) + '|'
  ]
  lines += ['| ' + ' | '.join(c.replace('|', '\\|') for c in row) + ' |' for row in table.rows]
  lines.append('')
  lines += [f'- {note}' for note in table.notes]
  return '\n'.join(lines) + '\n'


def _latex_escape(text: str) -> str:
  for a, b in (('\\', r'\textbackslash{}'), ('_', r'\_'), ('%', r'\%'), ('&', r'\&'), ('#', r'\#'),
               ('$', r'\$'), ('Δ', r'$\Delta$'), ('−', '$-$'), ('`', '')):
    text = text.replace(a, b)
  return text


def to_latex(table: Table) -> str:
  """A table as a LaTeX table environment."""
  lines = [
      r'\begin{table}[ht]', r'\centering', r'\scriptsize',
      r'\caption{' + _latex_escape(table.title) + '}', r'\begin{tabular}{' +
      'l' * table.key_columns + 'r' * (len(table.header) - table.key_columns - 1) + 'l}', r'\hline',
      ' & '.join(_latex_escape(h) for h in table.header) + r' \\', r'\hline'
  ]
  lines += [' & '.join(_latex_escape(c) for c in row) + r' \\' for row in table.rows]
  lines += [r'\hline', r'\end{tabular}', '']
  lines += [r'\par\smallskip\footnotesize ' + _latex_escape(n) for n in table.notes]
  lines.append(r'\end{table}')
  return '\n'.join(lines) + '\n'


CSV_FIELDS = ('table', 'row', 'flagfile', 'run', 'status', 'metric', 'paper', 'ours', 'difference',
              'dataset', 'train_size', 'epochs_completed', 'epochs_target')


def to_csv(tables: Sequence[Table]) -> str:
  """Every cell of the tables as one CSV row (CSV_FIELDS)."""
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator='\n')
  writer.writeheader()
  for table in tables:
    writer.writerows(table.records)
  return out.getvalue()


def render(logdir: str | RunIndex, fmt: str = 'markdown', which: str = 'all') -> str:
  """Both tables (or one) in the given format."""
  index = as_index(logdir)
  tables = [t(index) for key, t in (('1', table1), ('2', table2)) if which in (key, 'all')]
  if fmt == 'csv':
    return to_csv(tables)
  renderer = to_latex if fmt == 'latex' else to_markdown
  return '\n'.join(renderer(t) for t in tables)


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


def main(argv: Sequence[str] | None = None) -> int:
  """Prints or writes the tables; returns the exit code."""
  parser = arguments.ArgumentParser(description='Tables 1 and 2, ours beside the paper.')
  parser.add_argument('--logdir',
                      required=True,
                      help='A directory tree of runs (any '
                      'directory holding config.json is one), e.g. a sweep\'s --logdir.')
  parser.add_argument('--format', choices=('markdown', 'latex', 'csv'), default='markdown')
  parser.add_argument('--table', choices=('1', '2', 'all'), default='all')
  parser.add_argument('--out', default=None, help='Write here instead of stdout.')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.logdir):
    arguments.fail(f'--logdir={args.logdir} is not a directory; allowed: a directory '
                   'tree of runs')
  if args.out:
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if os.path.isdir(args.out):
      arguments.fail(f'--out={args.out} is a directory; allowed: a file path')
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
      arguments.fail(f'--out={args.out}: {out_dir} is not a writable directory')
  index = RunIndex(args.logdir)
  text = render(index, args.format, args.table)
  which = 'Table 1 or 2' if args.table == 'all' else f'Table {args.table}'
  report_matches(index, args.logdir, f'row of {which}')
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  else:
    sys.stdout.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
