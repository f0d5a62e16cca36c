"""Figures 1 and 2 of the paper (section 3) from any directory tree of runs.

See tools/make_figures.py for what each panel shows. Titles and captions say
what is plotted and at what scale, never what should be seen; the paper's
values are reference marks labelled "paper". Missing, running, interrupted,
failed and diverged runs are listed under each panel, never drawn as
numbers; a panel with nothing to draw says "no runs". Needs matplotlib (Agg,
imported only to draw), not TensorFlow.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from collections.abc import Sequence

from rethinking_tf.results import layout
from rethinking_tf.results.layout import DATA, PAPER, scale_line, step_axis
from rethinking_tf.results.runs import Run, RunIndex, as_index
from rethinking_tf.results.tables import PAPER_TABLE1, PAPER_TABLE2

if TYPE_CHECKING:
  import matplotlib.pyplot as plt
  from matplotlib.axes import Axes

FIG1A_CONDITIONS: tuple[tuple[str, str], ...] = (
    ('figure1/inception_true', 'true labels'),
    ('figure1/inception_random_labels', 'random labels'),
    ('figure1/inception_shuffled_pixels', 'shuffled pixels'),
    ('figure1/inception_random_pixels', 'random pixels'),
    ('figure1/inception_gaussian', 'Gaussian'),
)
FIG1A_LOSS = 0.1  # "steps to reach training loss L" of Figure 1a, as public replications use
FIG1_MODELS: tuple[tuple[str, str], ...] = (('inception', 'Inception'), ('alexnet', 'Alexnet'),
                                            ('mlp_1x512', 'MLP 1x512'))
# Table 1's unregularized rows: the paper's test accuracy at p = 0 and p = 1.
FIG1_PAPER_ROWS = {m: (f'table1/{m}', f'table1/{m}_random_labels') for m, _ in FIG1_MODELS}
CORRUPTIONS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FIG2_RUNS: tuple[tuple[str, str], ...] = (
    ('figure2/inception_bn', 'Inception'),
    ('figure2/inception_nobn', 'Inception w/o BatchNorm'),
    ('figure2/inception_early_stopping', 'Inception, early stopping'),
)
FIG2_PAPER_ROWS = ('table1/inception', 'table1/inception_nobn', None)
PAPER_BARS = 'paper: Table 1 or 2 test accuracy (last; best where given)'
COLORS = ('tab:blue', 'tab:red', 'tab:green', 'tab:purple', 'tab:orange', 'tab:brown')
group = layout.group


def corrupt_run(model: str, p: float) -> str:
  """Run name of Figure 1b/c's model at corruption p, e.g. figure1/alexnet_corrupt_0.4."""
  return f'figure1/{model}_corrupt_{p:.1f}'


def paper_test_accuracy(run: str) -> float | None:
  """Table 1's or Table 2's top-1 test accuracy (%) of flags/<run>.cfg's row."""
  rows = {r.run: r.test for r in PAPER_TABLE1} | {r.run: r.test_top1 for r in PAPER_TABLE2}
  return rows.get(run)


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


def _fig1a(ax: Axes, index: RunIndex) -> tuple[list[Run], list[str]]:
  """Panel (a): training loss against steps per randomization; (runs, notes)."""
  runs = [index.get(name) for name, _ in FIG1A_CONDITIONS]
  curves = [
      r.loss_curve() if r.status in ('finished', 'running', 'incomplete', 'failed') else ([], '')
      for r in runs
  ]
  unit, xlabel = step_axis([s for points, _ in curves for s, _ in points])
  absent, resolutions = [], []
  for run, (points, resolution), (_, label), color in zip(runs, curves, FIG1A_CONDITIONS, COLORS):
    if points:
      resolutions.append(resolution)
      step, _ = run.steps_to_loss(FIG1A_LOSS)
      reached = f'loss <= {FIG1A_LOSS:g} at step {step:,}' if step else f'loss > {FIG1A_LOSS:g}'
      suffix = '' if run.status == 'finished' else f', {run.label()}'
      ax.plot([s / unit for s, _ in points], [l for _, l in points],
              color=color,
              marker='.' if len(points) < 30 else None,
              label=f'{label} ({reached}{suffix})',
              gid=DATA)
    if run.status != 'finished':
      absent.append((label, run.label()))
  by = ' and '.join(sorted(set(resolutions))) or 'epoch'
  ax.set_xlabel(xlabel)
  ax.set_ylabel(f'training loss (mean per {by})')
  ax.set_title(
      f'(a) Small Inception: training loss against steps, 5 randomizations\n'
      f'{scale_line(runs)}\nloss: mean per {by}',
      fontsize=9)
  ax.set_ylim(bottom=0)
  return runs, ['Not finished: ' + group(absent)] if absent else []


def _fig1bc(ax: Axes, index: RunIndex, panel: str) -> tuple[list[Run], list[str]]:
  """Panel (b) relative steps to fit or (c) test error, against p; (runs, notes)."""
  all_runs, absent = [], []
  for (model, label), color in zip(FIG1_MODELS, COLORS):
    runs = fit_steps(index, model)
    all_runs.extend(runs.values())
    drawn = [r for r in runs.values() if r.status == 'finished']
    name = f'{label} ({layout.run_scale(drawn)})' if drawn else label
    if panel == 'b':
      rel, why = relative_convergence(runs)
      if rel:
        ps = sorted(rel)
        thresholds = sorted({runs[p].value('fit_threshold') for p in ps} - {None})
        fit = ', '.join(f'{100 * t:g}%' for t in thresholds) or '?'
        ax.plot(ps, [rel[p] for p in ps],
                marker='o',
                color=color,
                label=f'{name}, fitted = train acc >= {fit}',
                gid=DATA)
    else:
      done = {p: r for p, r in runs.items() if r.value('test_accuracy') is not None}
      why = [(f'p={p:.1f}', r.label()) for p, r in runs.items() if r.status != 'finished']
      if done:
        ps = sorted(done)
        errors = [100 * (1 - done[p].value('test_accuracy')) for p in ps]
        fitted = [done[p].value('fit_step') is not None for p in ps]
        ax.plot(ps, errors, color=color, label=name, gid=DATA)
        for hollow in (False, True):
          pts = [(p, e) for p, e, f in zip(ps, errors, fitted) if f != hollow]
          if pts:
            ax.scatter(*zip(*pts),
                       facecolors='white' if hollow else color,
                       edgecolors=color,
                       zorder=3,
                       gid=DATA)
      for p, row in zip((0.0, 1.0), FIG1_PAPER_ROWS[model]):
        ax.plot([p], [100 - paper_test_accuracy(row)],
                'x',
                color=color,
                ms=8,
                mew=2,
                zorder=4,
                gid=PAPER)
    if why:
      absent.append(f'{label}: {group(why)}')
  ax.set_xlabel('label corruption p (fraction of labels redrawn at random)')
  ax.set_xticks(CORRUPTIONS)
  if panel == 'b':
    ax.axhline(1.0, color='0.6', lw=0.8, ls=':')
    ax.axhspan(1.0, 4.0, color='0.92', zorder=0, label='paper: about 1 to 4 (range)', gid=PAPER)
    ax.set_ylabel('steps to fit / steps to fit at p = 0')
    ax.set_title(
        '(b) Steps until training accuracy first reached the fit threshold,\n'
        'relative to p = 0, against label corruption p',
        fontsize=9)
    ax.set_ylim(bottom=0)
  else:
    ax.axhline(90.0, color='0.6', lw=0.8, ls='--', label='chance (10 classes)')
    ax.plot([], [], 'x', color='0.3', ms=8, mew=2, label='paper: Table 1 test error at p = 0, 1')
    ax.set_ylabel('test error after the last epoch (%)')
    ax.set_title(
        '(c) Test error after the last epoch against label corruption p\n'
        'filled: fit threshold reached; hollow: not reached',
        fontsize=9)
    ax.set_ylim(0, 100)
  return all_runs, ['Not drawn:'] + absent if absent else []


def figure1(runs: RunIndex | str) -> plt.Figure:
  """Figure 1: (a) loss curves, (b) relative convergence time, (c) test error vs p."""
  index = as_index(runs)
  fig, axes, keys = layout.panels(3, (16, 7.6))
  notes = []
  runs_a, note = _fig1a(axes[0], index)
  notes.append(note)
  for panel, ax in (('b', axes[1]), ('c', axes[2])):
    notes.append(_fig1bc(ax, index, panel)[1])
  fig.suptitle(
      'Figure 1 of Zhang et al. (section 3) from the runs found: randomization tests\n'
      'scale per panel (the paper: all 50,000 CIFAR-10 training images)',
      fontsize=11)
  layout.finish(fig, axes, keys, notes)
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
  if best is None:  # The evaluated epochs of metrics.csv (all, at --eval_every_epochs=1).
    rows = [r for r in run.metrics if isinstance(r.get('test_accuracy'), float)]
    if rows:
      row = max(rows, key=lambda r: r['test_accuracy'])
      best, epoch = row['test_accuracy'], row.get('epoch')
  return final, best, int(epoch) if epoch is not None else None


def _fig2a(ax: Axes, runs: list[Run]) -> list[str]:
  """Panel (a): test accuracy against steps with and without BatchNorm; its notes."""
  curves = [[(r['step'], 100 * r['test_accuracy'])
             for r in run.metrics
             if isinstance(r.get('step'), float) and isinstance(r.get('test_accuracy'), float)]
            for run in runs[:2]]
  unit, xlabel = step_axis([s for points in curves for s, _ in points])
  absent = []
  for run, points, (_, label), paper_row, color in zip(runs, curves, FIG2_RUNS, FIG2_PAPER_ROWS,
                                                       COLORS):
    if points:
      x, acc = [s / unit for s, _ in points], [a for _, a in points]
      suffix = '' if run.status == 'finished' else f' ({run.label()})'
      ax.plot(x, acc, color=color, label=label + suffix, gid=DATA)
      ax.fill_between(x, acc, _best_curve(acc), color=color, alpha=0.25, lw=0, gid=DATA)
    ax.axhline(paper_test_accuracy(paper_row), color=color, ls='--', lw=1, gid=PAPER)
    if run.status != 'finished':
      absent.append((label, run.label()))
  ax.plot([], [], '--', color='0.3', label='paper: final test accuracy (Table 1), same colour')
  ax.fill_between([], [], color='0.6', alpha=0.25, label='shaded: up to the best so far')
  ax.set_xlabel(xlabel)
  evaluated = 'evaluated epoch' if any(r.eval_every > 1 for r in runs[:2]) else 'epoch'
  ax.set_ylabel(f'test accuracy after each {evaluated} (%)')
  ax.set_title(
      '(a) Small Inception with and without BatchNorm, no crop, no weight decay:\n'
      f'test accuracy against steps; {scale_line(runs[:2])}',
      fontsize=9)
  ax.set_ylim(0, 100)
  return ['Not finished: ' + group(absent)] if absent else []


def _fig2b(ax: Axes, index: RunIndex, runs: list[Run]) -> list[Run]:
  """Panel (b): final and best test accuracy per run as bars; the runs drawn."""
  bars = [(label, run, paper) for run, (_, label), paper in zip(runs, FIG2_RUNS, FIG2_PAPER_ROWS)]
  for row in PAPER_TABLE2:
    run = index.get(row.run)
    if run.status == 'finished':
      bars.append((f'ImageNet {row.run.split("/")[-1]}', run, row.run))
  for i, (_, run, paper_row) in enumerate(bars):
    final, best, epoch = final_and_best(run) if run.status == 'finished' else (None,) * 3
    if final is None:
      ax.text(i, 2, run.label(), ha='center', va='bottom', rotation=90, fontsize=8)
      continue
    ax.bar(i - 0.2, 100 * final, 0.4, color='tab:blue', label='after the last epoch', gid=DATA)
    if best is not None:
      ax.bar(i + 0.2, 100 * best, 0.4, color='tab:orange', hatch='//', label='best epoch', gid=DATA)
      ax.text(i + 0.2, 100 * best + 1, f'ep {epoch}' if epoch else '', ha='center', fontsize=7)
    paper = paper_test_accuracy(paper_row) if paper_row else None
    if paper is not None:
      ax.hlines(paper, i - 0.4, i, color='k', lw=2, label=PAPER_BARS, gid=PAPER)
    paper_best = next((r.best_top1 for r in PAPER_TABLE2 if r.run == paper_row), None)
    if paper_best is not None:
      ax.hlines(paper_best, i, i + 0.4, color='k', lw=2, label=PAPER_BARS, gid=PAPER)
  ax.set_xticks(range(len(bars)))
  ax.set_xlim(-0.6, len(bars) - 0.4)  # every bar pair, drawn or named
  ax.set_xticklabels([label for label, _, _ in bars], rotation=20, ha='right', fontsize=8)
  ax.set_ylim(0, 100)
  ax.set_ylabel('test accuracy (%)')
  drawn = [run for _, run, _ in bars]
  ax.set_title(
      '(b) Test accuracy after the last epoch and at the best epoch (ep N)\n'
      f'{scale_line(drawn)}',
      fontsize=9)
  return drawn


def figure2(runs: RunIndex | str) -> plt.Figure:
  """Figure 2: (a) test accuracy with/without BatchNorm; (b) early stopping best vs final."""
  index = as_index(runs)
  fig, axes, keys = layout.panels(2, (13, 7.4))
  runs = [index.get(name) for name, _ in FIG2_RUNS]
  notes = [_fig2a(axes[0], runs)]
  _fig2b(axes[1], index, runs)
  notes.append([])
  fig.suptitle(
      'Figure 2 of Zhang et al. (section 3.2) from the runs found: test accuracy with and '
      'without BatchNorm;\nlast and best epoch; scale per panel (the paper: all 50,000 '
      'CIFAR-10 training images)',
      fontsize=11)
  layout.finish(fig, axes, keys, notes)
  return fig


def make_figures(logdir: str | RunIndex,
                 out: str,
                 which: Sequence[str] = ('1', '2'),
                 dpi: int = 150) -> list[str]:
  """Writes figure<N>.png and .pdf under `out`; returns their paths."""
  index = as_index(logdir)
  plt = layout.pyplot()
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
