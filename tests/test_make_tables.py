"""Tests of tools/make_tables.py on fabricated run directories."""

from __future__ import annotations

import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
import make_tables  # pylint: disable=wrong-import-position
import run_sweep  # pylint: disable=wrong-import-position
from conftest import write_run_dir  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(logdir, name: str, *, results: dict | None = None, failed: str | None = None,
              epochs_done: int = 0, flags: str = '--epochs=100\n--train_size=5000\n') -> str:
  metrics = [[e, 40 * e, 0.01, 1.0, 0.5, 1.0, 0.5, 1.2, 0.4, e] for e in range(1, epochs_done + 1)]
  return write_run_dir(logdir, name, flags=flags, metrics=metrics, results=results,
                       failed=failed)


def fabricated(tmp_path) -> str:
  logdir = str(tmp_path)
  write_run(logdir, 'table1/mlp_1x512_wd', epochs_done=3, results=dict(
      train_accuracy=0.995, test_accuracy=0.4812, best_test_accuracy=0.49,
      epochs_completed=100, config=dict(train_size=5000, epochs=100)))
  write_run(logdir, 'table1/mlp_1x512', epochs_done=7)  # interrupted
  write_run(logdir, 'table1/alexnet', epochs_done=2, failed='exit code 1\ncommand: x\n')
  write_run(logdir, 'table2/inception_v3_wd', results=dict(
      train_accuracy=0.9, test_accuracy=0.6, best_test_accuracy=0.7, epochs_completed=4,
      test_top5_accuracy=0.85, config=dict(train_size=0, epochs=100)))
  return logdir


def row_of(text: str, *cells: str) -> str:
  """The Markdown row whose leading cells are `cells`."""
  prefix = '| ' + ' | '.join(cells) + ' |'
  rows = [l for l in text.splitlines() if l.startswith(prefix)]
  assert len(rows) == 1, (prefix, rows)
  return rows[0]


def test_paper_rows_match_flagfiles():
  """Every table row has its flagfile and every table flagfile a row."""
  rows = [r.run for r in make_tables.PAPER_TABLE1 + make_tables.PAPER_TABLE2]
  assert len(rows) == len(set(rows)) == 19 + 7
  flagfiles = set()
  for table in ('table1', 'table2'):
    for name in os.listdir(os.path.join(REPO, 'flags', table)):
      flagfiles.add(f'{table}/{name[:-4]}')
  assert flagfiles == set(rows)


def test_paper_numbers_are_in_flagfile_headers():
  """The one copy of the paper's numbers agrees with each flagfile's first line."""
  for row in make_tables.PAPER_TABLE1:
    with open(os.path.join(REPO, 'flags', row.run + '.cfg')) as f:
      first = f.readline()
    assert f'paper train {make_tables.paper_text(row.train)} / test ' \
           f'{make_tables.paper_text(row.test)}' in first, (row, first)
  for row in make_tables.PAPER_TABLE2:
    with open(os.path.join(REPO, 'flags', row.run + '.cfg')) as f:
      first = f.readline()
    assert f'top-1 test {make_tables.paper_text(row.test_top1, row.best_top1)}' in first


def test_markdown_statuses_and_numbers(tmp_path):
  text = make_tables.render(fabricated(tmp_path), 'markdown')
  row = row_of(text, 'MLP 1x512', 'no', 'yes')
  assert '| 99.80 | 99.50 | -0.30 | 50.39 | 48.12 | -2.27 | 5,000 ex, 100/100 ep |' in row
  row = row_of(text, 'MLP 1x512', 'no', 'no')
  assert 'incomplete (7/100 ep)' in row and '%' not in row
  assert '| 100.0 | incomplete (7/100 ep) |  |' in row
  row = row_of(text, 'Alexnet', 'no', 'no')
  assert row.count('| failed |') == 2
  row = row_of(text, 'Inception', 'yes', 'yes')
  assert row.count('| missing |') == 2
  assert '`table1/alexnet` failed: exit code 1' in text
  assert 'missing = no run directory (16 of 19 rows)' in text
  # Table 2: final (best) for rows the paper gives a best for; top-5 not recorded.
  row = row_of(text, 'true', 'no', 'no', 'yes')
  assert '| 67.18 (72.57) | 60.00 (70.00) | -7.18 |' in row
  assert '| 100.0 | n/r |  |' in row
  assert '| 86.44 (91.31) | 85.00 | -1.44 |' in row
  assert 'all ex, 4/100 ep' in row


def test_running_run_is_shown_as_running(tmp_path):
  import fcntl  # pylint: disable=import-outside-toplevel
  logdir = str(tmp_path)
  rundir = write_run(logdir, 'table1/inception', epochs_done=1)
  with open(os.path.join(rundir, run_sweep.LOCK), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    run = make_tables.read_run(logdir, 'table1/inception')
    assert run.status == 'running' and run.label() == 'running (1/100 ep)'
  assert make_tables.read_run(logdir, 'table1/inception').status == 'incomplete'


def test_unreadable_results_is_failed(tmp_path):
  rundir = write_run(str(tmp_path), 'table1/inception')
  with open(os.path.join(rundir, 'results.json'), 'w') as f:
    f.write('{not json')
  run = make_tables.read_run(str(tmp_path), 'table1/inception')
  assert run.status == 'failed' and 'unreadable' in run.failure


def test_csv(tmp_path):
  text = make_tables.render(fabricated(tmp_path), 'csv')
  records = list(csv.DictReader(io.StringIO(text)))
  assert len(records) == 19 * 2 + 7 * 4 + 2 * 2
  by = {(r['run'], r['metric']): r for r in records}
  test = by[('table1/mlp_1x512_wd', 'test')]
  assert test['status'] == 'finished' and float(test['ours']) == 48.12
  assert float(test['difference']) == -2.27 and test['train_size'] == '5000'
  assert by[('table1/mlp_1x512', 'test')]['ours'] == ''
  assert by[('table1/alexnet', 'train')]['status'] == 'failed'
  assert by[('table2/inception_v3_wd', 'top-1 test best')]['ours'] == '70.0'


def test_latex_and_cli(tmp_path, capsys):
  logdir = fabricated(tmp_path / 'runs')
  out = tmp_path / 'tables.tex'
  assert make_tables.main([f'--logdir={logdir}', '--format=latex', '--table=1',
                           f'--out={out}']) == 0
  tex = out.read_text()
  assert tex.count(r'\begin{tabular}') == 1 and r'\%' in tex and 'failed' in tex
  assert 'Table 2' not in tex
  assert make_tables.main([f'--logdir={logdir}', '--table=2']) == 0
  assert '### Table 2' in capsys.readouterr().out
  assert make_tables.main([f'--logdir={tmp_path / "nope"}']) == 2


def test_scale_names_a_test_subset(tmp_path):
  write_run(str(tmp_path), 'table1/inception', epochs_done=3,
            flags='--epochs=40\n--train_size=1000\n--test_size=1000\n',
            results=dict(train_accuracy=1.0, test_accuracy=0.45, epochs_completed=3))
  write_run(str(tmp_path), 'table1/inception_wd', epochs_done=3,  # config values are ints
            flags='--epochs=40\n', results=dict(
                train_accuracy=1.0, test_accuracy=0.45, epochs_completed=3,
                config=dict(train_size=1000, test_size=500, epochs=40)))
  text = make_tables.render(str(tmp_path), 'markdown')
  assert '| 1,000 ex, test 1,000, 3/40 ep |' in row_of(text, 'Inception', 'no', 'no')
  assert '| 1,000 ex, test 500, 3/40 ep |' in row_of(text, 'Inception', 'no', 'yes')


def test_scale_names_a_precision_other_than_float32(tmp_path):
  for name, precision in (('table1/alexnet', 'mixed_bfloat16'), ('table1/alexnet_wd', 'float32')):
    write_run(str(tmp_path), name, epochs_done=2,
              flags=f'--epochs=40\n--train_size=0\n--precision={precision}\n',
              results=dict(train_accuracy=1.0, test_accuracy=0.75, epochs_completed=2))
  text = make_tables.render(str(tmp_path), 'markdown')
  assert '| all ex, 2/40 ep, mixed_bfloat16 |' in row_of(text, 'Alexnet', 'no', 'no')
  assert '| all ex, 2/40 ep |' in row_of(text, 'Alexnet', 'no', 'yes')
