#!/usr/bin/env python
"""Tables 1 and 2 of the paper (section 3), our numbers beside the paper's.

    python tools/make_tables.py --logdir=DIR [--format=markdown|latex|csv]
        [--table=1|2|all] [--out=FILE]

Reads every run under DIR, in any layout: a run is a directory holding
config.json (the resolved settings the training binary writes; results.json
once finished). Each table row is defined by its flagfile under flags/
(flags/table1/<row>.cfg): a run fills the row when its config.json has the
flagfile's settings, the training defaults filling what the flagfile leaves
out; scale settings (data set, subset sizes, epochs, precision, seed, ...)
do not decide the row, they are shown in its scale column (see DEFINING,
TUNING and SCALE; a run evaluated every K > 1 epochs, --eval_every_epochs,
says "evaluated every K ep" there: its best test accuracy is over those
epochs). Where several runs match a row one is chosen
(`RunIndex.candidates`) and a table note says so. Each row gives the
paper's accuracy, ours and the difference (ours minus paper, in percentage
points). A run that is missing, still running, interrupted, failed or
diverged (a loss became NaN) shows as such, never as a number. Runs that
fill no row are counted on stderr; when none fills any, the tool says so on
stderr and exits 1.

The work is done by `rethinking_tf.results` (`runs`: the reader and matcher,
`tables`: the tables and the paper's numbers). Needs no TensorFlow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a clone's package
from rethinking_tf import arguments  # noqa: E402
from rethinking_tf.results.runs import RunIndex, report_matches  # noqa: E402
from rethinking_tf.results.tables import render  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
  """Prints or writes the tables; returns the exit code."""
  parser = arguments.ArgumentParser(description='Tables 1 and 2, ours beside the paper.')
  parser.add_argument('--logdir',
                      required=True,
                      help='A directory tree of runs (any '
                      'directory holding config.json is one), e.g. a sweep\'s --logdir.')
  parser.add_argument('--format', choices=('markdown', 'latex', 'csv'), default='markdown')
  parser.add_argument('--table', choices=('1', '2', 'all'), default='all')
  parser.add_argument('--out', default=None, help='Write here instead of stdout.')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.logdir):
    arguments.fail(f'--logdir={args.logdir} is not a directory; allowed: a directory '
                   'tree of runs')
  if args.out:
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if os.path.isdir(args.out):
      arguments.fail(f'--out={args.out} is a directory; allowed: a file path')
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
      arguments.fail(f'--out={args.out}: {out_dir} is not a writable directory')
  index = RunIndex(args.logdir)
  text = render(index, args.format, args.table)
  which = 'Table 1 or 2' if args.table == 'all' else f'Table {args.table}'
  report_matches(index, args.logdir, f'row of {which}')
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  else:
    sys.stdout.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
