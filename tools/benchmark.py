#!/usr/bin/env python
"""Training and input-pipeline throughput against fixed targets (docs/performance.md).

    python tools/benchmark.py --quick            # all four CIFAR models, ~2 min
    python tools/benchmark.py --models=mlp_1x512 --steps_per_execution=1,16
    python tools/benchmark.py --precision=float32,mixed_bfloat16 --accuracy_epochs=10
    python tools/benchmark.py --dataset=image_folder --data_dir=/path/cifar10-jpeg
    python tools/benchmark.py --models=alexnet --breakdown   # where a step goes
    python tools/benchmark.py --quick --peer=pytorch   # beside PyTorch (a python with torch)
    python tools/benchmark.py --quick --models=inception --inter_op_threads=1 --op_profile
    python tools/benchmark.py --quick --models=inception --onednn_profile   # oneDNN's kernels

Prints a table (models, input pipeline per randomization, targets with
PASS/FAIL), then one JSON object on the last line. What each number includes
is documented in `rethinking_tf/benchmark/__init__.py`; results in docs/performance.md.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Measure the checkout this file is in, not an older installed copy.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # pylint: disable=wrong-import-position
from absl import logging  # pylint: disable=wrong-import-position

from rethinking_tf import cli  # pylint: disable=wrong-import-position
from rethinking_tf import registry  # pylint: disable=wrong-import-position
from rethinking_tf.data import sources  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS

flags.DEFINE_list('models', 'inception,alexnet,mlp_1x512,mlp_3x512',
                  'Models, spelled as --model of the training binary.')
flags.DEFINE_integer('batch_size', 128, 'Global batch size.', lower_bound=1)
flags.DEFINE_enum('strategy', 'default', ['default', 'mirrored'],
                  'tf.distribute strategy (mirrored: local GPUs, else logical CPUs).')
flags.DEFINE_integer('num_cpu_devices',
                     1,
                     'Logical CPU devices (for mirrored on a CPU).',
                     lower_bound=1)
flags.DEFINE_bool('quick', False, 'All models in about two minutes (few steps; '
                  'small Inception on 256 images).')
flags.DEFINE_integer('steps',
                     0, 'Timed training steps per model, rounded up to '
                     'whole epochs (0 = default: 3 timed epochs, 30 for MLPs; --quick: '
                     '2, 20 for MLPs), after one warm-up epoch.',
                     lower_bound=0)
flags.DEFINE_enum('dataset', 'digits', ['digits', 'image_folder', 'cifar10'],
                  'Data set (digits is bundled and needs no network).')
flags.DEFINE_string('data_dir', None, 'Root of the image_folder tree / tfds data_dir.')
flags.DEFINE_integer('train_size',
                     1280, 'Training examples (0 = all); a multiple '
                     'of --batch_size avoids a partial last batch.',
                     lower_bound=0)
flags.DEFINE_list(
    'steps_per_execution', ['0'], 'Values of steps_per_execution to '
    'measure, side by side (e.g. 1,10); 0 = the training binary\'s default '
    '(min(32, steps per epoch)).')
flags.DEFINE_list('precision', ['float32'], 'Keras precision policies to measure: '
                  'float32, mixed_bfloat16, mixed_float16.')
flags.DEFINE_list(
    'random_crop', ['false'], 'Train with --random_crop false and/or '
    'true (e.g. false,true: the end-to-end cost of the crop, side by side).')
flags.DEFINE_integer('accuracy_epochs',
                     0, 'If > 0, also train each model this many '
                     'epochs in float32 and mixed_bfloat16 and report accuracies.',
                     lower_bound=0)
flags.DEFINE_integer('pipeline_batches',
                     0, 'Batches per pipeline mode (0 = 200, '
                     '--quick 100).',
                     lower_bound=0)
flags.DEFINE_list(
    'pipeline_modes', None, 'Pipeline randomizations to measure '
    '(default all; baseline always): ' + ', '.join([
        'labels=corrupted(0.5)', 'labels=random', 'inputs=shuffled_pixels', 'inputs=random_pixels',
        'inputs=gaussian', 'random_crop'
    ]) + '.')
flags.DEFINE_integer('intra_op_threads', 0, 'TF intra-op threads (0 = TF default).', lower_bound=0)
flags.DEFINE_integer('inter_op_threads', 0, 'TF inter-op threads (0 = TF default).', lower_bound=0)
flags.DEFINE_bool(
    'breakdown', False, 'Also show where each model\'s step goes: every '
    'layer timed alone (forward, forward+backward) and the step\'s phases '
    '(forward, gradients, optimizer update). Adds about 30 s for small '
    'Alexnet, minutes for small Inception.')
flags.DEFINE_bool(
    'op_profile', False, 'Also show where each model\'s step goes op by op, inside the '
    'real step: one bare block under TensorFlow\'s profiler, summed per op type (with '
    '--peer, one peer epoch under its profiler beside it). Use --inter_op_threads=1 so '
    'that ops do not overlap and each op\'s time is its own.')
flags.DEFINE_bool(
    'onednn_profile', False, 'Also list each float32 model\'s oneDNN primitives per step '
    '(kind, implementation, ms), from ONEDNN_VERBOSE in a child process of 4 steps (with '
    '--peer, the peer\'s beside them): which kernel each library got. Adds about 15 s a model, '
    'a minute for small Inception.')
flags.DEFINE_enum(
    'peer', None, ['pytorch'], 'Also train each model in this library, in the same run, '
    'alternating epoch by epoch with ours, and report ours / theirs (needs torch importable; '
    'never a dependency of the package).')
flags.DEFINE_string('json_out', None, 'Also write the full results here.')
flags.DEFINE_list(
    'conv_shapes', None, 'Instead of the models: training GFLOP/s of a '
    'convolution per data layout (NHWC, NCHW) for each HxCINxCOUTxK (an HxH '
    'map, CIN to COUT channels, KxK kernel), e.g. 14x64x64x5 (small Alexnet\'s '
    'second conv), then exit.')
flags.DEFINE_list(
    'gemm_shapes', None, 'Instead of the models: float32 matrix-product '
    'GFLOP/s for each MxKxN (an MxK by KxN product), e.g. 2048x2048x2048,'
    '128x2352x512 (the first layer of MLP 1x512 at batch 128), then exit.')

_fail = cli.fail


def _shapes(flag: str, spelling: str) -> list[tuple[int, ...]]:
  """The values of list flag `flag`, each as many positive integers joined by
  'x' as `spelling` has parts; fails naming the first value that is not."""
  out = []
  for text in getattr(FLAGS, flag) or []:
    try:
      out.append(tuple(int(v) for v in text.lower().split('x')))
      assert len(out[-1]) == len(spelling.split('x')) and min(out[-1]) >= 1
    except (ValueError, AssertionError):
      _fail(f'--{flag}: {text}; allowed: {spelling} with positive integers')
  return out


def _importable(module: str) -> bool:
  """Whether `module` imports (a missing or broken install is not importable)."""
  try:
    importlib.import_module(module)
  except (ImportError, OSError):
    return False
  return True


def _epochs_and_size(name: str, available: int) -> tuple[int | None, int, int]:
  """(train_size, timed epochs, warm-up epochs) of model `name`."""
  train_size = FLAGS.train_size or None
  # An MLP epoch of the digits is one ~40 ms call here, and single epochs'
  # binary/bare ratios range over 0.8-1.15 on this shared machine: time
  # many (each costs ~0.15 s with its evaluation and bare block).
  timed_epochs, warmup = (30 if name.startswith('mlp') else 3), 1
  if FLAGS.quick:
    timed_epochs = 20 if name.startswith('mlp') else 2
    if name == 'inception':  # ~120 images/s here: 2 steps per epoch.
      train_size = min(train_size or 256, 2 * FLAGS.batch_size, available)
      # Beside a peer, one 2-step epoch's ratio ranges over 0.8-1.8 on a
      # shared machine (docs/performance.md): the median needs more epochs.
      timed_epochs = 6 if FLAGS.peer else timed_epochs
  return train_size, timed_epochs, warmup


def main(argv):
  """The benchmark binary: checks every flag, then measures and prints."""
  del argv  # Positional arguments are refused by cli.parse_flags.
  # Every flag is checked before TensorFlow is imported.
  for name in FLAGS.models:
    if not registry.is_valid_model_name(name) or name == 'inception_v3':
      _fail(f'--models: {name} is unknown; allowed: inception, alexnet, '
            'mlp_<layers>x<width>')
  for p in FLAGS.precision:
    if p not in registry.PRECISIONS:
      _fail(f'--precision: {p}; allowed: {", ".join(registry.PRECISIONS)}')
  try:
    spes = [int(s) for s in FLAGS.steps_per_execution]
    assert all(s >= 0 for s in spes)
  except (ValueError, AssertionError):
    _fail(f'--steps_per_execution={",".join(FLAGS.steps_per_execution)}: '
          'integers >= 0 (0 = the binary\'s default)')
  crops = [c.lower() in ('true', '1', 'yes') for c in FLAGS.random_crop]
  known = [m[0] for m in registry.PIPELINE_MODES]
  for m in FLAGS.pipeline_modes or []:
    if m not in known:
      _fail(f'--pipeline_modes: {m} is unknown; allowed: {", ".join(known)}')
  if FLAGS.dataset == 'image_folder' and not FLAGS.data_dir:
    _fail('--dataset=image_folder needs --data_dir; allowed: the root of a '
          '<data_dir>/{train,test}/<class>/<image> tree')

  if FLAGS.peer and 'mixed_float16' in FLAGS.precision:
    _fail(f'--peer={FLAGS.peer} with --precision=mixed_float16: no peer in float16; allowed with '
          '--peer: float32, mixed_bfloat16 (PyTorch\'s bfloat16 autocast)')
  if FLAGS.peer == 'pytorch' and not _importable('torch'):
    _fail('--peer=pytorch: torch is not importable by this python; allowed: a python that '
          'imports torch (not a dependency of the package; e.g. python3 -m venv '
          '--system-site-packages /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch, '
          'then /tmp/venv_torch/bin/python tools/benchmark.py --peer=pytorch)')
  shapes = _shapes('gemm_shapes', 'MxKxN')
  convs = _shapes('conv_shapes', 'HxCINxCOUTxK')
  if FLAGS.json_out:
    folder = os.path.dirname(os.path.abspath(FLAGS.json_out))
    if not os.path.isdir(folder):
      _fail(f'--json_out={FLAGS.json_out}: {folder} is not a directory; allowed: a '
            'file in an existing directory')
    cli.check_logdir(folder, '--json_out')
  available = replicas = None
  if not (shapes or convs):
    try:  # Before any heavy work: one line, no traceback, when the data is missing.
      available = sources.check_available(FLAGS.dataset, FLAGS.data_dir)[0]
    except sources.DataError as e:
      _fail(str(e))
    if FLAGS.train_size > available:
      _fail(f'--train_size={FLAGS.train_size} exceeds the {available} training examples '
            f'of --dataset={FLAGS.dataset}; allowed: 0 (all) to {available}')
    replicas = cli.replicas_without_tf(FLAGS.strategy, FLAGS.num_cpu_devices)
    if replicas:
      cli.check_batch_split(FLAGS.batch_size, replicas)

  logging.set_verbosity(logging.WARNING)
  tf = cli.import_tensorflow()
  tf.get_logger().setLevel('ERROR')
  if FLAGS.intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  if FLAGS.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  from rethinking_tf import benchmark  # pylint: disable=g-import-not-at-top
  if convs:  # NCHW only where this CPU has a kernel for it; else one line says so.
    table, rates = benchmark.conv_table(convs, batch_size=FLAGS.batch_size)
    print(table)
    print(json.dumps(rates))
    return
  if shapes:
    print('M x K x N              GFLOP/s (best)  (median)')
    rates = {}
    for shape in shapes:
      r = benchmark.matmul_peak(shape=shape, seconds=1.0, min_repeats=5)
      label = 'x'.join(map(str, shape))
      rates[label] = r['best_flops_per_second']
      print(f'{label:22s} {r["best_flops_per_second"] / 1e9:14.1f}'
            f'  {r["flops_per_second"] / 1e9:8.1f}')
    print(json.dumps({'gemm_flops_per_second': rates}))
    return
  from rethinking_tf.benchmark import suite  # pylint: disable=g-import-not-at-top
  strategy = suite.make_strategy(FLAGS.strategy, FLAGS.num_cpu_devices)
  if replicas is None:  # GPUs: counted by TensorFlow.
    cli.check_batch_split(FLAGS.batch_size, strategy.num_replicas_in_sync)

  cases = []
  for name in FLAGS.models:
    train_size, timed_epochs, warmup = _epochs_and_size(name, available)
    for spe in spes:
      for precision, crop in [(p, c) for p in FLAGS.precision for c in crops]:
        num_train = train_size or available
        steps_per_epoch = -(-num_train // FLAGS.batch_size)
        epochs = warmup + (max(1, -(-FLAGS.steps // steps_per_epoch))
                           if FLAGS.steps else timed_epochs)
        cases.append(
            benchmark.ModelCase(model=name,
                                batch_size=FLAGS.batch_size,
                                train_size=train_size,
                                epochs=epochs,
                                warmup_epochs=warmup,
                                steps_per_execution=spe,
                                precision=precision,
                                random_crop=crop,
                                dataset=FLAGS.dataset,
                                data_dir=FLAGS.data_dir))
  peer = None
  if FLAGS.peer == 'pytorch':
    from rethinking_tf.benchmark import peer_pytorch  # pylint: disable=g-import-not-at-top
    threads = FLAGS.intra_op_threads or peer_pytorch.default_threads()  # as TensorFlow's
    peer = lambda *args, **kwargs: peer_pytorch.Peer(*args, threads=threads, **kwargs)
  batches = FLAGS.pipeline_batches or (100 if FLAGS.quick else 200)
  results = benchmark.run(
      cases,
      strategy,
      pipeline_batches=batches,
      pipeline_train_size=FLAGS.train_size or None,
      accuracy_epochs=FLAGS.accuracy_epochs,
      pipeline_modes=FLAGS.pipeline_modes,
      breakdown=FLAGS.breakdown,
      peer=peer,
      op_profile=FLAGS.op_profile,
      onednn_sides=('ours', *([FLAGS.peer] if FLAGS.peer else [])) if FLAGS.onednn_profile else ())
  results['command'] = ' '.join(sys.argv)
  if FLAGS.json_out:
    with open(FLAGS.json_out, 'w') as f:
      json.dump(results, f, indent=2)
  print(benchmark.format_table(results))
  print(json.dumps(benchmark.summary(results)), flush=True)


if __name__ == '__main__':
  cli.run(main)
