"""Trains one model on one (randomized) data set: the paper's experiments.

    python -m rethinking_tf.train --dataset=cifar10 --labels=random \
        --model=mlp_1x512 --logdir=runs/mlp_random

A thin binary: flags are validated (before TensorFlow is imported, and
before any data is read or the logdir is created) into a
`training.config.TrainConfig`, and `training.trainer.run` does the work. Re-running the same
command resumes an interrupted run; a finished run is never overwritten
without --overwrite. The resolved flags are written to <logdir>/flags.cfg:
`python -m rethinking_tf.train --flagfile=<logdir>/flags.cfg` repeats the run.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags
from absl import logging

from rethinking_tf import cli
from rethinking_tf import registry
from rethinking_tf.data import sources

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The training binary's flags (and the data flags) onto `flag_values`.

  The one declaration of the flag contract: `sweep.flagfiles` reads it.
  """
  cli.define_data_flags(flag_values)
  flags.adopt_module_key_flags(cli, flag_values=flag_values)  # --help lists the data flags too.
  flags.DEFINE_string('logdir',
                      None, 'Directory for events, checkpoints, metrics.csv, '
                      'flags.cfg and results.json.',
                      flag_values=flag_values)
  flags.DEFINE_bool('overwrite',
                    False,
                    'Replace a finished run in --logdir.',
                    flag_values=flag_values)
  flags.DEFINE_integer('test_size',
                       0, 'If > 0, evaluate on a deterministic '
                       'class-balanced subset of this many test examples (cheaper '
                       'per-epoch evaluation for runs on a training subset).',
                       lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_bool('random_crop',
                    False, 'A random 28x28 window per step instead of '
                    'the centre crop (Table 1 "random crop").',
                    flag_values=flag_values)
  flags.DEFINE_bool('augment',
                    False,
                    'ImageNet: Inception-style random crop and flip.',
                    flag_values=flag_values)
  flags.DEFINE_string('model',
                      'inception',
                      'Model: ' + ', '.join(registry.MODEL_NAMES) + ', or mlp_<layers>x<width>.',
                      flag_values=flag_values)
  flags.DEFINE_bool('batch_norm',
                    True, 'BatchNorm in the Inception models '
                    '(--nobatch_norm: "Inception w/o BatchNorm").',
                    flag_values=flag_values)
  flags.DEFINE_float('bn_momentum',
                     0.9,
                     'BatchNorm moving-average momentum.',
                     flag_values=flag_values)
  flags.DEFINE_float('weight_decay',
                     0.0, "The paper's weight decay lambda: adds "
                     'lambda/2 * ||W||^2 of every kernel to the loss; 0 = off.',
                     lower_bound=0,
                     flag_values=flag_values)
  flags.DEFINE_float('dropout',
                     0.0,
                     'Dropout rate before the classifier; 0 = off.',
                     lower_bound=0,
                     upper_bound=0.99,
                     flag_values=flag_values)
  flags.DEFINE_float('learning_rate',
                     0.0, 'Initial learning rate; 0 = the model '
                     'default (0.1 Inception, 0.01 otherwise).',
                     lower_bound=0,
                     flag_values=flag_values)
  flags.DEFINE_float('lr_decay',
                     0.95,
                     'Learning-rate factor per decay interval.',
                     lower_bound=0,
                     upper_bound=1,
                     flag_values=flag_values)
  flags.DEFINE_integer('lr_decay_steps',
                       0, 'Decay interval in steps; 0 = every epoch '
                       '(391 = a full CIFAR-10 epoch at batch 128).',
                       lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_float('momentum',
                     0.9,
                     'SGD momentum.',
                     lower_bound=0,
                     upper_bound=1,
                     flag_values=flag_values)
  flags.DEFINE_integer('batch_size',
                       128,
                       'Global batch size, split over replicas.',
                       lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_integer('epochs', 100, 'Number of epochs.', lower_bound=1, flag_values=flag_values)
  flags.DEFINE_integer('early_stopping_patience',
                       0, 'Stop after this many epochs '
                       'without a better test accuracy; 0 = off.',
                       lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_float('fit_threshold',
                     1.0, 'Evaluated training accuracy that counts '
                     'as fitted (fit_epoch in results.json).',
                     lower_bound=0,
                     upper_bound=1,
                     flag_values=flag_values)
  flags.DEFINE_bool('stop_on_fit',
                    False,
                    'Stop once the training set is fitted.',
                    flag_values=flag_values)
  flags.DEFINE_integer('eval_every_epochs',
                       1, 'K: run the inference pass over the training set and the test '
                       'pass every K epochs and at the last; 1 = every epoch (the '
                       "paper's). With K > 1, fit_epoch, --stop_on_fit and early stopping "
                       'are read at every K-th epoch, and the other epochs\' metrics.csv '
                       'rows leave the evaluated columns empty.',
                       lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_enum('strategy',
                    'default', ['default', 'mirrored', 'multi_worker'],
                    'default: one device; mirrored: MirroredStrategy over local GPUs '
                    '(or logical CPUs); multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG.',
                    flag_values=flag_values)
  flags.DEFINE_integer('num_cpu_devices',
                       1, 'Split the CPU into this many logical '
                       'devices (to test --strategy=mirrored without GPUs).',
                       lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_integer('steps_per_execution',
                       0, 'Training steps per tf.function call; '
                       'the same computation, less per-call overhead (MLPs on a CPU: '
                       '+15-54%); any number, under any strategy (an epoch\'s last call '
                       'runs the steps left). 0 = min(32, steps per epoch).',
                       lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_integer('log_every_steps',
                       0, 'Every this many steps, write the training loss and accuracy '
                       'over those steps (training mode) to <logdir>/steps.csv and '
                       'TensorBoard (train/batch_loss, train/batch_accuracy); 0 = off.',
                       lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_enum('precision',
                    'float32',
                    list(registry.PRECISIONS),
                    'Opt-in mixed precision: mixed_bfloat16 on CPUs with bf16 (AMX, '
                    'AVX512_BF16), mixed_float16 on GPUs; see docs/performance.md.',
                    flag_values=flag_values)
  flags.DEFINE_bool('quiet', False, 'No line per epoch.', flag_values=flag_values)


def _flagfile_text() -> str:
  """The resolved flags (this module's and the data flags) as a flagfile."""
  names = sorted(f.name for f in FLAGS.get_flags_for_module(sys.modules[__name__]))
  names += sorted(f.name for f in FLAGS.get_flags_for_module(cli))
  skip = {'overwrite', 'logdir'}
  lines = [
      '# Resolved flags of this run; re-run with:',
      '#   python -m rethinking_tf.train --flagfile=<this file> --logdir=<dir>'
  ]
  for name in names:
    if name in skip:
      continue
    value = FLAGS[name].value
    if isinstance(value, bool):
      lines.append(f'--{name}' if value else f'--no{name}')
    elif value is not None:
      lines.append(f'--{name}={value}')
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  """The training binary: checks every flag, then trains one run."""
  del argv  # Positional arguments are refused by cli.parse_flags.
  logging.set_verbosity(logging.WARNING)
  # Every flag is checked before TensorFlow is imported.
  if not registry.is_valid_model_name(FLAGS.model):
    cli.fail(f'--model={FLAGS.model} is unknown; allowed: '
             f'{", ".join(registry.MODEL_NAMES)} or mlp_<layers>x<width>')
  if FLAGS.model == 'inception_v3' and FLAGS.dataset != 'imagenet2012':
    cli.fail('--model=inception_v3 needs --dataset=imagenet2012 (299x299 input); '
             f'allowed with --dataset={FLAGS.dataset}: inception, alexnet, '
             'mlp_<layers>x<width>')
  if FLAGS.dataset == 'imagenet2012' and FLAGS.model != 'inception_v3':
    cli.fail(f'--dataset=imagenet2012 needs --model=inception_v3 (got {FLAGS.model})')
  if not FLAGS.batch_norm and FLAGS.model not in ('inception',):
    cli.fail(f'--nobatch_norm applies to --model=inception only (got {FLAGS.model})')
  logdir = cli.check_logdir(FLAGS.logdir)
  if os.path.exists(os.path.join(logdir, 'results.json')) and not FLAGS.overwrite:
    cli.fail(f'--logdir={logdir} holds a finished run (results.json); '
             'pass --overwrite to replace it or choose another --logdir')
  data_args = cli.data_args(FLAGS)
  if FLAGS.test_size:
    if not registry.DATASET_INFO[FLAGS.dataset].in_memory:
      cli.fail(f'--test_size applies to in-memory data sets, not --dataset={FLAGS.dataset}')
    num_test = sources.num_test_examples(FLAGS.dataset, data_args['data_dir'])
    if FLAGS.test_size > num_test:
      cli.fail(f'--test_size={FLAGS.test_size} exceeds the {num_test} test examples '
               f'of --dataset={FLAGS.dataset}; allowed: 0 (all) to {num_test}')

  replicas = cli.replicas_without_tf(FLAGS.strategy, FLAGS.num_cpu_devices)
  if replicas:
    cli.check_batch_split(FLAGS.batch_size, replicas)

  cli.import_tensorflow()
  # Only now touch TensorFlow devices (logical CPUs must be set up first).
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import rundir  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top
  strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.num_cpu_devices)
  if replicas is None:  # GPUs or workers: counted by TensorFlow.
    cli.check_batch_split(FLAGS.batch_size, strategy.num_replicas_in_sync)
  config = config_lib.TrainConfig(logdir=logdir,
                                  random_crop=FLAGS.random_crop,
                                  augment=FLAGS.augment,
                                  model=FLAGS.model,
                                  batch_norm=FLAGS.batch_norm,
                                  bn_momentum=FLAGS.bn_momentum,
                                  weight_decay=FLAGS.weight_decay,
                                  dropout=FLAGS.dropout,
                                  learning_rate=FLAGS.learning_rate or None,
                                  lr_decay=FLAGS.lr_decay,
                                  lr_decay_steps=FLAGS.lr_decay_steps,
                                  momentum=FLAGS.momentum,
                                  batch_size=FLAGS.batch_size,
                                  epochs=FLAGS.epochs,
                                  early_stopping_patience=FLAGS.early_stopping_patience,
                                  fit_threshold=FLAGS.fit_threshold,
                                  stop_on_fit=FLAGS.stop_on_fit,
                                  steps_per_execution=FLAGS.steps_per_execution,
                                  log_every_steps=FLAGS.log_every_steps,
                                  eval_every_epochs=FLAGS.eval_every_epochs,
                                  precision=FLAGS.precision,
                                  overwrite=FLAGS.overwrite,
                                  test_size=FLAGS.test_size or None,
                                  verbose=not FLAGS.quiet,
                                  **data_args)
  cli.make_logdir(logdir)
  try:
    results = trainer.run(config, strategy, flagfile=_flagfile_text())
  except (rundir.RunExists, sources.DataError) as e:
    cli.fail(str(e))
  except trainer.Diverged as e:
    cli.fail(f'run {e}; metrics up to it are in {e.metrics_path}', code=1)
  keys = ('train_accuracy', 'test_accuracy', 'best_test_accuracy', 'epochs_completed', 'fit_epoch',
          'label_noise_fraction', 'wall_seconds')
  print(json.dumps({k: results[k] for k in keys}))


def run_main() -> None:
  """Entry point of the console script and of `python -m`."""
  define_flags()
  cli.run(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
