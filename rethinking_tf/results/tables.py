"""Tables 1 and 2 of the paper (section 3), our numbers beside the paper's.

Each row gives the paper's accuracy, ours and the difference (ours minus
paper, in percentage points). A run that is missing, still running,
interrupted, failed or diverged (a loss became NaN) shows as such, never as
a number. The paper's numbers live here, in PAPER_TABLE1 and PAPER_TABLE2
(copied from docs PAPER.md section 3). Needs no TensorFlow.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Sequence

from rethinking_tf.results.runs import FAILED, METRICS, Run, RunIndex, as_index, condition

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
