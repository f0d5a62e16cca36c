"""The expressivity binary: Theorem 1's network on a data set (section 4).

    python -m rethinking_tf.expressivity --dataset=cifar10 --labels=random

Checks its flags before keras or TensorFlow is imported, then calls
`theory.expressivity.run` and prints its result (the last line is JSON).
"""

from __future__ import annotations

import json
import sys

from absl import flags

from rethinking_tf import cli
from rethinking_tf.data import sources

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags of the expressivity binary (data flags from `cli`)."""
  cli.define_data_flags()
  flags.adopt_module_key_flags(cli)  # --help lists the data flags too.
  flags.DEFINE_bool(
      'one_hot', False, 'k outputs fitting one-hot targets '
      '(d + n + k n weights) instead of the class index (2n + d).')
  flags.DEFINE_float(
      'theta', 0.1, 'Threshold placement b_k = x_{k-1} + theta '
      '(x_k - x_{k-1}), in (0, 1); 0.5 = midpoints.')
  flags.DEFINE_integer('batch_size', 256, 'Examples per forward-pass batch.', lower_bound=1)
  flags.DEFINE_bool('float32_check', True, 'Also evaluate the same weights in float32.')


def main(argv: list[str]) -> None:
  """The expressivity binary: checks the flags, then builds and checks the network."""
  del argv  # Positional arguments are refused by cli.parse_flags.
  if not 0.0 < FLAGS.theta < 1.0:
    cli.fail(f'--theta={FLAGS.theta} must be in (0, 1); allowed: a number strictly '
             'between 0 and 1 (0.5 = midpoints)')
  args = cli.data_args(FLAGS)
  cli.import_tensorflow()
  from rethinking_tf.theory import expressivity  # pylint: disable=g-import-not-at-top
  try:
    result = expressivity.run(**args,
                              one_hot=FLAGS.one_hot,
                              theta=FLAGS.theta,
                              batch_size=FLAGS.batch_size,
                              float32_check=FLAGS.float32_check)
  except (expressivity.SeparationError, sources.DataError) as e:
    cli.fail(str(e))
  print(f"Theorem 1 network on {result['dataset']} ({result['labels']} labels, "
        f"{result['inputs']} inputs): n={result['n']} d={result['d']} "
        f"k={result['k']}, {result['num_weights']:,} weights "
        f"(theorem: {result['theorem_weights']:,})")
  print(f"  built in {result['seconds']:.2f} s; min_i (x_i - b_i) = "
        f"{result['min_gap']:.3g} over a projection range {result['projection_range']:.3g}; "
        f"{result['num_duplicates']} duplicate inputs")
  print(f"  float64 forward pass: max |error| = {result['max_abs_error']:.3g}, "
        f"train accuracy {result['train_accuracy']:.4f}")
  if 'max_abs_error_float32' in result:
    print(f"  float32 forward pass (same weights): max |error| = "
          f"{result['max_abs_error_float32']:.3g}, train accuracy "
          f"{result['train_accuracy_float32']:.4f}")
  if 'test_accuracy' in result:
    print(f"  test accuracy {result['test_accuracy']:.4f}")
  print(json.dumps(result))


def run_main() -> None:
  """Entry point of the console script and of `python -m`."""
  define_flags()
  cli.run(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
