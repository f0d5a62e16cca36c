"""Every binary checks its flags before TensorFlow starts: one line, exit 2, fast,
nothing on disk; --help lists the binary's flags; data errors are one line."""

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from conftest import BENCHMARK, run_python

BINARIES = {
    'train': ['-m', 'rethinking_tf.train'],
    'quickstart': ['-m', 'rethinking_tf.quickstart'],
    'expressivity': ['-m', 'rethinking_tf.expressivity'],
    'kernels': ['-m', 'rethinking_tf.kernels'],
    'benchmark': [BENCHMARK],
}
HEAVY = ('tensorflow', 'keras', 'tensorflow_datasets', 'sklearn', 'scipy')
# Generous: the target is 2 s on an idle 2-core machine; CI may be loaded.
FLAG_ERROR_SECONDS = 5.0


def _run(binary, *args, timeout=300):
  return run_python(*BINARIES[binary], *args, timeout=timeout)


def _write_folder(root, counts, size=32, seed=0):
  """An image_folder tree: counts = {split: {class: number of PNG images}}."""
  rng = np.random.default_rng(seed)
  for split, classes in counts.items():
    for name, n in classes.items():
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, name, f'{i}.png'))
  return str(root)


def _one_error_line(proc):
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('error: '), proc.stderr
  return lines[0]


def _setup(tmp_path, kind):
  """Files some cases need; returns the placeholders of their arguments."""
  folder = tmp_path / 'folder'
  if kind == 'empty_class':
    _write_folder(folder, {'train': {'a': 2, 'b': 2}, 'test': {'a': 1, 'b': 1}})
    os.makedirs(folder / 'train' / 'c')  # Not an image: the folder is empty.
    (folder / 'train' / 'c' / 'notes.txt').write_text('not an image')
    _write_folder(folder, {'test': {'c': 1}})
  if kind == 'file':
    (tmp_path / 'file').write_text('a file, not a directory')
  if kind == 'finished':
    os.makedirs(tmp_path / 'run')
    (tmp_path / 'run' / 'results.json').write_text('{}')
  return dict(tmp=str(tmp_path), folder=str(folder))


TRAIN = ['--dataset=digits', '--model=mlp_1x64', '--logdir={tmp}/run']
FLAG_ERRORS = [
    # (binary, setup, arguments, what the line must say)
    ('train', None, ['--model=resnet50'], '--model=resnet50 is unknown; allowed: inception'),
    ('train', None, ['--corrupt_prob=1.5'], '--corrupt_prob=1.5 is outside [0, 1]'),
    ('train', None, ['--dataset=image_folder'], "--data_dir=None is not a readable directory"),
    ('train', None, ['--dataset=image_folder',
                     '--data_dir={tmp}/missing'], 'missing\' is not a readable directory'),
    ('train', None, ['--train_size=99999'], '--train_size=99999 exceeds the 1347 training'),
    ('train', None, ['--test_size=451'], '--test_size=451 exceeds the 450 test examples'),
    ('train', None, ['--logdir=/proc/forbidden/run'],
     '--logdir=/proc/forbidden/run is not writable'),
    ('train', 'file', ['--logdir={tmp}/file/run'], 'file is not a directory'),
    ('train', 'finished', [], 'holds a finished run (results.json); pass --overwrite'),
    ('train', None, ['--flagfile=/missing.cfg'], '--flagfile=/missing.cfg cannot be read'),
    ('train', None, ['--epochs=-1'], '--epochs=-1: -1 is not a positive integer'),
    ('train', None, ['--batch_size=0'], '--batch_size=0: 0 is not a positive integer'),
    ('train', None, ['--no_such_flag=3'], 'unknown flag --no_such_flag; allowed: the flags'),
    ('train', None, ['--epoch=3'], 'unknown flag --epoch; did you mean --epochs?'),
    ('train', None, ['--labels=noisy'], '--labels=noisy: value should be one of <true|corrupted'),
    ('train', None, ['--quiet=maybe'], '--quiet=maybe: not a boolean; allowed: --quiet, --noquiet'),
    ('train', None, ['--epochs=ten'], "--epochs=ten: invalid literal for int() with base 10: "
     "'ten'; allowed: a positive integer"),
    ('train', None, ['positional'], "unexpected arguments ['positional']"),
    ('train', None, ['--strategy=mirrored', '--num_cpu_devices=2',
                     '--batch_size=5'], '--batch_size=5 is not divisible by the 2 replicas'),
    ('train', 'empty_class', ['--dataset=image_folder', '--data_dir={folder}'],
     'class folder {folder}/train/c has no images'),
    ('quickstart', None, ['--epochs=0', '--logdir={tmp}/run'], '--epochs=0: 0 is not a positive'),
    ('quickstart', None, ['--logdir=/proc/forbidden/run'], 'is not writable'),
    ('quickstart', None, ['--logdir={tmp}/run', '--bogus'], 'unknown flag --bogus'),
    ('expressivity', None, ['--dataset=digits', '--theta=1.5'], '--theta=1.5 must be in (0, 1)'),
    ('expressivity', None, ['--batch_size=0'], '--batch_size=0: 0 is not a positive integer'),
    ('expressivity', None, ['--dataset=image_folder'], '--data_dir=None is not a readable'),
    ('expressivity', None, ['--flagfile={tmp}/missing.cfg'], 'missing.cfg cannot be read'),
    ('kernels', None, ['--dataset=digits', '--gamma=0'], '--gamma=0.0 must be > 0'),
    ('kernels', None, ['--kernel=poly'], '--kernel=poly: value should be one of <gaussian|linear>'),
    ('kernels', None, ['--dataset=digits', '--features=random_conv', '--filter_size=30'],
     '--filter_size=30 and --pool=2 do not fit a 28x28 input'),
    ('kernels', None, ['--dataset=digits', '--train_size=2000'], '--train_size=2000 exceeds'),
    ('kernels', 'empty_class', ['--dataset=image_folder', '--data_dir={folder}'],
     'class folder {folder}/train/c has no images'),
    ('benchmark', None, ['--models=resnet50'], '--models: resnet50 is unknown'),
    ('benchmark', None, ['--batch_size=0'], '--batch_size=0: 0 is not a positive integer'),
    ('benchmark', None, ['--pipeline_modes=nope'], '--pipeline_modes: nope is unknown'),
    ('benchmark', None, ['--dataset=image_folder',
                         '--data_dir={tmp}/missing'], 'is not a readable directory'),
    ('benchmark', None, ['--bogus'], 'unknown flag --bogus'),
]


def _case_id(case):
  binary, _, args, _ = case
  return f'{binary}:{" ".join(args)}'


@pytest.mark.parametrize('case', FLAG_ERRORS, ids=_case_id)
def test_flag_error_is_one_line_fast_and_creates_nothing(tmp_path, case):
  binary, setup, args, message = case
  names = _setup(tmp_path, setup)
  before = sorted(os.listdir(tmp_path))
  args = [a.format(**names) for a in (TRAIN if binary == 'train' else []) + args]
  start = time.perf_counter()
  proc = _run(binary, *args)
  seconds = time.perf_counter() - start
  assert proc.returncode == 2, proc.stderr
  line = _one_error_line(proc)
  assert message.format(**names) in line
  assert not proc.stdout
  assert seconds < FLAG_ERROR_SECONDS, f'{seconds:.1f} s'
  assert sorted(os.listdir(tmp_path)) == before  # No logdir, nothing else.


_PROBE = '''
import json, runpy, sys
target, args = sys.argv[1], sys.argv[2:]
sys.argv = [target, *args]
code = None
try:
  if target.endswith('.py'):
    runpy.run_path(target, run_name='__main__')
  else:
    runpy.run_module(target, run_name='__main__', alter_sys=True)
except SystemExit as e:
  code = e.code
print(json.dumps({'code': code, 'loaded': sorted(m for m in HEAVY if m in sys.modules)}))
'''.replace('HEAVY', repr(HEAVY))


@pytest.mark.parametrize(
    'binary, args',
    [
        ('train', ['--model=resnet50']),
        ('train', ['--dataset=cifar10', '--data_dir={tmp}/tfds']),  # No network, or it is there.
        ('train', ['--train_size=99999']),
        ('train', ['--epochs=-1']),
        ('quickstart', ['--epochs=0']),
        ('expressivity', ['--dataset=digits', '--theta=2']),
        ('kernels', ['--dataset=digits', '--gamma=-1']),
        ('benchmark', ['--train_size=5000']),
    ],
    ids=lambda v: v if isinstance(v, str) else ' '.join(v))
def test_flag_errors_import_no_tensorflow(tmp_path, binary, args):
  """Run in-process by runpy; the heavy modules must not be in sys.modules."""
  target = BINARIES[binary][-1]
  args = [a.format(tmp=tmp_path) for a in (TRAIN if binary == 'train' else []) + args]
  if binary == 'train' and '--dataset=cifar10' in args:
    from rethinking_tf.data import sources  # pylint: disable=g-import-not-at-top
    if sources._network_available('www.cs.toronto.edu'):  # pylint: disable=protected-access
      pytest.skip('network available: cifar10 would download')
  proc = run_python('-c', _PROBE, target, *args, timeout=120)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['code'] == 2, proc.stderr
  assert result['loaded'] == [], proc.stderr
  assert _one_error_line(proc)
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('binary, flags', [
    ('train', [
        'dataset', 'data_dir', 'labels', 'inputs', 'corrupt_prob', 'train_size', 'seed',
        'image_cache', 'model', 'logdir', 'epochs'
    ]),
    ('expressivity', ['dataset', 'labels', 'inputs', 'image_cache', 'theta', 'one_hot']),
    ('kernels', ['dataset', 'labels', 'inputs', 'image_cache', 'kernel', 'gamma']),
    ('quickstart', ['logdir', 'epochs', 'overwrite']),
    ('benchmark', ['models', 'batch_size', 'dataset']),
])
@pytest.mark.parametrize('help_flag', ['--help', '--helpshort'])
def test_help_lists_the_binarys_own_flags(binary, flags, help_flag):
  proc = _run(binary, help_flag)
  for name in flags:
    assert f'--{name}:' in proc.stdout or f'--[no]{name}:' in proc.stdout, name


def test_startup_lines_filter():
  """The lines TensorFlow 2.21 prints at start-up on a CPU-only machine."""
  from rethinking_tf import cli  # pylint: disable=g-import-not-at-top
  startup = ('WARNING: All log messages before absl::InitializeLog() is called are written to '
             'STDERR\n'
             'I0000 00:00:1796161971.960927    5492 port.cc:153] oneDNN custom operations are '
             'on. You may see slightly different numerical results.\n'
             'I0000 00:00:1796161971.961254    5492 cudart_stub.cc:31] Could not find cuda '
             'drivers on your machine, GPU will not be used.\n'
             'I0000 00:00:1796162005.647218    6676 cpu_feature_guard.cc:227] This TensorFlow '
             'binary is optimized to use available CPU instructions.\n'
             'To enable the following instructions: AVX2 FMA, in other operations, rebuild '
             'TensorFlow with the appropriate compiler flags.\n'
             'E0000 00:00:1796161981.121006    5492 cuda_platform.cc:52] failed call to cuInit: '
             'INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n')
  real = ('W0000 00:00:1796161981.121006    5492 some_op.cc:12] a warning\n'
          'E0000 00:00:1796161981.121006    5492 some_op.cc:12] a real error\n'
          '/x/y.py:3: DeprecationWarning: a Python warning\n'
          'To enable the following instructions: not after a hidden line\n')
  if cli.gpu_driver_loaded():
    pytest.skip('an NVIDIA driver is loaded: the cuInit line is then kept')
  assert cli.filter_startup_lines(startup + real, 2) == real.split('\n', 1)[1]
  assert cli.filter_startup_lines(startup + real, 1) == real
  assert cli.filter_startup_lines(startup + real, 0) == startup + real
  assert cli.filter_startup_lines(real, 3) == real.split('\n', 2)[2]


def _unbalanced_folder(root):
  """Class a has 1 training image, b has 3: --train_size=4 (2 per class) fails
  when the labels are read, after the flags were checked."""
  return _write_folder(root, {'train': {'a': 1, 'b': 3}, 'test': {'a': 1, 'b': 1}})


@pytest.mark.parametrize('binary', ['train', 'expressivity', 'kernels'])
def test_data_error_while_loading_is_one_line(tmp_path, binary):
  folder = _unbalanced_folder(tmp_path / 'folder')
  args = ['--dataset=image_folder', f'--data_dir={folder}', '--train_size=4']
  if binary == 'train':
    args += ['--model=mlp_1x8', '--epochs=1', f'--logdir={tmp_path}/run']
  proc = _run(binary, *args)
  assert proc.returncode == 2, proc.stderr
  line = _one_error_line(proc)  # Also: no TensorFlow start-up lines.
  assert '--train_size=4: class 0 has only 1 examples' in line
  assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('module, flags', [
    ('train', ['dataset', 'labels', 'inputs', 'model', 'logdir']),
    ('quickstart', ['logdir', 'epochs']),
])
def test_console_script_help_lists_the_flags(module, flags):
  """setup.cfg's rethinking-train / rethinking-quickstart call run_main from a
  program that is not the module: --help must still list its flags."""
  code = (f'import sys; sys.argv = ["/usr/bin/rethinking-{module}", "--helpshort"]\n'
          f'from rethinking_tf import {module}; {module}.run_main()')
  proc = run_python('-c', code, timeout=60)
  for name in flags:
    assert f'--{name}:' in proc.stdout, (name, proc.stdout)


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_undecodable_image_is_one_line_naming_the_file(tmp_path, damage):
  """A .jpg that is not one, or is cut short: `data.DataError('<file>: <reason>')`
  from the loader, one line from the binary."""
  folder = _write_folder(tmp_path / 'folder', {'train': {'a': 2, 'b': 2}, 'test': {'a': 1, 'b': 1}})
  bad = os.path.join(folder, 'train', 'b', 'bad.jpg')
  if damage == 'garbage':
    with open(bad, 'wb') as f:
      f.write(b'these bytes are no image format at all' * 10)
  else:
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(bad, format='JPEG')
    with open(bad, 'rb') as f:
      head = f.read()[:300]
    with open(bad, 'wb') as f:
      f.write(head)
  proc = _run('train', '--dataset=image_folder', f'--data_dir={folder}', '--model=mlp_1x8',
              '--epochs=1', f'--logdir={tmp_path}/run')
  assert proc.returncode == 2, proc.stderr
  line = _one_error_line(proc)
  assert bad in line and 'Traceback' not in proc.stderr


def test_binaries_freeze_the_heap_before_exit():
  # cli.run freezes the garbage collector's objects once main returns, so the
  # interpreter does not spend seconds collecting TensorFlow's objects at exit.
  code = ('import atexit, gc\n'
          'from rethinking_tf import cli\n'
          'atexit.register(lambda: print("frozen", gc.get_freeze_count()))\n'
          'cli.run(lambda argv: None)\n')
  out = run_python('-c', code, timeout=60, check=True).stdout
  assert int(out.split()[-1]) > 1000
