"""Computes the complexity measures of a finished run into <logdir>/measures.json.

    python -m rethinking_tf.measure --logdir=runs/mlp_random

What does and does not measure generalization (section 2.2; docs PAPER.md
sections 6 and 7): norms, margins, sharpness and PAC-Bayes terms,
optimization speed, and, opt-in because it trains a model, the paper's
empirical Rademacher complexity (--families=...,rademacher). Cached: a
measure already in measures.json is kept; --recompute computes the asked-for
families again. The budget flags bound the sharpness searches; each
measure's seconds are recorded.
A thin binary over `rethinking_tf.measures.compute`.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags
from absl import logging

from rethinking_tf import cli
from rethinking_tf import measures
from rethinking_tf.data import sources

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The binary's flags (defined on `run_main`, so the module imports cleanly beside the
  other binaries)."""
  flags.DEFINE_string('logdir', None, 'A finished training run (config.json, results.json, '
                      'checkpoints/).')
  flags.DEFINE_list(
      'families', ','.join(measures.DEFAULT_FAMILIES), 'Families of measures to compute: '
      f'{", ".join(f for f in measures.FAMILIES if f != "agreement")}. rademacher trains a model '
      '(opt-in).')
  flags.DEFINE_bool(
      'recompute', False, 'Recompute the asked-for families even if measures.json '
      'has them (the others are kept).')
  flags.DEFINE_integer('sharpness_examples',
                       5000,
                       'Training examples in each accuracy estimate of the sharpness searches.',
                       lower_bound=1)
  flags.DEFINE_integer('mc_samples', 5, 'Monte-Carlo weight-noise draws per sigma.', lower_bound=1)
  flags.DEFINE_integer('search_depth',
                       10,
                       'Bisection steps of each sharpness search.',
                       lower_bound=1)
  flags.DEFINE_integer('ascent_steps',
                       5,
                       'Gradient-ascent steps per alpha of the worst-case search.',
                       lower_bound=1)
  flags.DEFINE_integer('rademacher_examples',
                       5000,
                       'Training inputs the Rademacher estimate labels with random signs.',
                       lower_bound=1)
  flags.DEFINE_integer('rademacher_epochs',
                       20,
                       'Epochs of training on the random signs.',
                       lower_bound=1)
  flags.DEFINE_bool('image_cache', True, 'Use the decoded-image cache of an image_folder data set.')
  flags.DEFINE_string(
      'data_dir', None, "The run's data set, when it is no longer where the run "
      "read it (config.json's data_dir).")


def main(argv):
  """Checks the flags and the run, then computes and writes the measures."""
  del argv
  logging.set_verbosity(logging.WARNING)
  if not FLAGS.logdir:
    cli.fail('--logdir is required (a finished training run)')
  logdir = os.path.abspath(os.path.expanduser(FLAGS.logdir))
  problem = measures.run_problem(logdir)
  if problem:
    cli.fail(f'--logdir: {problem}; allowed: a directory that the training binary finished')
  allowed = [f for f in measures.FAMILIES if f != 'agreement']
  unknown = [f for f in FLAGS.families if f not in allowed]
  if unknown or not FLAGS.families:
    cli.fail(f'--families={",".join(FLAGS.families)}: unknown {", ".join(unknown) or "(empty)"}; '
             f'allowed: a comma-separated subset of {", ".join(allowed)}')
  logdir = cli.check_logdir(logdir)  # writable: measures.json goes there
  with open(os.path.join(logdir, 'config.json')) as f:
    try:
      config = json.load(f)
    except ValueError as e:
      cli.fail(f'--logdir={logdir}: config.json is not JSON ({e}); allowed: a finished run')
  data_dir = os.path.expanduser(FLAGS.data_dir) if FLAGS.data_dir else config.get('data_dir')
  try:
    sources.check_available(config.get('dataset'), data_dir)
  except (sources.DataError, KeyError) as e:
    cli.fail(f'the run\'s data set --dataset={config.get("dataset")} is not available ({e}); '
             'allowed: --data_dir=<where it is now>')
  cli.import_tensorflow()
  from rethinking_tf.measures import compute  # pylint: disable=g-import-not-at-top
  from rethinking_tf.measures import run as run_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.measures import sharpness  # pylint: disable=g-import-not-at-top
  try:
    run = run_lib.load_run(logdir, FLAGS.image_cache, data_dir)
  except ValueError as e:
    cli.fail(f'--logdir={logdir} cannot be loaded: {e}')
  budget = sharpness.Budget(examples=FLAGS.sharpness_examples,
                            mc_samples=FLAGS.mc_samples,
                            search_depth=FLAGS.search_depth,
                            ascent_steps=FLAGS.ascent_steps,
                            seed=run.config['seed'])
  out = compute.compute(run,
                        FLAGS.families,
                        budget,
                        rademacher_epochs=FLAGS.rademacher_epochs,
                        rademacher_examples=FLAGS.rademacher_examples,
                        recompute=FLAGS.recompute)
  for name, entry in out['measures'].items():
    value = f'{entry["value"]:.6g}' if 'value' in entry else f'missing ({entry["missing"]})'
    print(f'{name:40s} {value}  [{entry.get("seconds", 0.0):.2f}s]')
  print(f'wrote {os.path.join(logdir, measures.MEASURES_FILE)}')


def run_main():
  """Entry point of `python -m rethinking_tf.measure`."""
  define_flags()
  cli.run(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
