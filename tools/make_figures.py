#!/usr/bin/env python
"""Figures 1 and 2 of the paper (section 3) from any directory tree of runs.

    python tools/make_figures.py --logdir=DIR --out=DIR [--figures=1,2]

Reads every run under DIR as tools/make_tables.py does: a run is a directory
holding config.json, and it is drawn for a figure condition when its
settings are those of the condition's flagfile under flags/ (scale settings
aside; where several match, one is chosen as for a table row). Writes
figure1.png/.pdf and figure2.png/.pdf:

* Figure 1 (CIFAR-10): (a) training loss against steps for small Inception
  on true labels, random labels, shuffled pixels, random pixels and Gaussian
  inputs (flags/figure1/inception_<condition>.cfg): the window means of
  steps.csv when the run logged them (--log_every_steps), else each epoch's
  mean from metrics.csv, the caption saying which; the legend gives the first
  step with training loss <= 0.1; (b) convergence time (the step at which
  training accuracy first reached --fit_threshold, 100% by default:
  fit_step) relative to p = 0, against the label corruption p, for
  Inception, Alexnet and MLP 1x512 (flags/figure1/<model>_corrupt_<p>.cfg),
  beside the paper's range; (c) test error at the end of those runs against
  p, with Table 1's values at p = 0 and 1 as marks.
* Figure 2: (a) test accuracy during training of small Inception with and
  without BatchNorm (flags/figure2/inception_bn.cfg, inception_nobn.cfg), the
  shading up to the best-so-far accuracy, the paper's final accuracies as
  dashed lines; (b) final against best-during-training test accuracy for the
  Figure 2 runs (including flags/figure2/inception_early_stopping.cfg) and
  any finished Table 2 (ImageNet) run, the paper's values as black marks.

A run evaluated every K > 1 epochs (--eval_every_epochs) has test-accuracy
points and best epochs only at those epochs (the empty cells of metrics.csv
are skipped, never drawn) and its fit_step at that resolution; the scale
captions then say "evaluated every K". Titles and captions say what is
plotted and at what scale (training examples, epochs asked and run, steps),
never what should be seen; step
axes are in thousands beyond 5,000 steps; legends sit under the panels.
Missing, running, interrupted, failed and diverged runs are listed under each
panel, never drawn as numbers; a panel with nothing to draw says "no runs".
When no run under DIR matches any condition of the figures asked for, the
tool says so on stderr and exits 1, writing nothing. Needs matplotlib (Agg,
imported only to draw), not TensorFlow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a clone's package
from rethinking_tf import arguments  # noqa: E402
from rethinking_tf.results.figures import conditions, make_figures  # noqa: E402
from rethinking_tf.results.runs import RunIndex, report_matches  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
  """Draws the figures from a tree of runs; returns the exit code."""
  parser = arguments.ArgumentParser(description='Figures 1 and 2 from a tree of runs.')
  parser.add_argument('--logdir',
                      required=True,
                      help='A directory tree of runs (any '
                      'directory holding config.json is one), e.g. a sweep\'s --logdir.')
  parser.add_argument('--out', required=True, help='Directory for figure<N>.png/.pdf.')
  parser.add_argument('--figures', default='1,2', help='Comma-separated: 1, 2 or 1,2.')
  parser.add_argument('--dpi', type=int, default=150)
  args = parser.parse_args(argv)
  which = [w.strip() for w in args.figures.split(',') if w.strip()]
  if not which or set(which) - {'1', '2'}:
    arguments.fail(f'--figures={args.figures}; allowed: 1, 2 or 1,2')
  if not 10 <= args.dpi <= 2400:
    arguments.fail(f'--dpi={args.dpi}; allowed: 10 to 2400')
  if not os.path.isdir(args.logdir):
    arguments.fail(f'--logdir={args.logdir} is not a directory; allowed: a directory '
                   'tree of runs')
  error = arguments.writable_dir_error('--out', args.out)
  if error:
    arguments.fail(error)
  index = RunIndex(args.logdir)
  for name in conditions(which):
    index.get(name)
  what = 'Figure ' + ' or '.join(which)
  report_matches(index, args.logdir, f'condition of {what}')
  for path in make_figures(index, args.out, which, args.dpi):
    print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
