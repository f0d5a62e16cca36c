"""Flags shared by the command-line binaries (train, expressivity, kernels).

Only binaries import this module; the library never reads FLAGS. Each binary
calls `define_data_flags()` at import, then `data_args()` in `main` to turn
the parsed flags into plain values, and `fail()` for a bad value.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from rethinking_tf import data


def define_data_flags() -> None:
  """The data-set and randomization flags (paper section 2.1)."""
  flags.DEFINE_enum('dataset', 'cifar10', list(data.DATASETS),
                    'Data set: ' + '; '.join(
                        f'{k}: {e.info.description}' for k, e in data.DATASETS.items()))
  flags.DEFINE_string('data_dir', None,
                      'tensorflow-datasets data_dir, or the root of an image_folder tree.')
  flags.DEFINE_integer('train_size', 0, 'If > 0, a deterministic class-balanced '
                       'subset of this many training examples.', lower_bound=0)
  flags.DEFINE_enum('labels', 'true', list(data.LABEL_MODES),
                    'Training labels: true, corrupted (with --corrupt_prob) or random.')
  flags.DEFINE_float('corrupt_prob', 0.0, 'Probability that a training label is '
                     'replaced by a uniformly random class (--labels=corrupted).')
  flags.DEFINE_enum('inputs', 'original', list(data.INPUT_MODES),
                    'Training inputs: original, shuffled_pixels, random_pixels, gaussian.')
  flags.DEFINE_integer('seed', 0, 'Seed of every randomization, the shuffle order '
                       'and the initial weights.')
  flags.DEFINE_bool('image_cache', True, 'Cache the decoded arrays of an image_folder data set under $XDG_CACHE_HOME/rethinking_tf (default ~/.cache/rethinking_tf); --noimage_cache decodes the images on every run.')


def fail(message: str, code: int = 2) -> None:
  """Exits with one line naming what is wrong and what is allowed."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def data_args(FLAGS) -> dict:  # pylint: disable=invalid-name
  """Validates the data flags (without reading data) and returns plain values."""
  if not 0.0 <= FLAGS.corrupt_prob <= 1.0:
    fail(f'--corrupt_prob={FLAGS.corrupt_prob} is outside [0, 1]')
  if FLAGS.labels != 'corrupted' and FLAGS.corrupt_prob not in (0.0,):
    fail(f'--corrupt_prob={FLAGS.corrupt_prob} needs --labels=corrupted '
         f'(got --labels={FLAGS.labels})')
  try:
    num_train, _ = data.check_available(FLAGS.dataset, FLAGS.data_dir)
  except data.DataError as e:
    fail(str(e))
  if FLAGS.train_size > num_train:
    fail(f'--train_size={FLAGS.train_size} exceeds the {num_train} training '
         f'examples of --dataset={FLAGS.dataset}; allowed: 0 (all) to {num_train}')
  return dict(
      dataset=FLAGS.dataset,
      data_dir=os.path.expanduser(FLAGS.data_dir) if FLAGS.data_dir else None,
      train_size=FLAGS.train_size or None,
      randomization=data.Randomization(labels=FLAGS.labels,
                                       corrupt_prob=FLAGS.corrupt_prob,
                                       inputs=FLAGS.inputs, seed=FLAGS.seed),
      image_cache=FLAGS.image_cache)
