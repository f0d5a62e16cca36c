"""Tests of tools/make_figures.py on fabricated run directories."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
import make_figures  # pylint: disable=wrong-import-position
from rethinking_tf.results import figures  # pylint: disable=wrong-import-position
from rethinking_tf.results import layout  # pylint: disable=wrong-import-position
from rethinking_tf.results import runs as runs_lib  # pylint: disable=wrong-import-position

from conftest import flagfile_config, write_run_dir  # pylint: disable=wrong-import-position


def fabricate(logdir: str,
              name: str,
              epochs: int = 5,
              steps_per_epoch: int = 40,
              results: dict | None = None,
              failed: str | None = None,
              train_size: int = 5000,
              target: int = 150,
              flagfile: str | None = None) -> str:
  """A run directory with metrics.csv, flags.cfg and optionally results/failed."""
  metrics = [[
      e, e * steps_per_epoch, 0.1 * 0.95**e, 2.3 / e,
      min(1.0, 0.2 * e), 2.3 / e,
      min(1.0, 0.2 * e), 1.5, 0.5 + 0.05 * (e % 3), 10 * e
  ] for e in range(1, epochs + 1)]
  if results is not None:
    results = dict(train_accuracy=1.0,
                   test_accuracy=0.6,
                   best_test_accuracy=0.65,
                   best_test_epoch=2,
                   epochs_completed=epochs,
                   steps_completed=epochs * steps_per_epoch,
                   fit_epoch=epochs,
                   fit_step=epochs * steps_per_epoch,
                   trainable_params=1,
                   label_noise_fraction=0.0,
                   wall_seconds=1.0,
                   examples_per_second=1.0,
                   versions={}) | results
  config = flagfile_config(flagfile or name, train_size=train_size or None, epochs=target)
  return write_run_dir(logdir, name, config=config, metrics=metrics, results=results, failed=failed)


def test_relative_convergence_divides_by_p0(tmp_path):
  logdir = str(tmp_path)
  for p, steps in ((0.0, 100), (0.2, 150), (0.4, 300)):
    fabricate(logdir,
              figures.corrupt_run('alexnet', p),
              epochs=steps // 10,
              steps_per_epoch=10,
              results={})
  fabricate(logdir, figures.corrupt_run('alexnet', 0.6), results={'fit_step': None})
  fabricate(logdir, figures.corrupt_run('alexnet', 0.8), failed='exit code 1\n')
  rel, why = figures.relative_convergence(figures.fit_steps(logdir, 'alexnet'))
  assert rel == pytest.approx({0.0: 1.0, 0.2: 1.5, 0.4: 3.0})
  assert why == [('p=0.6', 'never fitted in 5 ep'), ('p=0.8', 'failed'), ('p=1.0', 'missing')]
  assert figures.group(why[1:] + [('p=0.9', 'failed')]) == ('failed: p=0.8, p=0.9; missing: p=1.0')


def test_relative_convergence_without_baseline(tmp_path):
  logdir = str(tmp_path)
  fabricate(logdir, figures.corrupt_run('mlp_1x512', 0.0), results={'fit_step': None})
  fabricate(logdir, figures.corrupt_run('mlp_1x512', 0.2), results={})
  rel, why = figures.relative_convergence(figures.fit_steps(logdir, 'mlp_1x512'))
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
  run = runs_lib.read_run(rundir)
  final, best, epoch = figures.final_and_best(run)
  assert final == 0.6 and best == pytest.approx(0.6) and epoch == 2


def test_figures_with_mixed_runs(tmp_path):
  """Finished, running, failed and missing runs together; all files written."""
  logdir = str(tmp_path / 'runs')
  names = [n for n, _ in figures.FIG1A_CONDITIONS]
  fabricate(logdir, names[0], results={})
  fabricate(logdir, names[1], epochs=3)  # incomplete
  fabricate(logdir, names[2], epochs=2, failed='exit code 1\nboom\n')
  # names[3], names[4] missing
  for model, _ in figures.FIG1_MODELS:
    for i, p in enumerate(figures.CORRUPTIONS[:4]):
      fabricate(logdir, figures.corrupt_run(model, p), epochs=3 + i, results={})
  fabricate(logdir, 'figure2/inception_bn', epochs=6, target=100, results={})
  fabricate(logdir, 'figure2/inception_nobn', epochs=2, target=100)
  fabricate(logdir, 'table2/inception_v3_wd', epochs=3, target=100, train_size=0, results={})
  out = str(tmp_path / 'figs')
  paths = figures.make_figures(logdir, out, dpi=40)
  assert sorted(os.path.basename(p) for p in paths) == [
      'figure1.pdf', 'figure1.png', 'figure2.pdf', 'figure2.png'
  ]
  for path in paths:
    assert os.path.getsize(path) > 1000


def test_cli_and_a_tree_without_matching_runs(tmp_path, capsys):
  """No run matching a condition: one stderr line, exit 1, --out not created."""
  logdir = tmp_path / 'runs'
  fabricate(str(logdir), 'table1/mlp_1x512', results={})  # fills no figure condition
  with pytest.raises(SystemExit) as exit_info:
    make_figures.main([f'--logdir={logdir}', f'--out={tmp_path / "o"}', '--figures=2'])
  assert exit_info.value.code == 1 and not (tmp_path / 'o').exists()
  err = capsys.readouterr().err.strip()
  assert err == (f'error: no run under --logdir={logdir} matches a condition of Figure 2 '
                 '(1 run directories found; a run is a directory holding config.json)')
  fabricate(str(logdir), 'elsewhere/bn', results={}, flagfile='figure2/inception_bn')
  assert make_figures.main(
      [f'--logdir={logdir}', f'--out={tmp_path / "o"}', '--figures=2', '--dpi=30']) == 0
  captured = capsys.readouterr()
  assert captured.out.split() == [
      str(tmp_path / 'o' / 'figure2.png'),
      str(tmp_path / 'o' / 'figure2.pdf')
  ]
  assert captured.err == (f'note: 1 of 2 runs under {logdir} match no condition of '
                          'Figure 2: table1/mlp_1x512\n')


def test_any_tree_is_drawn_by_settings(tmp_path):
  """Runs in a layout of the user's own fill the conditions their settings match."""
  logdir = str(tmp_path)
  fabricate(logdir, 'mine/first try', results={}, flagfile='figure1/inception_true')
  fabricate(logdir,
            'mine/noisy',
            results={'fit_step': 400},
            flagfile=figures.corrupt_run('alexnet', 0.4))
  fabricate(logdir,
            'mine/clean',
            results={'fit_step': 200},
            flagfile=figures.corrupt_run('alexnet', 0.0))
  index = runs_lib.RunIndex(logdir)
  runs = figures.fit_steps(index, 'alexnet')
  assert runs[0.4].name == 'mine/noisy' and runs[0.0].name == 'mine/clean'
  rel, _ = figures.relative_convergence(runs)
  assert rel == pytest.approx({0.0: 1.0, 0.4: 2.0})
  fig = figures.figure1(index)
  lines = {l.get_label(): l for l in fig.axes[0].lines}
  assert list(lines) == ['true labels (loss > 0.1)']
  assert list(lines['true labels (loss > 0.1)'].get_ydata()) == pytest.approx(
      [2.3 / e for e in range(1, 6)])
  alexnet = [l for l in fig.axes[1].lines if l.get_label().startswith('Alexnet')]
  assert len(alexnet) == 1 and list(alexnet[0].get_ydata()) == pytest.approx([1.0, 2.0])
  # An unregularized true-label run also fills p = 0 of Figure 1b (labels=corrupted
  # with p = 0 is the same run), and its own condition once.
  assert figures.fit_steps(index, 'inception')[0.0].name == 'mine/first try'


def test_scale_line():
  runs = [
      runs_lib.Run('a',
                   '/x',
                   'finished',
                   config={
                       'train_size': 0,
                       'epochs': 150
                   },
                   results={'num_train': 50000},
                   metrics=[{
                       'step': 391.0
                   }, {
                       'step': 782.0
                   }]),
      runs_lib.Run('b',
                   '/y',
                   'incomplete',
                   config={
                       'train_size': 1000,
                       'epochs': 60
                   },
                   metrics=[{
                       'step': 8.0
                   }]),
      runs_lib.Run('c', '/z', 'missing')
  ]
  assert layout.scale_line(runs) == ('1,000, all 50,000 training examples; 60-150 epochs asked; '
                                     '1-2 epochs, 8-782 steps run')
  assert layout.run_scale(runs[:1]) == 'all 50,000 ex, 150 ep asked'
  assert layout.scale_line([runs[2]]) == 'no runs found'


# Words of the paper's claims that no title, caption or legend may carry.
CLAIM_WORDS = ('only', 'moves', 'still', 'perfectly', 'stabiliz', 'slower', 'faster', 'helps',
               'no gain', 'rises', 'fails', 'memoriz', 'easily', 'generaliz', 'small factor',
               'clearly', 'as expected', 'no benefit')


def texts(fig) -> list[str]:
  """Every caption of a figure: its title, panel titles, axis labels, texts and legends."""
  out = [fig.get_suptitle()] + [t.get_text() for t in fig.texts]
  for ax in fig.axes:
    out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    out += [t.get_text() for t in ax.texts]
    if ax.get_legend():
      out += [t.get_text() for t in ax.get_legend().get_texts()]
  return [t for t in out if t]


def check_figure(fig) -> tuple[list[bool], str]:
  """Asserts no claim words, data or "no runs" per panel, legends outside the data;
  returns (which panels have data, all text)."""
  text = '\n'.join(texts(fig))
  assert not [w for w in CLAIM_WORDS if w in text.lower()], text
  panels = [ax for ax in fig.axes if ax.axison]
  fig.canvas.draw()
  drawn = []
  for ax in panels:
    assert ax.get_legend() is None  # legends go to the key axes under the panel
    drawn.append(layout.has_data(ax))
    assert drawn[-1] or layout.NO_RUNS in [t.get_text() for t in ax.texts]
  for key in (ax for ax in fig.axes if not ax.axison):
    if key.get_legend():
      box = key.get_legend().get_window_extent()
      assert not any(box.overlaps(ax.get_window_extent()) for ax in panels)
  return drawn, text


def mixed_tree(logdir: str) -> None:
  """Finished, incomplete, failed and missing runs of both figures."""
  names = [n for n, _ in figures.FIG1A_CONDITIONS]
  fabricate(logdir, names[0], results={}, train_size=1000, target=60)
  fabricate(logdir, names[1], epochs=3)  # incomplete
  fabricate(logdir, names[2], epochs=2, failed='exit code 1\nboom\n')
  for model, _ in figures.FIG1_MODELS:
    for i, p in enumerate(figures.CORRUPTIONS[:4]):
      fabricate(logdir, figures.corrupt_run(model, p), epochs=3 + i, results={})
  fabricate(logdir, 'figure2/inception_bn', epochs=6, target=100, results={})
  fabricate(logdir, 'figure2/inception_nobn', epochs=2, target=100)
  fabricate(logdir, 'table2/inception_v3_wd', epochs=3, target=100, train_size=0, results={})


def test_captions_state_scale_and_paper_marks(tmp_path):
  """Titles say what is plotted at what scale, no claim; the paper's values are marks."""
  mixed_tree(str(tmp_path))
  index = runs_lib.RunIndex(str(tmp_path))
  fig1 = figures.figure1(index)
  drawn, text = check_figure(fig1)
  assert drawn == [True, True, True]
  assert '1,000, 5,000 training examples; 60-150 epochs asked; 2-5 epochs, 80-200 steps' in text
  assert 'training steps' in text and 'thousands' not in text  # 200 steps at most
  assert 'mean per epoch (metrics.csv)' in text
  assert 'paper: Table 1 test error at p = 0, 1' in text
  paper = [l for l in fig1.axes[2].lines if l.get_gid() == layout.PAPER]
  assert sorted(l.get_ydata()[0] for l in paper) == pytest.approx(
      sorted([100 - 85.75, 100 - 76.07, 100 - 50.51, 100 - 9.78, 100 - 9.86, 100 - 10.61]))
  fig2 = figures.figure2(index)
  drawn, text = check_figure(fig2)
  assert drawn == [True, True]
  assert 'Not finished: incomplete (2/100 ep): Inception w/o BatchNorm' in text
  marks = [c for c in fig2.axes[1].collections if c.get_gid() == layout.PAPER]
  # Inception's and ImageNet inception_v3_wd's final, and the latter's best (Table 2).
  assert sorted(s[0][1] for c in marks for s in c.get_segments()) == [67.18, 72.57, 85.75]


def test_empty_panels_say_no_runs(tmp_path):
  fabricate(str(tmp_path), 'figure2/inception_bn', results={})
  index = runs_lib.RunIndex(str(tmp_path))
  drawn, text = check_figure(figures.figure1(index))
  assert drawn == [False, False, False] and 'no runs found' in text
  fig2 = figures.figure2(index)
  drawn, _ = check_figure(fig2)
  assert drawn == [True, True]
  # The unfinished runs' bar places stay in view, their status written there.
  assert fig2.axes[1].get_xlim() == (-0.6, 2.6)
  assert [t.get_text() for t in fig2.axes[1].texts if t.get_rotation() == 90] == ['missing'] * 2


def test_step_axis_in_thousands_beyond_5000_steps(tmp_path):
  assert layout.step_axis([100, 5000]) == (1, 'training steps')
  assert layout.step_axis([6000]) == (1000, 'training steps (thousands)')
  assert layout.step_axis([]) == (1, 'training steps')
  fabricate(str(tmp_path), 'figure1/inception_true', steps_per_epoch=2000, results={})
  fig = figures.figure1(runs_lib.RunIndex(str(tmp_path)))
  assert fig.axes[0].get_xlabel() == 'training steps (thousands)'
  assert list(fig.axes[0].lines[0].get_xdata()) == [2, 4, 6, 8, 10]


def write_steps(rundir: str, rows: list[tuple]) -> None:
  with open(os.path.join(rundir, runs_lib.STEPS), 'w', newline='') as f:
    csv.writer(f).writerows([('step', 'epoch', 'train_loss', 'train_accuracy'), *rows])


def test_figure1a_from_steps_csv(tmp_path):
  """steps.csv, when present, gives Figure 1a's curve and steps to loss L at its window."""
  logdir = str(tmp_path)
  true = fabricate(logdir, 'figure1/inception_true', epochs=2, results={})
  write_steps(true, [(s, 1 + (s - 1) // 40, 2.0 / s, min(1.0, s / 60)) for s in range(10, 81, 10)])
  with open(os.path.join(true, 'config.json')) as f:
    config = json.load(f)
  with open(os.path.join(true, 'config.json'), 'w') as f:  # the flagfile's 50, as --set would
    json.dump(config | {'log_every_steps': 10}, f)
  fabricate(logdir, 'figure1/inception_gaussian', epochs=5, results={})  # metrics.csv only
  index = runs_lib.RunIndex(logdir)
  run = index.get('figure1/inception_true')
  assert run.steps_to_loss(0.1) == (20, '10-step window (steps.csv)')
  assert run.steps_to_loss(0.01) == (None, '10-step window (steps.csv)')
  assert index.get('figure1/inception_gaussian').steps_to_loss(0.5) == (200, 'epoch (metrics.csv)')
  fig = figures.figure1(index)
  lines = {l.get_label(): l for l in fig.axes[0].lines}
  assert list(lines) == ['true labels (loss <= 0.1 at step 20)', 'Gaussian (loss > 0.1)']
  true_line = lines['true labels (loss <= 0.1 at step 20)']
  assert list(true_line.get_xdata()) == list(range(10, 81, 10))
  assert list(true_line.get_ydata()) == pytest.approx([2.0 / s for s in range(10, 81, 10)])
  assert ('mean per 10-step window (steps.csv) and epoch (metrics.csv)' in fig.axes[0].get_ylabel())
  check_figure(fig)
  # --log_every_steps in config.json names the window even where the first row is later.
  with open(os.path.join(true, 'config.json')) as f:
    config = json.load(f)
  with open(os.path.join(true, 'config.json'), 'w') as f:
    json.dump(config | {'log_every_steps': 5}, f)
  assert runs_lib.read_run(true).loss_curve()[1] == '5-step window (steps.csv)'
