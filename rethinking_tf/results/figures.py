"""Figures 1 and 2 of the paper (section 3) from any directory tree of runs.

See tools/make_figures.py for what each panel shows. Missing, running,
interrupted, failed and diverged runs are listed under each panel, never
drawn as numbers. Needs matplotlib (Agg, imported only to draw), not
TensorFlow.
"""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING
from collections.abc import Sequence

from rethinking_tf.results.runs import Run, RunIndex, as_index
from rethinking_tf.results.tables import PAPER_TABLE2

if TYPE_CHECKING:
  import matplotlib.pyplot as plt


def _pyplot():
  """matplotlib.pyplot on the Agg backend, imported only when drawing."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot  # pylint: disable=import-outside-toplevel
  return matplotlib.pyplot


FIG1A_CONDITIONS: tuple[tuple[str, str], ...] = (
    ('figure1/inception_true', 'true labels'),
    ('figure1/inception_random_labels', 'random labels'),
    ('figure1/inception_shuffled_pixels', 'shuffled pixels'),
    ('figure1/inception_random_pixels', 'random pixels'),
    ('figure1/inception_gaussian', 'Gaussian'),
)
FIG1_MODELS: tuple[tuple[str, str], ...] = (('inception', 'Inception'), ('alexnet', 'Alexnet'),
                                            ('mlp_1x512', 'MLP 1x512'))
CORRUPTIONS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FIG2_RUNS: tuple[tuple[str, str], ...] = (
    ('figure2/inception_bn', 'Inception'),
    ('figure2/inception_nobn', 'Inception w/o BatchNorm'),
    ('figure2/inception_early_stopping', 'Inception, early stopping'),
)
COLORS = ('tab:blue', 'tab:red', 'tab:green', 'tab:purple', 'tab:orange', 'tab:brown')


def corrupt_run(model: str, p: float) -> str:
  """Run name of Figure 1b/c's model at corruption p, e.g. figure1/alexnet_corrupt_0.4."""
  return f'figure1/{model}_corrupt_{p:.1f}'


def group(items: Sequence[tuple[str, str]]) -> str:
  """'missing: a, b; failed: c' from (item, status) pairs, in first-seen order."""
  by_status: dict[str, list[str]] = {}
  for item, status in items:
    by_status.setdefault(status, []).append(item)
  return '; '.join(f'{status}: {", ".join(names)}' for status, names in by_status.items())


def _place_notes(fig: plt.Figure, notes: dict, top: float) -> None:
  """Writes each panel's notes (absent or partial runs) under it, from `top` down."""
  for ax, lines in notes.items():
    if lines:
      text = '\n'.join(textwrap.fill(line, 62, subsequent_indent='    ') for line in lines)
      fig.text(ax.get_position().x0, top, text, fontsize=7, va='top', ha='left', color='0.25')


def scale_text(runs: Sequence[Run]) -> str:
  """One line on the training-set size and epochs of the runs drawn."""
  sizes = sorted({r.train_size for r in runs if r.status != 'missing' and r.train_size is not None})
  if not sizes:
    return 'no runs found'
  size = ', '.join('all' if s == 0 else f'{s:,}' for s in sizes)
  epochs = sorted({r.epochs_target for r in runs if r.epochs_target is not None})
  return (f'training examples per run: {size} (paper: all); '
          f'epochs asked: {", ".join(map(str, epochs)) or "?"}')


def fit_steps(runs: RunIndex | str, model: str) -> dict[float, Run]:
  """Figure 1b/c runs of one model by corruption p."""
  index = as_index(runs)
  return {p: index.get(corrupt_run(model, p)) for p in CORRUPTIONS}


def conditions(which: Sequence[str]) -> list[str]:
  """The flagfile names whose runs figures `which` ('1', '2') draw."""
  names = []
  if '1' in which:
    names += [n for n, _ in FIG1A_CONDITIONS]
    names += [corrupt_run(m, p) for m, _ in FIG1_MODELS for p in CORRUPTIONS]
  if '2' in which:
    names += [n for n, _ in FIG2_RUNS] + [r.run for r in PAPER_TABLE2]
  return names


def relative_convergence(
    runs: dict[float, Run]) -> tuple[dict[float, float], list[tuple[str, str]]]:
  """fit_step(p) / fit_step(0) for every p that has both.

  Returns:
    ({p: relative time}, [(f'p={p}', why it is not drawn)]).
  """

  def fit(run: Run) -> float | None:
    value = run.value('fit_step')
    return value if value and value > 0 else None

  base = fit(runs[0.0])
  out, why = {}, []
  for p, run in runs.items():
    step = fit(run)
    if run.status != 'finished':
      why.append((f'p={p:.1f}', run.label()))
    elif step is None:
      why.append((f'p={p:.1f}', f'never fitted in {run.epochs_done} ep'))
    elif base is not None:
      out[p] = step / base
    else:
      why.append((f'p={p:.1f}', 'no fit at p=0 to divide by'))
  return out, why


def figure1(runs: RunIndex | str) -> plt.Figure:
  """Figure 1: (a) loss curves, (b) relative convergence time, (c) test error vs p."""
  index = as_index(runs)
  fig, axes = _pyplot().subplots(1, 3, figsize=(16, 6.2))
  all_runs, notes = [], {}

  ax = axes[0]
  absent = []
  for (name, label), color in zip(FIG1A_CONDITIONS, COLORS):
    run = index.get(name)
    all_runs.append(run)
    rows = [
        r for r in run.metrics
        if isinstance(r.get('step'), float) and isinstance(r.get('train_loss'), float)
    ]
    if rows and run.status in ('finished', 'running', 'incomplete', 'failed'):
      suffix = '' if run.status == 'finished' else f' ({run.label()})'
      ax.plot([r['step'] / 1000 for r in rows], [r['train_loss'] for r in rows],
              color=color,
              marker='.' if len(rows) < 30 else None,
              label=label + suffix)
    if run.status != 'finished':
      absent.append((label, run.label()))
  ax.set_xlabel('thousands of training steps')
  ax.set_ylabel('average training loss over the epoch')
  ax.set_title('(a) Small Inception: training loss per input/label randomization', fontsize=10)
  ax.set_ylim(bottom=0)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
  notes[ax] = ['Not finished: ' + group(absent)] if absent else []

  for panel, ax in (('b', axes[1]), ('c', axes[2])):
    absent = []
    for (model, label), color in zip(FIG1_MODELS, COLORS):
      runs = fit_steps(index, model)
      all_runs.extend(runs.values())
      if panel == 'b':
        rel, why = relative_convergence(runs)
        if rel:
          ps = sorted(rel)
          thresholds = sorted({runs[p].value('fit_threshold') for p in ps} - {None})
          fit = ', '.join(f'{100 * t:g}%' for t in thresholds) or '?'
          ax.plot(ps, [rel[p] for p in ps],
                  marker='o',
                  color=color,
                  label=f'{label} (fitted = train acc >= {fit})')
        if why:
          absent.append(f'{label}: {group(why)}')
      else:
        done = {
            p: r
            for p, r in runs.items()
            if r.status == 'finished' and r.value('test_accuracy') is not None
        }
        if done:
          ps = sorted(done)
          errors = [100 * (1 - done[p].value('test_accuracy')) for p in ps]
          ax.plot(ps, errors, color=color, label=label)
          fitted = [r.value('fit_step') is not None for r in (done[p] for p in ps)]
          ax.scatter([p for p, f in zip(ps, fitted) if f], [e for e, f in zip(errors, fitted) if f],
                     color=color,
                     zorder=3)
          ax.scatter([p for p, f in zip(ps, fitted) if not f],
                     [e for e, f in zip(errors, fitted) if not f],
                     facecolors='white',
                     edgecolors=color,
                     zorder=3)
        why = [(f'p={p:.1f}', r.label()) for p, r in runs.items() if r.status != 'finished']
        if why:
          absent.append(f'{label}: {group(why)}')
    ax.set_xlabel('label corruption p (fraction of labels redrawn at random)')
    ax.set_xticks(CORRUPTIONS)
    if panel == 'b':
      ax.axhline(1.0, color='0.6', lw=0.8, ls=':')
      ax.set_ylabel('steps to fit / steps to fit at p = 0')
      ax.set_title('(b) Convergence slowdown (paper: about 1-4x)', fontsize=10)
      ax.set_ylim(bottom=0)
    else:
      ax.axhline(90.0, color='0.6', lw=0.8, ls='--', label='chance (10 classes)')
      ax.set_ylabel('test error at the end of training (%)')
      ax.set_title(
          '(c) Test error (paper: rises to ~90% as p -> 1)\n'
          'hollow = run ended without fitting',
          fontsize=10)
      ax.set_ylim(0, 100)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
    notes[ax] = ['Not drawn:'] + absent if absent else []
  fig.suptitle('Figure 1 (Zhang et al.): CIFAR-10 networks fit random labels and random '
               'inputs, only a small factor slower\n' + scale_text(all_runs),
               fontsize=11)
  fig.tight_layout(rect=(0, 0.2, 1, 1))
  _place_notes(fig, notes, 0.14)
  return fig


def _best_curve(values: Sequence[float]) -> list[float]:
  best, out = float('-inf'), []
  for v in values:
    best = max(best, v)
    out.append(best)
  return out


def final_and_best(run: Run) -> tuple[float | None, float | None, int | None]:
  """(final, best-during-training) test accuracy and the best epoch of a finished run."""
  final = run.value('test_accuracy')
  best = run.value('best_test_accuracy')
  epoch = run.value('best_test_epoch')
  if best is None:
    accs = [r['test_accuracy'] for r in run.metrics if isinstance(r.get('test_accuracy'), float)]
    if accs:
      best = max(accs)
      epoch = accs.index(best) + 1
  return final, best, int(epoch) if epoch is not None else None


def figure2(runs: RunIndex | str) -> plt.Figure:
  """Figure 2: (a) test accuracy with/without BatchNorm; (b) early stopping best vs final."""
  index = as_index(runs)
  fig, axes = _pyplot().subplots(1, 2, figsize=(13, 6.0))
  ax = axes[0]
  runs = [index.get(name) for name, _ in FIG2_RUNS]
  absent = []
  for run, (_, label), color in zip(runs[:2], FIG2_RUNS[:2], COLORS):
    rows = [
        r for r in run.metrics
        if isinstance(r.get('step'), float) and isinstance(r.get('test_accuracy'), float)
    ]
    if rows:
      x = [r['step'] / 1000 for r in rows]
      acc = [100 * r['test_accuracy'] for r in rows]
      suffix = '' if run.status == 'finished' else f' ({run.label()})'
      ax.plot(x, acc, color=color, label=label + suffix)
      ax.fill_between(x, acc, _best_curve(acc), color=color, alpha=0.25, lw=0)
    if run.status != 'finished':
      absent.append((label, run.label()))
  ax.set_xlabel('thousands of training steps')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title(
      '(a) CIFAR-10, small Inception, no crop, no weight decay\n'
      'shaded: gap to the best test accuracy so far (what early stopping could '
      'gain)',
      fontsize=10)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8, loc='lower right')
  notes = {ax: ['Not finished: ' + group(absent)] if absent else []}

  ax = axes[1]
  bars = [(label, run) for run, (_, label) in zip(runs, FIG2_RUNS)]
  for row in PAPER_TABLE2:
    run = index.get(row.run)
    if run.status == 'finished':
      bars.append((f'ImageNet {row.run.split("/")[-1]}', run))
  for i, (_, run) in enumerate(bars):
    final, best, epoch = final_and_best(run) if run.status == 'finished' else (None,) * 3
    if final is None:
      ax.text(i, 2, run.label(), ha='center', va='bottom', rotation=90, fontsize=8)
      continue
    ax.bar(i - 0.2, 100 * final, 0.4, color='tab:blue', label='final')
    if best is not None:
      ax.bar(i + 0.2, 100 * best, 0.4, color='tab:orange', hatch='//', label='best during training')
      ax.text(i + 0.2, 100 * best + 1, f'ep {epoch}' if epoch else '', ha='center', fontsize=7)
  handles, labels = ax.get_legend_handles_labels()
  unique = dict(zip(labels, handles))
  if unique:
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc='lower right')
  ax.set_xticks(range(len(bars)))
  ax.set_xticklabels([label for label, _ in bars], rotation=20, ha='right', fontsize=8)
  ax.set_ylim(0, 100)
  ax.set_ylabel('test accuracy (%)')
  ax.set_title(
      '(b) Early stopping: final vs best test accuracy during training\n'
      '(paper: no gain on CIFAR-10; a few points on ImageNet)',
      fontsize=10)
  fig.suptitle('Figure 2 (Zhang et al.): implicit regularizers. BatchNorm stabilizes '
               'training and moves test accuracy only 3-4 points\n' + scale_text(runs),
               fontsize=11)
  fig.tight_layout(rect=(0, 0.1, 1, 1))
  _place_notes(fig, notes, 0.06)
  return fig


def make_figures(logdir: str | RunIndex,
                 out: str,
                 which: Sequence[str] = ('1', '2'),
                 dpi: int = 150) -> list[str]:
  """Writes figure<N>.png and .pdf under `out`; returns their paths."""
  index = as_index(logdir)
  plt = _pyplot()
  os.makedirs(out, exist_ok=True)
  paths = []
  for key, build in (('1', figure1), ('2', figure2)):
    if key not in which:
      continue
    fig = build(index)
    for ext in ('png', 'pdf'):
      path = os.path.join(out, f'figure{key}.{ext}')
      fig.savefig(path, dpi=dpi)
      paths.append(path)
    plt.close(fig)
  return paths
