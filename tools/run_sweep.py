#!/usr/bin/env python
"""Runs a grid of flagfiles as ordinary training runs, N at a time.

    python tools/run_sweep.py --logdir=DIR [--parallel=N] [--set FLAG=VALUE]... FLAGFILE...

Each flagfile F runs as

    python -m rethinking_tf.train --flagfile=F [--FLAG=VALUE for each --set] --logdir=DIR/<F>

where <F> is F's path relative to its `flags/` directory without `.cfg`
(flags/table1/mlp_1x512_wd.cfg -> DIR/table1/mlp_1x512_wd). tools/make_tables.py
and tools/make_figures.py read any layout (they match runs to rows by their
settings) and, where several runs fit a row, prefer the one laid out so. The `--set` overrides
apply to every run (later flags override the flagfile's), so the same grid
runs CPU-sized or on a local data copy.

A run directory holding results.json is finished and skipped (reported as a
conflict if it was run with other flag values); an unfinished one is started
again and the training binary resumes it from its last completed epoch; a
failed one (failed.txt) is retried unless --skip_failed. A run whose
resolved flags equal those of a run already finished anywhere under --logdir
(say figure2/inception_bn and table1/inception, or labels=corrupted with
p = 1 and labels=random) is not trained again: the finished run's outputs
are copied (without checkpoints) and RUNDIR/reused_from.txt names the source;
--no_reuse trains it anyway. A run that exits
non-zero without results.json gets a failed.txt (first line: the binary's
`diverged at epoch E, step S` for a run whose loss became NaN, else the exit
code); the sweep keeps going, lists every failure at the end and then exits 1.
Each run's stdout and stderr are appended to RUNDIR/train.log. While a run
is going its directory holds a lock on RUNDIR/.sweep_lock, so two sweeps over
one --logdir never run the same directory twice and make_tables can tell
running from interrupted.

The training command defaults to `python -m rethinking_tf.train` with this
interpreter; the RETHINKING_TRAIN_CMD environment variable (or the hidden
--train_cmd flag) replaces it, e.g. for tests with a fake binary.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a clone's package
from rethinking_tf import arguments  # noqa: E402
from rethinking_tf.sweep.flagfiles import SweepError  # noqa: E402
from rethinking_tf.sweep.runner import (
    Sweep,
    build_jobs,
    classify,
    find_same_run,  # noqa: E402
    report,
    train_command)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """The tool's flags; a bad one is one `error:` line and exit 2."""
  parser = arguments.ArgumentParser(
      description='Run flagfiles as training runs under --logdir, N at a time.')
  parser.add_argument('flagfiles', nargs='+', metavar='FLAGFILE')
  parser.add_argument('--logdir',
                      required=True,
                      help='Root of the run directories (DIR/<flagfile under flags/>).')
  parser.add_argument('--parallel',
                      type=int,
                      default=1,
                      help='Runs at a time (default 1; each run uses all cores it gets).')
  parser.add_argument('--set',
                      action='append',
                      default=[],
                      metavar='FLAG=VALUE',
                      help='Override for every run, e.g. --set train_size=5000 '
                      '(bools: --set nobatch_norm or --set batch_norm=false). Repeatable.')
  parser.add_argument('--skip_failed',
                      action='store_true',
                      help='Do not retry runs that hold failed.txt.')
  parser.add_argument('--no_reuse',
                      action='store_true',
                      help='Train every run, even when a finished run under --logdir '
                      'has the same resolved flags (by default its outputs are copied).')
  parser.add_argument('--dry_run', action='store_true', help='Print what would run and exit.')
  parser.add_argument('--progress_seconds',
                      type=float,
                      default=60.0,
                      help='Seconds between progress lines (default 60).')
  parser.add_argument('--flags_root',
                      default=None,
                      help='Directory the run names are relative to (default: the '
                      'nearest enclosing directory named flags/).')
  parser.add_argument('--train_cmd', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.parallel < 1:
    arguments.fail(f'--parallel={args.parallel}; allowed: 1 or more')
  if args.progress_seconds <= 0:
    arguments.fail(f'--progress_seconds={args.progress_seconds:g}; allowed: more than 0')
  error = arguments.writable_dir_error('--logdir', args.logdir)
  if error:
    arguments.fail(error)
  return args


def _interrupt(signum: int, frame) -> None:  # pylint: disable=unused-argument
  raise KeyboardInterrupt(f'signal {signum}')


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the sweep; returns the exit code (1 if any run failed)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  base = shlex.split(args.train_cmd) if args.train_cmd else train_command()
  try:
    jobs = build_jobs(args.flagfiles, args.logdir, args.set, base, args.flags_root)
  except SweepError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  classify(jobs, args.skip_failed)
  todo = [j for j in jobs if j.state == 'pending']
  print(
      f'Sweep of {len(jobs)} runs under {os.path.abspath(args.logdir)}: {len(todo)} to run, '
      f'{len(jobs) - len(todo)} not ({sum(j.state == "done" for j in jobs)} already '
      f'finished), {args.parallel} at a time.',
      flush=True)
  if args.dry_run:
    root = None if args.no_reuse else os.path.abspath(args.logdir)
    for job in jobs:
      source = find_same_run(job, root) if root and job.state == 'pending' else None
      if source:
        print(f'  reuse    {job.name}: copy {os.path.relpath(source, root)} (same flags)')
      else:
        print(f'  {job.state:8s} {job.name}: ' +
              (shlex.join(job.command) if job.state == 'pending' else job.detail))
    return 0
  sweep = Sweep(jobs,
                args.parallel,
                args.progress_seconds,
                reuse_root=None if args.no_reuse else os.path.abspath(args.logdir))
  in_main = threading.current_thread() is threading.main_thread()
  previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
  try:
    sweep.run()
  except KeyboardInterrupt:
    print('\nInterrupted: run the same command again to resume the unfinished runs.',
          file=sys.stderr)
    report(jobs, sys.stdout)
    return 130
  finally:
    if in_main:
      signal.signal(signal.SIGTERM, previous)  # SIGTERM stops the runs as Ctrl-C does
  return report(jobs, sys.stdout)


if __name__ == '__main__':
  sys.exit(main())
