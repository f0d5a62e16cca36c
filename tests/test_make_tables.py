"""Tests of tools/make_tables.py on fabricated run directories."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
import make_tables  # pylint: disable=wrong-import-position
from rethinking_tf.results import runs  # pylint: disable=wrong-import-position
from rethinking_tf.results import tables  # pylint: disable=wrong-import-position
from rethinking_tf.sweep import lock as sweep_lock  # pylint: disable=wrong-import-position
from conftest import flagfile_config, write_run_dir  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(logdir,
              name: str,
              *,
              results: dict | None = None,
              failed: str | None = None,
              epochs_done: int = 0,
              flagfile: str | None = None,
              metrics=None,
              **config) -> str:
  """A run at `name` under logdir with flags/<flagfile or name>.cfg's settings,
  by default at 5,000 examples and 100 epochs (`config` overrides)."""
  metrics = metrics or [
      [e, 40 * e, 0.01, 1.0, 0.5, 1.0, 0.5, 1.2, 0.4, e] for e in range(1, epochs_done + 1)
  ]
  config = flagfile_config(flagfile or name, **{'train_size': 5000, 'epochs': 100, **config})
  return write_run_dir(logdir, name, metrics=metrics, config=config, results=results, failed=failed)


def fabricated(tmp_path) -> str:
  logdir = str(tmp_path)
  write_run(logdir,
            'table1/mlp_1x512_wd',
            epochs_done=3,
            results=dict(train_accuracy=0.995,
                         test_accuracy=0.4812,
                         best_test_accuracy=0.49,
                         epochs_completed=100,
                         config=dict(train_size=5000, epochs=100)))
  write_run(logdir, 'table1/mlp_1x512', epochs_done=7)  # interrupted
  write_run(logdir, 'table1/alexnet', epochs_done=2, failed='exit code 1\ncommand: x\n')
  write_run(logdir,
            'table2/inception_v3_wd',
            train_size=None,
            results=dict(train_accuracy=0.9,
                         test_accuracy=0.6,
                         best_test_accuracy=0.7,
                         epochs_completed=4,
                         test_top5_accuracy=0.85))
  return logdir


def row_of(text: str, *cells: str) -> str:
  """The Markdown row whose leading cells are `cells`."""
  prefix = '| ' + ' | '.join(cells) + ' |'
  rows = [l for l in text.splitlines() if l.startswith(prefix)]
  assert len(rows) == 1, (prefix, rows)
  return rows[0]


def test_paper_rows_match_flagfiles():
  """Every table row has its flagfile and every table flagfile a row."""
  rows = [r.run for r in tables.PAPER_TABLE1 + tables.PAPER_TABLE2]
  assert len(rows) == len(set(rows)) == 19 + 7
  flagfiles = set()
  for table in ('table1', 'table2'):
    for name in os.listdir(os.path.join(REPO, 'flags', table)):
      flagfiles.add(f'{table}/{name[:-4]}')
  assert flagfiles == set(rows)


def test_paper_numbers_are_in_flagfile_headers():
  """The one copy of the paper's numbers agrees with each flagfile's first line."""
  for row in tables.PAPER_TABLE1:
    with open(os.path.join(REPO, 'flags', row.run + '.cfg')) as f:
      first = f.readline()
    assert f'paper train {tables.paper_text(row.train)} / test ' \
           f'{tables.paper_text(row.test)}' in first, (row, first)
  for row in tables.PAPER_TABLE2:
    with open(os.path.join(REPO, 'flags', row.run + '.cfg')) as f:
      first = f.readline()
    assert f'top-1 test {tables.paper_text(row.test_top1, row.best_top1)}' in first


def test_markdown_statuses_and_numbers(tmp_path):
  text = tables.render(fabricated(tmp_path), 'markdown')
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
  assert "missing = no run under --logdir has the row's settings (16 of 19 rows)" in text
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
  with open(os.path.join(rundir, sweep_lock.LOCK), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    run = runs.read_run(rundir)
    assert run.status == 'running' and run.label() == 'running (1/100 ep)'
  assert runs.read_run(rundir).status == 'incomplete'


def test_unreadable_results_is_failed(tmp_path):
  rundir = write_run(str(tmp_path), 'table1/inception')
  with open(os.path.join(rundir, 'results.json'), 'w') as f:
    f.write('{not json')
  run = runs.read_run(rundir)
  assert run.status == 'failed' and 'unreadable' in run.failure


def test_csv(tmp_path):
  text = tables.render(fabricated(tmp_path), 'csv')
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
  with pytest.raises(SystemExit) as exit_info:
    make_tables.main([f'--logdir={tmp_path / "nope"}'])
  assert exit_info.value.code == 2


def test_scale_names_a_test_subset(tmp_path):
  write_run(str(tmp_path),
            'table1/inception',
            epochs_done=3,
            epochs=40,
            train_size=1000,
            test_size=1000,
            results=dict(train_accuracy=1.0, test_accuracy=0.45, epochs_completed=3))
  write_run(str(tmp_path),
            'table1/inception_wd',
            epochs_done=3,
            epochs=40,
            train_size=1000,
            test_size=500,
            results=dict(train_accuracy=1.0, test_accuracy=0.45, epochs_completed=3))
  text = tables.render(str(tmp_path), 'markdown')
  assert '| 1,000 ex, test 1,000, 3/40 ep |' in row_of(text, 'Inception', 'no', 'no')
  assert '| 1,000 ex, test 500, 3/40 ep |' in row_of(text, 'Inception', 'no', 'yes')


def test_scale_names_a_precision_other_than_float32(tmp_path):
  for name, precision in (('table1/alexnet', 'mixed_bfloat16'), ('table1/alexnet_wd', 'float32')):
    write_run(str(tmp_path),
              name,
              epochs_done=2,
              epochs=40,
              train_size=None,
              precision=precision,
              results=dict(train_accuracy=1.0, test_accuracy=0.75, epochs_completed=2))
  text = tables.render(str(tmp_path), 'markdown')
  assert '| all ex, 2/40 ep, mixed_bfloat16 |' in row_of(text, 'Alexnet', 'no', 'no')
  assert '| all ex, 2/40 ep |' in row_of(text, 'Alexnet', 'no', 'yes')


def test_diverged_runs_show_as_diverged_never_as_numbers(tmp_path):
  logdir = str(tmp_path)
  nan_row = [2, 80, 0.01, 'nan', 0.1, 'nan', 0.1, 'nan', 0.1, 2]
  ok_row = [1, 40, 0.01, 1.0, 0.5, 1.0, 0.5, 1.2, 0.4, 1]
  write_run(logdir,
            'table1/alexnet',
            metrics=[ok_row, nan_row],
            failed='diverged at epoch 2, step 80\n\nTraceback ...\n')
  # A run that finished in spite of a NaN loss (made before runs stopped at one).
  write_run(logdir,
            'table1/mlp_1x512',
            metrics=[ok_row, nan_row],
            results=dict(train_accuracy=0.1, test_accuracy=0.1, epochs_completed=2))
  text = tables.render(logdir, 'markdown')
  for model in ('Alexnet', 'MLP 1x512'):
    row = row_of(text, model, 'no', 'no')
    assert row.count('| diverged |  |') == 2 and '10.00' not in row, row
  assert ('`table1/alexnet` diverged at epoch 2, step 80: a loss became NaN or infinite '
          f'(metrics up to it in {os.path.join(logdir, "table1", "alexnet", "metrics.csv")})'
          in text)
  assert '`table1/mlp_1x512` diverged at epoch 2, step 80' in text
  records = list(csv.DictReader(io.StringIO(tables.render(logdir, 'csv'))))
  assert {r['status'] for r in records if r['flagfile'] == 'table1/mlp_1x512'} == {'diverged'}
  assert all(r['ours'] == '' for r in records if r['status'] == 'diverged')


def test_any_tree_fills_rows_by_settings(tmp_path, capsys):
  """Runs anywhere under --logdir fill the rows whose flagfile settings they have."""
  logdir = tmp_path / 'mine'
  done = dict(train_accuracy=1.0, test_accuracy=0.5, epochs_completed=3)
  write_run(str(logdir),
            'a/b/wd run',
            flagfile='table1/mlp_1x512_wd',
            epochs_done=3,
            dataset='digits',
            results=done)
  # Two runs for one row: the finished one is shown, the note says there were several.
  write_run(str(logdir), 'alex/one', flagfile='table1/alexnet', epochs_done=9)
  write_run(str(logdir), 'alex/two', flagfile='table1/alexnet', epochs_done=2, results=done)
  # Another learning rate still fills the row and says so in the scale column.
  write_run(str(logdir),
            'x',
            flagfile='table1/inception',
            learning_rate=0.01,
            epochs_done=3,
            results=done)
  # Stopping at the fit (Figure 1's runs) fills no true-label row; checkpoints/ holds no runs.
  write_run(str(logdir), 'figs/true', flagfile='figure1/inception_true', results=done)
  os.makedirs(logdir / 'x' / 'checkpoints' / 'inner')
  with open(logdir / 'x' / 'checkpoints' / 'inner' / 'config.json', 'w') as f:
    json.dump({}, f)
  assert make_tables.main([f'--logdir={logdir}', '--table=1']) == 0
  out, err = capsys.readouterr()
  row = row_of(out, 'MLP 1x512', 'no', 'yes')
  assert '| 99.80 | 100.00 | +0.20 | 50.39 | 50.00 | -0.39 | digits, 5,000 ex, 3/100 ep |' in row
  assert '| 50.00 |' in row_of(out, 'Alexnet', 'no', 'no')
  assert '1 of 19 rows had several' in out
  assert '5,000 ex, 3/100 ep, learning_rate 0.01 |' in row_of(out, 'Inception', 'no', 'no')
  assert err == f'note: 1 of 5 runs under {logdir} match no row of Table 1: figs/true\n'
  records = list(csv.DictReader(io.StringIO(tables.render(str(logdir), 'csv', '1'))))
  assert {r['run'] for r in records if r['flagfile'] == 'table1/alexnet'} == {'alex/two'}


def test_no_matching_run_is_an_error(tmp_path, capsys):
  write_run(str(tmp_path), 'figs/true', flagfile='figure1/inception_true', epochs_done=1)
  out = tmp_path / 'tables.md'
  with pytest.raises(SystemExit) as exit_info:
    make_tables.main([f'--logdir={tmp_path}', f'--out={out}'])
  assert exit_info.value.code == 1 and not out.exists()
  assert capsys.readouterr().err == (
      f'error: no run under --logdir={tmp_path} matches a row of Table 1 or 2 (1 run '
      'directories found; a run is a directory holding config.json)\n')


def test_selection_prefers_the_sweep_layout_then_the_flagfile_tuning(tmp_path):
  logdir = str(tmp_path)
  done = lambda e: dict(train_accuracy=1.0, test_accuracy=0.1, epochs_completed=e)
  write_run(logdir,
            'figure1/alexnet_corrupt_1.0',
            flagfile='figure1/alexnet_corrupt_1.0',
            epochs_done=30,
            stop_on_fit=True,
            results=done(30))
  write_run(logdir, 'table1/alexnet_random_labels', epochs_done=27, results=done(27))
  write_run(logdir,
            'other/mlp_a',
            flagfile='table1/mlp_1x512_random_labels',
            epochs_done=30,
            fit_threshold=0.95,
            results=done(30))
  write_run(logdir,
            'other/mlp_b',
            flagfile='table1/mlp_1x512_random_labels',
            epochs_done=20,
            results=done(20))
  index = runs.RunIndex(logdir)
  names = lambda row: [r.name for r in index.candidates(row)]
  assert names('table1/alexnet_random_labels') == [
      'table1/alexnet_random_labels', 'figure1/alexnet_corrupt_1.0'
  ]
  assert names('table1/mlp_1x512_random_labels') == ['other/mlp_b', 'other/mlp_a']


def test_conditions_decide_by_settings_not_scale():
  cond = runs.condition('table1/mlp_1x512_wd')
  assert cond.settings == dict(augment=False,
                               batch_norm=True,
                               corrupt_prob=0.0,
                               dropout=0.0,
                               early_stopping_patience=0.0,
                               inputs='original',
                               labels='true',
                               model='mlp_1x512',
                               random_crop=False,
                               stop_on_fit=False,
                               weight_decay=1e-4)
  assert cond.tuning['learning_rate'] == 0.01
  assert runs.condition('table1/inception').tuning['learning_rate'] == 0.1
  # corrupted with p = 1 is random labels.
  assert (runs.condition('figure1/mlp_1x512_corrupt_1.0').settings['labels'] == 'random')


def test_paper_learning_rate_is_the_binary_default():
  from rethinking_tf import models  # pylint: disable=import-outside-toplevel
  for name in models.MODEL_NAMES + ('mlp_2x64',):
    assert runs.paper_learning_rate(name) == models.default_learning_rate(name)


@pytest.mark.slow
def test_one_plain_run_fills_its_row(tmp_path):
  """A run made by hand, in no sweep layout, fills the row of its settings."""
  from conftest import run_module  # pylint: disable=import-outside-toplevel
  rundir = tmp_path / 'anything' / 'myrun'
  proc = run_module('rethinking_tf.train', '--dataset=digits', '--model=mlp_1x512', '--epochs=1',
                    '--quiet', f'--logdir={rundir}')
  assert proc.returncode == 0, proc.stderr
  results = json.loads((rundir / 'results.json').read_text())
  proc = subprocess.run(
      [sys.executable, 'tools/make_tables.py', f'--logdir={tmp_path}', '--table=1'],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=60)
  assert proc.returncode == 0, proc.stderr
  row = row_of(proc.stdout, 'MLP 1x512', 'no', 'no')
  assert (f'| {100 * results["train_accuracy"]:.2f} |' in row and
          f'| {100 * results["test_accuracy"]:.2f} |' in row)
  assert row.endswith('| digits, all ex, 1/1 ep |')
  assert proc.stdout.count('| missing |') == 2 * 18
