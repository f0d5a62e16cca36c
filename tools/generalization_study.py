#!/usr/bin/env python
"""Which complexity measures track the generalization gap (PAPER.md section 7).

    python tools/generalization_study.py --logdir=DIR [--out_dir=OUT]

Reads every finished run under DIR (config.json, results.json, and the
measures.json and test_predictions.npy of `python -m rethinking_tf.measure`)
and writes, per measure, Kendall's tau with the generalization gap,
granulated Psi over the hyperparameters that vary in DIR, and the
conditional-MI score K (Jiang et al. 2020), to OUT/study.md, OUT/study.csv
and OUT/study.png (measure against gap, one panel per measure, coloured by
label corruption p). A measure that a run lacks counts as missing there,
and the table says why. OUT defaults to DIR/study. Needs no TensorFlow; the
library is rethinking_tf/measures/study.py.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rethinking_tf.measures import study  # pylint: disable=wrong-import-position


def fail(message: str, code: int = 2) -> None:
  """One line on stderr, then exit."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def main(argv: list[str] | None = None) -> None:
  """Parses the arguments, reads the runs and writes the three outputs."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--logdir', required=True, help='Directory holding the runs.')
  parser.add_argument('--out_dir', help='Where study.md/.csv/.png go (default LOGDIR/study).')
  parser.add_argument('--no_figure', action='store_true', help='Skip the figure.')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.logdir):
    fail(f'--logdir={args.logdir} is not a directory; allowed: a directory of training runs')
  runs = study.read_runs(args.logdir)
  if not runs:
    fail(
        f'no finished run (config.json and results.json) under {args.logdir}; allowed: a '
        'directory of training runs',
        code=1)
  out_dir = args.out_dir or os.path.join(args.logdir, 'study')
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    fail(f'--out_dir={out_dir} cannot be created ({e.strerror}); allowed: a writable directory')
  rows, hparams = study.study(runs)
  with open(os.path.join(out_dir, 'study.md'), 'w') as f:
    f.write(study.to_markdown(rows, hparams, len(runs), [r.name for r in runs if not r.fitted]))
  with open(os.path.join(out_dir, 'study.csv'), 'w') as f:
    f.write(study.to_csv(rows, hparams))
  if not args.no_figure:
    study.figure(runs, rows, os.path.join(out_dir, 'study.png'))
  print(f'{len(runs)} runs, varied: {", ".join(hparams) or "nothing"}; wrote {out_dir}/study.*')


if __name__ == '__main__':
  main()
