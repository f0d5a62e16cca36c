"""Figure layout shared by Figures 1 and 2 (section 3): scale captions, step
axes, legends outside the data and the notes on runs not drawn.

Every panel is an axes over a key axes (no frame) holding its legend and
notes, so no legend covers data. Artists drawn from runs carry gid DATA,
the paper's values gid PAPER; a panel without DATA artists says "no runs".
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING
from collections.abc import Sequence

from rethinking_tf.results.runs import Run

if TYPE_CHECKING:
  import matplotlib.pyplot as plt
  from matplotlib.axes import Axes

DATA, PAPER = 'data', 'paper'
NO_RUNS = 'no runs'
THOUSANDS_ABOVE = 5000  # steps: a step axis in thousands beyond this many


def pyplot():
  """matplotlib.pyplot on the Agg backend, imported only when drawing."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot  # pylint: disable=import-outside-toplevel
  return matplotlib.pyplot


def group(items: Sequence[tuple[str, str]]) -> str:
  """'missing: a, b; failed: c' from (item, status) pairs, in first-seen order."""
  by_status: dict[str, list[str]] = {}
  for item, status in items:
    by_status.setdefault(status, []).append(item)
  return '; '.join(f'{status}: {", ".join(names)}' for status, names in by_status.items())


def step_axis(steps: Sequence[float]) -> tuple[int, str]:
  """(divisor, x label) for a step axis: steps, or thousands beyond THOUSANDS_ABOVE."""
  if steps and max(steps) > THOUSANDS_ABOVE:
    return 1000, 'training steps (thousands)'
  return 1, 'training steps'


def examples(run: Run) -> str:
  """Training examples of a run: results.json's num_train, else --train_size."""
  num = run.results.get('num_train') if run.results else None
  if isinstance(num, int) and num > 0:
    return f'{num:,}' if run.train_size else f'all {num:,}'
  size = run.train_size
  return '?' if size is None else ('all' if size == 0 else f'{size:,}')


def _span(values: Sequence[int]) -> str:
  values = sorted(set(values))
  if not values:
    return '?'
  return f'{values[0]:,}' if len(values) == 1 else f'{values[0]:,}-{values[-1]:,}'


def _present(runs: Sequence[Run]) -> list[Run]:
  return [r for r in runs if r.status != 'missing' and r.config is not None]


def _evaluated_every(runs: Sequence[Run], unit: str) -> str:
  """', evaluated every 5 ep' when a run evaluated every K > 1 epochs (else '')."""
  every = [r.eval_every for r in runs if r.eval_every > 1]
  return f', evaluated every {_span(every)} {unit}' if every else ''


def run_scale(runs: Sequence[Run]) -> str:
  """Short scale of one model's runs, e.g. '1,000 ex, 60 ep asked' (then
  ', evaluated every 5 ep' for runs with --eval_every_epochs=5)."""
  runs = _present(runs)
  sizes = ', '.join(sorted({examples(r) for r in runs}))
  asked = _span([r.epochs_target for r in runs if r.epochs_target is not None])
  return f'{sizes} ex, {asked} ep asked{_evaluated_every(runs, "ep")}'


def scale_line(runs: Sequence[Run]) -> str:
  """A panel's scale: training examples, epochs asked and epochs and steps run
  (then the evaluation interval of runs that did not evaluate every epoch)."""
  runs = _present(runs)
  if not runs:
    return 'no runs found'
  sizes = ', '.join(sorted({examples(r) for r in runs}))
  asked = _span([r.epochs_target for r in runs if r.epochs_target is not None])
  done = _span([r.epochs_done for r in runs])
  steps = _span([
      int(r.metrics[-1]['step'])
      for r in runs
      if r.metrics and isinstance(r.metrics[-1].get('step'), float)
  ])
  return (f'{sizes} training examples; {asked} epochs asked; {done} epochs, {steps} steps run'
          f'{_evaluated_every(runs, "epochs")}')


def panels(n: int, size: tuple[float, float]) -> tuple[plt.Figure, list[Axes], list[Axes]]:
  """A figure of `n` panels, each over a frameless key axes: (figure, panels, keys)."""
  fig, grid = pyplot().subplots(2, n, figsize=size, height_ratios=(3.2, 1.1), squeeze=False)
  for key in grid[1]:
    key.set_axis_off()
  return fig, list(grid[0]), list(grid[1])


def has_data(ax: Axes) -> bool:
  """Whether the panel holds an artist drawn from a run."""
  return any(child.get_gid() == DATA for child in ax.get_children())


def finish(fig: plt.Figure, axes: Sequence[Axes], keys: Sequence[Axes],
           notes: Sequence[list[str]]) -> None:
  """Says "no runs" on empty panels, moves each legend into its key axes with
  the panel's notes (runs not drawn) under it, and lays the figure out."""
  legends = []
  for ax, key in zip(axes, keys):
    if not has_data(ax):
      ax.text(0.5, 0.5, NO_RUNS, transform=ax.transAxes, ha='center', va='center', color='0.4')
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    legends.append(
        key.legend(unique.values(),
                   unique.keys(),
                   loc='upper left',
                   fontsize=8,
                   frameon=False,
                   borderaxespad=0) if unique else None)
  fig.tight_layout()
  fig.canvas.draw()
  for key, legend, lines in zip(keys, legends, notes):
    if not lines:
      continue
    top = 1.0
    if legend is not None:
      box = legend.get_window_extent().transformed(key.transAxes.inverted())
      top = box.y0 - 0.04
    text = '\n'.join(textwrap.fill(line, 70, subsequent_indent='    ') for line in lines)
    key.text(0, top, text, transform=key.transAxes, fontsize=7, va='top', ha='left', color='0.25')
