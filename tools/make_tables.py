#!/usr/bin/env python
"""Tables 1 and 2 of the paper (section 3), our numbers beside the paper's.

    python tools/make_tables.py --logdir=DIR [--format=markdown|latex|csv] [--table=1|2|all] [--out=FILE]

Reads the run directories that tools/run_sweep.py lays out under DIR
(DIR/table1/<run>, DIR/table2/<run>, one per flagfile under flags/) and prints
each table row with the paper's accuracy, ours and the difference (ours minus
paper, in percentage points). A run that is missing, still running,
interrupted or failed shows as such, never as a number. Each row also gives
the scale of our run (training examples, epochs), since runs here are often
CPU-sized.

The paper's numbers live here, in PAPER_TABLE1 and PAPER_TABLE2 (copied from
docs PAPER.md section 3). This module also holds the run-directory reader
that tools/make_figures.py uses. Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
from typing import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_sweep import lock_held  # pylint: disable=wrong-import-position

# --- The paper's numbers (accuracy %), PAPER.md section 3 -------------------


@dataclasses.dataclass(frozen=True)
class Table1Row:
  """One row of Table 1 (CIFAR-10) and the run that replicates it."""
  run: str  # run directory under DIR, = flagfile under flags/ without .cfg
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
    Table1Row('table1/inception_random_labels', 'Inception, random labels', False, False,
              100.0, 9.78),
    Table1Row('table1/inception_nobn_wd', 'Inception w/o BN', False, True, 100.0, 83.00),
    Table1Row('table1/inception_nobn', 'Inception w/o BN', False, False, 100.0, 82.00),
    Table1Row('table1/inception_nobn_random_labels', 'Inception w/o BN, random labels',
              False, False, 100.0, 10.12),
    Table1Row('table1/alexnet_crop_wd', 'Alexnet', True, True, 99.90, 81.22),
    Table1Row('table1/alexnet_crop', 'Alexnet', True, False, 99.82, 79.66),
    Table1Row('table1/alexnet_wd', 'Alexnet', False, True, 100.0, 77.36),
    Table1Row('table1/alexnet', 'Alexnet', False, False, 100.0, 76.07),
    Table1Row('table1/alexnet_random_labels', 'Alexnet, random labels', False, False,
              99.82, 9.86),
    Table1Row('table1/mlp_3x512_wd', 'MLP 3x512', False, True, 100.0, 53.35),
    Table1Row('table1/mlp_3x512', 'MLP 3x512', False, False, 100.0, 52.39),
    Table1Row('table1/mlp_3x512_random_labels', 'MLP 3x512, random labels', False, False,
              100.0, 10.48),
    Table1Row('table1/mlp_1x512_wd', 'MLP 1x512', False, True, 99.80, 50.39),
    Table1Row('table1/mlp_1x512', 'MLP 1x512', False, False, 100.0, 50.51),
    Table1Row('table1/mlp_1x512_random_labels', 'MLP 1x512, random labels', False, False,
              99.34, 10.61),
)

PAPER_TABLE2: tuple[Table2Row, ...] = (
    Table2Row('table2/inception_v3_aug_dropout_wd', 'true', True, True, True,
              92.18, 99.21, 77.84, 93.92),
    Table2Row('table2/inception_v3_aug', 'true', True, False, False, 92.33, 99.17, 72.95, 90.43),
    Table2Row('table2/inception_v3_wd', 'true', False, False, True, 90.60, 100.0, 67.18, 86.44,
              72.57, 91.31),
    Table2Row('table2/inception_v3', 'true', False, False, False, 99.53, 100.0, 59.80, 80.38,
              63.16, 84.49),
    Table2Row('table2/inception_v3_random_labels_dropout_wd', 'random', False, True, True,
              91.18, 97.95, 0.09, 0.49),
    Table2Row('table2/inception_v3_random_labels_wd', 'random', False, False, True,
              87.81, 96.15, 0.12, 0.50),
    Table2Row('table2/inception_v3_random_labels', 'random', False, False, False,
              95.20, 99.14, 0.11, 0.56),
)

# --- Run directories ---------------------------------------------------------

STATUSES = ('finished', 'running', 'incomplete', 'failed', 'missing')


@dataclasses.dataclass
class Run:
  """What a run directory holds.

  status: finished (results.json), failed (failed.txt, no results.json),
  running (a sweep holds its lock), incomplete (started, neither finished nor
  failed nor running: re-run the sweep to resume), missing (no directory).
  """
  name: str
  rundir: str
  status: str
  results: dict | None = None
  flags: dict = dataclasses.field(default_factory=dict)
  metrics: list[dict] = dataclasses.field(default_factory=list)
  failure: str = ''

  @property
  def epochs_done(self) -> int:
    if self.results and self.results.get('epochs_completed') is not None:
      return int(self.results['epochs_completed'])
    return len(self.metrics)

  def int_flag(self, name: str) -> int | None:
    """An integer flag of the run; None if absent or not an integer."""
    value = self.flags.get(name)
    try:
      return int(value) if value is not None else None
    except (TypeError, ValueError):
      return None

  @property
  def epochs_target(self) -> int | None:
    return self.int_flag('epochs')

  @property
  def train_size(self) -> int | None:
    return self.int_flag('train_size')

  def scale(self, dataset: str | None = None) -> str:
    """E.g. '5,000 ex, 37/100 ep' ('all' = the full training set), with
    ', test 1,000' when the run evaluated a test subset (--test_size), and
    the precision policy when it is not float32 (the paper's).

    Prefixed by the run's data set when it is not `dataset` (the paper's).
    """
    if self.status == 'missing':
      return ''
    ran_on = self.flags.get('dataset')
    prefix = f'{ran_on}, ' if dataset and ran_on and ran_on != dataset else ''
    size = self.train_size
    size_text = 'all' if size == 0 else ('?' if size is None else f'{size:,}')
    target = self.epochs_target
    test = self.int_flag('test_size')
    test_text = f', test {test:,}' if test else ''
    precision = self.flags.get('precision', 'float32')
    precision_text = f', {precision}' if precision != 'float32' else ''
    return (f'{prefix}{size_text} ex{test_text}, '
            f'{self.epochs_done}/{target if target is not None else "?"} ep{precision_text}')

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
    return float(value) if isinstance(value, (int, float)) and not isinstance(
        value, bool) else None


def _parse_flags_cfg(path: str) -> dict:
  """flags.cfg lines `--name=value`, `--name`, `--noname` as strings."""
  flags = {}
  try:
    with open(path) as f:
      for line in f:
        line = line.strip()
        if not line.startswith('--'):
          continue
        body = line[2:]
        if '=' in body:
          name, value = body.split('=', 1)
          flags[name] = value
        elif body.startswith('no'):
          flags[body[2:]] = 'false'
        else:
          flags[body] = 'true'
  except OSError:
    pass
  return flags


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


def read_run(logdir: str, name: str) -> Run:
  """Reads run `name` (e.g. 'table1/mlp_1x512_wd') under `logdir`."""
  rundir = os.path.join(logdir, name)
  if not os.path.isdir(rundir):
    return Run(name, rundir, 'missing')
  run = Run(name, rundir, 'incomplete')
  run.flags = _parse_flags_cfg(os.path.join(rundir, 'flags.cfg'))
  run.metrics = read_metrics(os.path.join(rundir, 'metrics.csv'))
  results_path = os.path.join(rundir, 'results.json')
  failed_path = os.path.join(rundir, 'failed.txt')
  if os.path.exists(results_path):
    try:
      with open(results_path) as f:
        run.results = json.load(f)
      run.status = 'finished'
      config = run.results.get('config') or {}
      run.flags = {**run.flags, **{k: v for k, v in config.items() if v is not None}}
    except (OSError, ValueError) as e:
      run.status, run.failure = 'failed', f'results.json unreadable: {e}'
  elif os.path.exists(failed_path):
    run.status = 'failed'
    with open(failed_path, errors='replace') as f:
      lines = [l.strip() for l in f if l.strip()]
    run.failure = lines[0] if lines else 'failed.txt is empty'
  elif lock_held(rundir):
    run.status = 'running'
  return run


# --- Cells -------------------------------------------------------------------


def pct(fraction: float | None) -> str:
  return '' if fraction is None or math.isnan(fraction) else f'{100 * fraction:.2f}'


def diff(fraction: float | None, paper: float | None) -> str:
  if fraction is None or paper is None or math.isnan(fraction):
    return ''
  return f'{100 * fraction - paper:+.2f}'


def paper_text(value: float | None, best: float | None = None) -> str:
  if value is None:
    return ''
  text = f'{value:.2f}' if value != 100.0 else '100.0'
  return text + (f' ({best:.2f})' if best is not None else '')


def yes(flag: bool) -> str:
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


def _metric_cells(run: Run, key: str, paper: float, best_key: str | None = None,
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


def _record(table: str, row: str, run: Run, metric: str, paper: float | None,
            key: str) -> dict:
  value = run.value(key)
  return dict(table=table, row=row, run=run.name, status=run.status, metric=metric,
              paper=paper, ours=None if value is None else round(100 * value, 4),
              difference=None if value is None or paper is None else round(100 * value - paper, 4),
              dataset=run.flags.get('dataset'), train_size=run.train_size,
              epochs_completed=run.epochs_done if run.status != 'missing'
              else None, epochs_target=run.epochs_target)


def _status_notes(runs: list[Run]) -> list[str]:
  notes = []
  for run in runs:
    if run.status == 'failed':
      notes.append(f'`{run.name}` failed: {run.failure} (see {run.rundir}/train.log).')
  missing = sum(r.status == 'missing' for r in runs)
  if missing:
    notes.append(f'missing = no run directory ({missing} of {len(runs)} rows).')
  if any(r.status == 'incomplete' for r in runs):
    notes.append('incomplete = started but neither finished nor running: run the sweep '
                 'again to resume it.')
  return notes


SCALE_NOTE = ('Scale = the data set if not the paper\'s, training examples used ("all" = '
              'the full set; the paper always uses all), test examples when not all 10,000 '
              '(a subset of 1,000 gives a standard error of about 1.6 points) '
              'and epochs completed / epochs asked, then the precision if not float32. '
              'Numbers from smaller runs are not comparable to the paper\'s.')


def table1(logdir: str) -> Table:
  """Table 1 (CIFAR-10): train and test accuracy, paper vs ours."""
  header = ['model', 'random crop', 'weight decay', 'train (paper)', 'train (ours)', 'Δ',
            'test (paper)', 'test (ours)', 'Δ', 'scale']
  rows, records, runs = [], [], []
  for row in PAPER_TABLE1:
    run = read_run(logdir, row.run)
    runs.append(run)
    cells = [row.model, yes(row.crop), yes(row.weight_decay)]
    cells += _metric_cells(run, 'train_accuracy', row.train)
    cells += _metric_cells(run, 'test_accuracy', row.test)
    cells.append(run.scale('cifar10'))
    rows.append(cells)
    label = f'{row.model}, crop {yes(row.crop)}, wd {yes(row.weight_decay)}'
    records.append(_record('1', label, run, 'train', row.train, 'train_accuracy'))
    records.append(_record('1', label, run, 'test', row.test, 'test_accuracy'))
  notes = ['Accuracy in %; Δ = ours − paper in percentage points. Train accuracy is an '
           'inference-mode pass over the (randomized) training set.', SCALE_NOTE]
  return Table('Table 1: CIFAR-10, train / test accuracy (%)', header, rows,
               notes + _status_notes(runs), records, 3)


def table2(logdir: str) -> Table:
  """Table 2 (ImageNet, Inception V3): top-1/top-5 train and test, paper vs ours."""
  header = ['labels', 'aug', 'dropout', 'wd']
  for what in ('top-1 train', 'top-5 train', 'top-1 test', 'top-5 test'):
    header += [f'{what} (paper)', f'{what} (ours)', 'Δ']
  header.append('scale')
  rows, records, runs = [], [], []
  metrics = (('top-1 train', 'train_accuracy', 'train_top1', None, None),
             ('top-5 train', 'train_top5_accuracy', 'train_top5', None, None),
             ('top-1 test', 'test_accuracy', 'test_top1', 'best_test_accuracy', 'best_top1'),
             ('top-5 test', 'test_top5_accuracy', 'test_top5', 'best_test_top5_accuracy',
              'best_top5'))
  for row in PAPER_TABLE2:
    run = read_run(logdir, row.run)
    runs.append(run)
    cells = [row.labels, yes(row.augment), yes(row.dropout), yes(row.weight_decay)]
    label = (f'{row.labels} labels, aug {yes(row.augment)}, dropout {yes(row.dropout)}, '
             f'wd {yes(row.weight_decay)}')
    for metric, key, attr, best_key, best_attr in metrics:
      paper_best = getattr(row, best_attr) if best_attr else None
      cells += _metric_cells(run, key, getattr(row, attr), best_key, paper_best)
      records.append(_record('2', label, run, metric, getattr(row, attr), key))
      if paper_best is not None:
        records.append(_record('2', label, run, metric + ' best', paper_best, best_key))
    cells.append(run.scale('imagenet2012'))
    rows.append(cells)
  notes = ['Accuracy in %; Δ = ours − paper (final accuracy) in percentage points. '
           'Parenthesised: best test accuracy during training (early stopping).',
           'n/r = not recorded in results.json (top-5 needs train_top5_accuracy / '
           'test_top5_accuracy / best_test_top5_accuracy).', SCALE_NOTE]
  return Table('Table 2: ImageNet, Inception V3, top-1 / top-5 accuracy (%)', header,
               rows, notes + _status_notes(runs), records, 4)


# --- Renderers ---------------------------------------------------------------


def to_markdown(table: Table) -> str:
  lines = [f'### {table.title}', '', '| ' + ' | '.join(table.header) + ' |',
           '|' + '|'.join('---' for _ in table.header) + '|']
  lines += ['| ' + ' | '.join(c.replace('|', '\\|') for c in row) + ' |' for row in table.rows]
  lines.append('')
  lines += [f'- {note}' for note in table.notes]
  return '\n'.join(lines) + '\n'


def _latex_escape(text: str) -> str:
  for a, b in (('\\', r'\textbackslash{}'), ('_', r'\_'), ('%', r'\%'), ('&', r'\&'),
               ('#', r'\#'), ('$', r'\$'), ('Δ', r'$\Delta$'), ('−', '$-$'),
               ('`', '')):
    text = text.replace(a, b)
  return text


def to_latex(table: Table) -> str:
  lines = [r'\begin{table}[ht]', r'\centering', r'\scriptsize',
           r'\caption{' + _latex_escape(table.title) + '}',
           r'\begin{tabular}{' + 'l' * table.key_columns
           + 'r' * (len(table.header) - table.key_columns - 1) + 'l}',
           r'\hline', ' & '.join(_latex_escape(h) for h in table.header) + r' \\', r'\hline']
  lines += [' & '.join(_latex_escape(c) for c in row) + r' \\' for row in table.rows]
  lines += [r'\hline', r'\end{tabular}', '']
  lines += [r'\par\smallskip\footnotesize ' + _latex_escape(n) for n in table.notes]
  lines.append(r'\end{table}')
  return '\n'.join(lines) + '\n'


CSV_FIELDS = ('table', 'row', 'run', 'status', 'metric', 'paper', 'ours', 'difference',
              'dataset', 'train_size', 'epochs_completed', 'epochs_target')


def to_csv(tables: Sequence[Table]) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator='\n')
  writer.writeheader()
  for table in tables:
    writer.writerows(table.records)
  return out.getvalue()


def render(logdir: str, fmt: str = 'markdown', which: str = 'all') -> str:
  """Both tables (or one) in the given format."""
  tables = [t(logdir) for key, t in (('1', table1), ('2', table2)) if which in (key, 'all')]
  if fmt == 'csv':
    return to_csv(tables)
  renderer = to_latex if fmt == 'latex' else to_markdown
  return '\n'.join(renderer(t) for t in tables)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description='Tables 1 and 2, ours beside the paper.')
  parser.add_argument('--logdir', required=True, help='The sweep\'s --logdir.')
  parser.add_argument('--format', choices=('markdown', 'latex', 'csv'), default='markdown')
  parser.add_argument('--table', choices=('1', '2', 'all'), default='all')
  parser.add_argument('--out', default=None, help='Write here instead of stdout.')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.logdir):
    print(f'error: --logdir={args.logdir} is not a directory', file=sys.stderr)
    return 2
  text = render(args.logdir, args.format, args.table)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  else:
    sys.stdout.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
