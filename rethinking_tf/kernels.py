"""The kernels binary: minimum-norm kernel interpolation on a data set (section 5).

    python -m rethinking_tf.kernels --dataset=cifar10 --labels=random

Checks its flags before TensorFlow is imported, then calls
`theory.kernels.run` and prints its result (the last line is JSON).
"""

from __future__ import annotations

import json
import sys

from absl import flags

from rethinking_tf import cli
from rethinking_tf import registry
from rethinking_tf.data import sources

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags of the kernels binary (data flags from `cli`)."""
  cli.define_data_flags()
  flags.adopt_module_key_flags(cli)  # --help lists the data flags too.
  flags.DEFINE_enum('kernel', 'gaussian', list(registry.KERNELS),
                    'gaussian: exp(-gamma |x - x\'|^2); linear: <x, x\'>.')
  flags.DEFINE_float('gamma', 0.02, 'Gaussian kernel coefficient (0.02 on pixels/255 '
                     'is the MNIST demo).')
  flags.DEFINE_float('l2',
                     0.0,
                     'Ridge added to the kernel diagonal (0: interpolation).',
                     lower_bound=0)
  flags.DEFINE_enum(
      'features', 'pixels', list(registry.FEATURES),
      'pixels: image/255; standardized: the networks\' inputs; '
      'random_conv: a random conv net on the standardized inputs.')
  flags.DEFINE_integer('num_filters',
                       1000,
                       'Random filters (--features=random_conv).',
                       lower_bound=1)
  flags.DEFINE_integer('filter_size',
                       5,
                       'Random filter width (--features=random_conv).',
                       lower_bound=1)
  flags.DEFINE_integer('pool', 2, 'Pooling grid per side (--features=random_conv).', lower_bound=1)
  flags.DEFINE_integer('block_size', 2048, 'Kernel rows computed per block.', lower_bound=1)
  flags.DEFINE_integer('train_eval_size',
                       0, 'If > 0, measure train error on this '
                       'many evenly spaced training points (saves one n x n kernel '
                       'pass); 0: all.',
                       lower_bound=0)


def main(argv: list[str]) -> None:
  """The kernels binary: checks the flags, then fits and reports."""
  del argv  # Positional arguments are refused by cli.parse_flags.
  if FLAGS.gamma <= 0:
    cli.fail(f'--gamma={FLAGS.gamma} must be > 0; allowed: a number > 0')
  if FLAGS.features == 'random_conv' and (FLAGS.filter_size - 1 + FLAGS.pool > registry.CROP_SIZE):
    cli.fail(f'--filter_size={FLAGS.filter_size} and --pool={FLAGS.pool} do not fit '
             f'a {registry.CROP_SIZE}x{registry.CROP_SIZE} input; allowed: '
             f'filter_size + pool <= {registry.CROP_SIZE + 1}')
  args = cli.data_args(FLAGS)
  cli.import_tensorflow()
  from rethinking_tf.theory import kernels  # pylint: disable=g-import-not-at-top
  try:
    result = kernels.run(**args,
                         kernel=FLAGS.kernel,
                         gamma=FLAGS.gamma,
                         l2=FLAGS.l2,
                         features=FLAGS.features,
                         num_filters=FLAGS.num_filters,
                         filter_size=FLAGS.filter_size,
                         pool=FLAGS.pool,
                         block_size=FLAGS.block_size,
                         train_eval_size=FLAGS.train_eval_size or None)
  except kernels.CholeskyError as e:
    cli.fail(str(e), code=1)
  except sources.DataError as e:
    cli.fail(str(e))
  kern = (f"gaussian (gamma={result['gamma']})" if result['kernel'] == 'gaussian' else 'linear')
  print(f"Kernel interpolation on {result['dataset']} ({result['labels']} labels, "
        f"{result['inputs']} inputs): n={result['n']}, {result['features']} features "
        f"(d={result['d']}), {kern} kernel, l2={result['l2']}")
  print(f"  kernel {result['kernel_seconds']:.1f} s, Cholesky+solve "
        f"{result['solve_seconds']:.1f} s, predictions {result['predict_seconds']:.1f} s "
        f"({result['precision']}; jitter {result['jitter']:.3g} after "
        f"{result['cholesky_failures']} failed factorizations)")
  print(f"  train error {result['train_error']:.4f} on {result['train_eval_size']} "
        f"points (max |K alpha - Y| = "
        f"{result['max_residual']:.3g}), test error {result['test_error']:.4f}, "
        f"norm sqrt(tr(alpha^T K alpha)) = {result['norm']:.4g}")
  print(json.dumps(result))


def run_main() -> None:
  """Entry point of `python -m rethinking_tf.kernels`."""
  define_flags()
  cli.run(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
