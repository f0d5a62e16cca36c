"""Quickstart: the paper's central contrast in one short offline run.

    python -m rethinking_tf.quickstart [--logdir=runs/quickstart]

Trains MLP 1x512 twice on scikit-learn's bundled handwritten digits (1,347
training and 450 test images, presented at CIFAR-10's 28x28x3 input shape),
with the same hyperparameters: once on the true labels, once on random
labels (section 2.1). True labels generalize; random labels are memorized
(100% training accuracy) while test accuracy stays near chance (10%).

The learning rate decays by 0.95 every 391 steps (one CIFAR-10 epoch at
batch 128, the paper's per-step schedule) because this data set has only 11
steps per epoch. Each run stops after the first epoch whose evaluated
training accuracy (an inference-mode pass over the training set) is 100%,
at most --epochs (300) epochs. The first line printed names the output
directory: the two runs in it are replaced (--nooverwrite refuses instead).
"""

from __future__ import annotations

import os
import sys

from absl import flags
from absl import logging

from rethinking_tf import cli
from rethinking_tf import registry
from rethinking_tf.data import sources

flags.DEFINE_string('logdir', os.path.join('runs', 'quickstart'),
                    'Where the two runs go (<logdir>/true_labels, <logdir>/random_labels).')
flags.DEFINE_integer('epochs', 300, 'Maximum epochs per run.', lower_bound=1)
flags.DEFINE_bool('overwrite', True, 'Replace earlier quickstart runs in --logdir.')
FLAGS = flags.FLAGS
FIT_THRESHOLD = 1.0  # stop once the evaluated training accuracy reaches this


def first_line(logdir: str, overwrite: bool) -> str:
  """The quickstart's first output line: where it writes, and that it replaces it."""
  what = ('replacing the runs they hold' if overwrite else 'resuming them if unfinished')
  return (f'quickstart: writes to {logdir}: true_labels/ and random_labels/, {what} '
          '(--logdir to choose another directory)')


def criterion(epochs: int) -> str:
  """When each run stops, as its header line says."""
  return (f'until {100 * FIT_THRESHOLD:g}% train accuracy (evaluated after each epoch), '
          f'at most {epochs} epochs')


def main(argv: list[str]) -> None:
  """The quickstart binary: trains the two runs and prints the table."""
  del argv  # Positional arguments are refused by cli.parse_flags.
  logging.set_verbosity(logging.WARNING)
  logdir = cli.check_logdir(FLAGS.logdir)
  runs = {labels: os.path.join(logdir, f'{labels}_labels') for labels in ('true', 'random')}
  if not FLAGS.overwrite:
    for path in runs.values():
      if os.path.exists(os.path.join(path, 'results.json')):
        cli.fail(f'--logdir={logdir}: {path} holds a finished run; pass --overwrite '
                 'or choose another --logdir')
  print(first_line(logdir, FLAGS.overwrite), flush=True)
  cli.import_tensorflow()
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import rundir  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top
  rows = []
  for labels, path in runs.items():
    print(f'--- MLP 1x512 on digits, {labels} labels, {criterion(FLAGS.epochs)} ---', flush=True)
    config = config_lib.TrainConfig(logdir=path,
                                    dataset='digits',
                                    model='mlp_1x512',
                                    epochs=FLAGS.epochs,
                                    randomization=registry.Randomization(labels=labels, seed=0),
                                    lr_decay_steps=391,
                                    fit_threshold=FIT_THRESHOLD,
                                    stop_on_fit=True,
                                    overwrite=FLAGS.overwrite)
    cli.make_logdir(path)
    try:
      rows.append((labels, trainer.run(config)))
    except (rundir.RunExists, sources.DataError) as e:
      cli.fail(str(e))
  print('\nlabels   train acc  test acc  epochs  seconds   (chance = 0.10)')
  for labels, r in rows:
    print(f'{labels:7s}  {r["train_accuracy"]:9.3f}  {r["test_accuracy"]:8.3f}  '
          f'{r["epochs_completed"]:6d}  {r["wall_seconds"]:7.0f}')
  print(f'\nTensorBoard: tensorboard --logdir={FLAGS.logdir}')


def run_main() -> None:
  """Entry point of the console script and of `python -m`."""
  cli.run(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
