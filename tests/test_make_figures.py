"""Tests of tools/make_figures.py on fabricated run directories."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
import make_figures  # pylint: disable=wrong-import-position

from conftest import write_run_dir  # pylint: disable=wrong-import-position


def fabricate(logdir: str, name: str, epochs: int = 5, steps_per_epoch: int = 40,
              results: dict | None = None, failed: str | None = None,
              train_size: int = 5000, target: int = 150) -> str:
  """A run directory with metrics.csv, flags.cfg and optionally results/failed."""
  metrics = [[e, e * steps_per_epoch, 0.1 * 0.95 ** e, 2.3 / e, min(1.0, 0.2 * e), 2.3 / e,
              min(1.0, 0.2 * e), 1.5, 0.5 + 0.05 * (e % 3), 10 * e] for e in range(1, epochs + 1)]
  if results is not None:
    results = dict(train_accuracy=1.0, test_accuracy=0.6, best_test_accuracy=0.65,
                   best_test_epoch=2, epochs_completed=epochs,
                   steps_completed=epochs * steps_per_epoch, fit_epoch=epochs,
                   fit_step=epochs * steps_per_epoch, trainable_params=1,
                   label_noise_fraction=0.0, wall_seconds=1.0, examples_per_second=1.0,
                   versions={}, config=dict(train_size=train_size, epochs=target)) | results
  return write_run_dir(logdir, name, flags=f'--epochs={target}\n--train_size={train_size}\n',
                       metrics=metrics, results=results, failed=failed)


def test_relative_convergence_divides_by_p0(tmp_path):
  logdir = str(tmp_path)
  for p, steps in ((0.0, 100), (0.2, 150), (0.4, 300)):
    fabricate(logdir, make_figures.corrupt_run('alexnet', p), epochs=steps // 10,
              steps_per_epoch=10, results={})
  fabricate(logdir, make_figures.corrupt_run('alexnet', 0.6), results={'fit_step': None})
  fabricate(logdir, make_figures.corrupt_run('alexnet', 0.8), failed='exit code 1\n')
  rel, why = make_figures.relative_convergence(make_figures.fit_steps(logdir, 'alexnet'))
  assert rel == pytest.approx({0.0: 1.0, 0.2: 1.5, 0.4: 3.0})
  assert why == [('p=0.6', 'never fitted in 5 ep'), ('p=0.8', 'failed'),
                 ('p=1.0', 'missing')]
  assert make_figures.group(why[1:] + [('p=0.9', 'failed')]) == (
      'failed: p=0.8, p=0.9; missing: p=1.0')


def test_relative_convergence_without_baseline(tmp_path):
  logdir = str(tmp_path)
  fabricate(logdir, make_figures.corrupt_run('mlp_1x512', 0.0), results={'fit_step': None})
  fabricate(logdir, make_figures.corrupt_run('mlp_1x512', 0.2), results={})
  rel, why = make_figures.relative_convergence(make_figures.fit_steps(logdir, 'mlp_1x512'))
  assert rel == {}
  assert why[:3] == [('p=0.0', 'never fitted in 5 ep'), ('p=0.2', 'no fit at p=0 to divide by'),
                     ('p=0.4', 'missing')]


def test_final_and_best_falls_back_to_metrics(tmp_path):
  rundir = fabricate(str(tmp_path), 'figure2/inception_bn', epochs=4, results={})
  with open(os.path.join(rundir, 'results.json')) as f:
    results = json.load(f)
  del results['best_test_accuracy'], results['best_test_epoch']
  with open(os.path.join(rundir, 'results.json'), 'w') as f:
    json.dump(results, f)
  run = make_figures.read_run(str(tmp_path), 'figure2/inception_bn')
  final, best, epoch = make_figures.final_and_best(run)
  assert final == 0.6 and best == pytest.approx(0.6) and epoch == 2


def test_figures_with_mixed_runs(tmp_path):
  """Finished, running, failed and missing runs together; all files written."""
  logdir = str(tmp_path / 'runs')
  names = [n for n, _ in make_figures.FIG1A_CONDITIONS]
  fabricate(logdir, names[0], results={})
  fabricate(logdir, names[1], epochs=3)  # incomplete
  fabricate(logdir, names[2], epochs=2, failed='exit code 1\nboom\n')
  # names[3], names[4] missing
  for model, _ in make_figures.FIG1_MODELS:
    for i, p in enumerate(make_figures.CORRUPTIONS[:4]):
      fabricate(logdir, make_figures.corrupt_run(model, p), epochs=3 + i, results={})
  fabricate(logdir, 'figure2/inception_bn', epochs=6, target=100, results={})
  fabricate(logdir, 'figure2/inception_nobn', epochs=2, target=100)
  fabricate(logdir, 'table2/inception_v3_wd', epochs=3, target=100, train_size=0,
            results={})
  out = str(tmp_path / 'figs')
  paths = make_figures.make_figures(logdir, out, dpi=40)
  assert sorted(os.path.basename(p) for p in paths) == [
      'figure1.pdf', 'figure1.png', 'figure2.pdf', 'figure2.png']
  for path in paths:
    assert os.path.getsize(path) > 1000


def test_figures_on_empty_logdir_and_cli(tmp_path, capsys):
  logdir = tmp_path / 'empty'
  logdir.mkdir()
  assert make_figures.main([f'--logdir={logdir}', f'--out={tmp_path / "o"}',
                            '--figures=2', '--dpi=30']) == 0
  assert capsys.readouterr().out.split() == [str(tmp_path / 'o' / 'figure2.png'),
                                             str(tmp_path / 'o' / 'figure2.pdf')]
  assert make_figures.main([f'--logdir={tmp_path / "nope"}', f'--out={tmp_path}']) == 2


def test_scale_text():
  runs = [make_figures.Run('a', '/x', 'finished', flags={'train_size': '5000', 'epochs': '150'}),
          make_figures.Run('b', '/y', 'missing')]
  assert make_figures.scale_text(runs) == (
      'training examples per run: 5,000 (paper: all); epochs asked: 150')
  assert make_figures.scale_text([runs[1]]) == 'no runs found'
