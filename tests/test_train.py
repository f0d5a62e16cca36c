"""End-to-end runs of the training binary: outputs, strategies, resume, bad flags."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_module

TRAIN = 'rethinking_tf.train'
TINY = ['--dataset=digits', '--train_size=200', '--model=mlp_1x64', '--batch_size=50', '--quiet']


def _rows(logdir):
  with open(os.path.join(logdir, 'metrics.csv')) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_default_strategy_writes_everything(tmp_path):
  logdir = str(tmp_path / 'run')
  proc = run_module(TRAIN, *TINY, '--epochs=2', '--labels=corrupted', '--corrupt_prob=0.5',
                    f'--logdir={logdir}')
  assert proc.returncode == 0, proc.stderr
  results = json.load(open(os.path.join(logdir, 'results.json')))
  for key in ('train_accuracy', 'test_accuracy', 'best_test_accuracy', 'epochs_completed',
              'fit_epoch', 'trainable_params', 'label_noise_fraction', 'wall_seconds',
              'examples_per_second', 'versions', 'test_top5_accuracy', 'best_test_top5_accuracy'):
    assert key in results
  assert results['epochs_completed'] == 2 and results['steps_completed'] == 8
  assert results['trainable_params'] == 2352 * 64 + 64 + 650
  assert 0.3 < results['label_noise_fraction'] < 0.6
  assert results['config']['corrupt_prob'] == 0.5
  assert results['versions']['tensorflow']
  rows = _rows(logdir)
  assert [r['epoch'] for r in rows] == ['1', '2'] and [r['step'] for r in rows] == ['4', '8']
  assert float(rows[1]['learning_rate']) == pytest.approx(0.01 * 0.95)
  assert os.listdir(os.path.join(logdir, 'checkpoints'))
  # One event directory per split, the same tags in each, and an hparams record.
  assert {'train', 'train_eval', 'test'} <= set(os.listdir(logdir))
  assert {'loss', 'accuracy', 'learning_rate'} <= set(_events(os.path.join(logdir, 'train')))
  for split in ('train_eval', 'test'):
    assert {'loss', 'accuracy', 'top5_accuracy'} <= set(_events(os.path.join(logdir, split)))
  assert '_hparams_/session_start_info' in _events(logdir)
  # The stored flagfile repeats the run.
  flagfile = open(os.path.join(logdir, 'flags.cfg')).read()
  assert '--corrupt_prob=0.5' in flagfile and '--model=mlp_1x64' in flagfile
  again = str(tmp_path / 'again')
  proc = run_module(TRAIN, f'--flagfile={logdir}/flags.cfg', f'--logdir={again}')
  assert proc.returncode == 0, proc.stderr
  # To the last digit: the same kernels on the same shapes in the same order,
  # on the same machine (TensorFlow's CPU kernels, Eigen and oneDNN, are
  # run-to-run deterministic for fixed shapes and thread count).
  assert _rows(again)[1]['train_loss'] == rows[1]['train_loss']


@pytest.mark.slow
def test_finished_run_is_not_overwritten(tmp_path):
  logdir = str(tmp_path / 'run')
  assert run_module(TRAIN, *TINY, '--epochs=1', f'--logdir={logdir}').returncode == 0
  before = open(os.path.join(logdir, 'results.json')).read()
  proc = run_module(TRAIN, *TINY, '--epochs=1', f'--logdir={logdir}')
  assert proc.returncode == 2
  assert 'finished run' in proc.stderr and '--overwrite' in proc.stderr
  assert open(os.path.join(logdir, 'results.json')).read() == before
  proc = run_module(TRAIN, *TINY, '--epochs=1', '--seed=5', f'--logdir={logdir}', '--overwrite')
  assert proc.returncode == 0
  assert json.load(open(os.path.join(logdir, 'results.json')))['config']['seed'] == 5


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_default(tmp_path):
  # 1,001 examples in batches of 50: each epoch's last training batch and the
  # train-eval pass's last batch hold 1 example, fewer than the 2 replicas.
  args = [
      '--dataset=digits', '--train_size=1001', '--model=mlp_1x64', '--batch_size=50', '--quiet',
      '--epochs=2', '--labels=random', '--steps_per_execution=8', '--log_every_steps=5'
  ]
  one = run_module(TRAIN, *args, f'--logdir={tmp_path}/one')
  two = run_module(TRAIN, *args, '--strategy=mirrored', '--num_cpu_devices=2',
                   f'--logdir={tmp_path}/two')
  assert one.returncode == 0 and two.returncode == 0, two.stderr
  r1 = json.load(open(f'{tmp_path}/one/results.json'))
  r2 = json.load(open(f'{tmp_path}/two/results.json'))
  assert r2['num_replicas'] == 2 and r1['num_replicas'] == 1
  assert r2['steps_per_execution'] == 8 and r2['steps_completed'] == 42
  # Same data, same global batches, same initial weights: the same run up to
  # float sums; every example counted once.
  assert r2['label_noise_fraction'] == r1['label_noise_fraction']
  rows1, rows2 = _rows(f'{tmp_path}/one'), _rows(f'{tmp_path}/two')
  assert len(rows1) == len(rows2) == 2
  for a, b in zip(rows1, rows2):
    assert a['step'] == b['step']
    for k in a:
      if k not in ('epoch', 'step', 'seconds'):
        assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-4, abs=1e-6), k
  # steps.csv: windows of 5 steps (one spans the epochs' end), summed over replicas.
  steps1 = list(csv.DictReader(open(f'{tmp_path}/one/steps.csv')))
  steps2 = list(csv.DictReader(open(f'{tmp_path}/two/steps.csv')))
  assert [r['step'] for r in steps2] == [str(5 * i) for i in range(1, 9)]
  for a, b in zip(steps1, steps2, strict=True):
    assert a['epoch'] == b['epoch']
    for k in ('train_loss', 'train_accuracy'):
      assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-4, abs=1e-6), k


@pytest.mark.slow
def test_mirrored_batch_norm_is_synchronized(tmp_path):
  """One step of the small Inception on 50 examples: the loss of a step whose
  BatchNorm statistics span the global batch equals the one-device loss (per-
  replica statistics over 25 examples would not)."""
  args = [
      '--dataset=digits', '--train_size=50', '--batch_size=50', '--model=inception', '--epochs=1',
      '--quiet'
  ]
  one = run_module(TRAIN, *args, f'--logdir={tmp_path}/one')
  two = run_module(TRAIN, *args, '--strategy=mirrored', '--num_cpu_devices=2',
                   f'--logdir={tmp_path}/two')
  assert one.returncode == 0 and two.returncode == 0, two.stderr
  (a,), (b,) = _rows(f'{tmp_path}/one'), _rows(f'{tmp_path}/two')
  assert a['step'] == b['step'] == '1'
  assert float(b['train_loss']) == pytest.approx(float(a['train_loss']), rel=1e-5)


@pytest.mark.slow
def test_resume_after_interruption(tmp_path):
  logdir = str(tmp_path / 'run')
  args = [
      sys.executable, '-m', TRAIN, '--dataset=digits', '--model=mlp_1x64', '--epochs=30',
      f'--logdir={logdir}'
  ]
  proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  deadline = time.time() + 120
  while time.time() < deadline:
    if os.path.exists(os.path.join(logdir, 'metrics.csv')) and len(_rows(logdir)) >= 3:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = len(_rows(logdir))
  assert 3 <= done < 30, 'the run was not interrupted midway'
  assert not os.path.exists(os.path.join(logdir, 'results.json'))
  resumed = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resuming from epoch' in resumed.stdout
  rows = _rows(logdir)
  assert [int(r['epoch']) for r in rows] == list(range(1, 31))
  assert [int(r['step']) for r in rows] == [11 * e for e in range(1, 31)]
  # An uninterrupted run gives the same numbers (the schedule and data order
  # are keyed by epoch, and the optimizer state was restored).
  straight = str(tmp_path / 'straight')
  assert subprocess.run(args[:-1] + [f'--logdir={straight}'],
                        cwd=REPO,
                        capture_output=True,
                        timeout=300).returncode == 0
  a = json.load(open(os.path.join(logdir, 'results.json')))
  b = json.load(open(os.path.join(straight, 'results.json')))
  assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-4)
  assert a['test_accuracy'] == pytest.approx(b['test_accuracy'], abs=0.005)


def test_resume_refuses_other_settings(tmp_path):
  logdir = tmp_path / 'run'
  logdir.mkdir()
  (logdir / 'config.json').write_text(json.dumps({'model': 'alexnet'}))
  proc = run_module(TRAIN, *TINY, f'--logdir={logdir}')
  assert proc.returncode == 2 and 'other settings' in proc.stderr


def test_resume_with_the_other_image_cache_value(tmp_path):
  """The image cache changes nothing a run computes: either value resumes."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import rundir  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig(logdir=str(tmp_path), dataset='digits')
  rundir.prepare_logdir(config, None)
  rundir.prepare_logdir(dataclasses.replace(config, image_cache=False), None)
  with pytest.raises(rundir.RunExists, match='seed'):
    rundir.prepare_logdir(
        dataclasses.replace(config, randomization=dataclasses.replace(config.randomization,
                                                                      seed=3)), None)


@pytest.mark.parametrize('flag, message', [
    ('--model=resnet50', '--model=resnet50 is unknown; allowed: inception'),
    ('--dataset=mnist', '--dataset=mnist: value should be one of'),
    ('--corrupt_prob=1.5', '--corrupt_prob=1.5 is outside [0, 1]'),
    ('--train_size=99999', '--train_size=99999 exceeds the 1347 training examples'),
    ('--test_size=451', '--test_size=451 exceeds the 450 test examples'),
    ('--labels=noisy', '--labels=noisy: value should be one of'),
    ('--logdir=/proc/forbidden', '--logdir=/proc/forbidden is not writable'),
    ('--strategy=mirrored --num_cpu_devices=2 --batch_size=5',
     '--batch_size=5 is not divisible by the 2 replicas'),
    ('--eval_every_epochs=0', '--eval_every_epochs=0: 0 is not a positive integer'),
    ('--eval_every_epochs=-3', '--eval_every_epochs=-3: -3 is not a positive integer'),
])
def test_bad_flags_fail_fast_with_one_line(tmp_path, flag, message):
  args = ['--dataset=digits', f'--logdir={tmp_path}/run', '--model=mlp_1x64']
  start = time.time()
  proc = run_module(TRAIN, *args, *flag.split())
  assert proc.returncode == 2
  assert message in proc.stderr
  assert time.time() - start < 5  # Before TensorFlow starts (tests/test_cli.py).
  assert not os.path.exists(f'{tmp_path}/run')
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr


def test_image_folder_without_data_dir(tmp_path):
  proc = run_module(TRAIN, '--dataset=image_folder', f'--logdir={tmp_path}/run')
  assert proc.returncode == 2
  assert "--data_dir=None is not a readable directory" in proc.stderr


def _jpeg_folder(root, per_class=10):
  """A small image_folder (train/ and test/, 2 classes) of random 32x32 JPEGs."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split in ('train', 'test'):
    for name in ('cat', 'dog'):
      os.makedirs(root / split / name)
      for i in range(per_class):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        tf.io.write_file(str(root / split / name / f'{i}.jpg'), tf.io.encode_jpeg(image))
  return str(root)


@pytest.mark.slow
def test_truncated_image_fails_with_one_line_naming_it(tmp_path):
  root = _jpeg_folder(tmp_path / 'images')
  bad = tmp_path / 'images' / 'train' / 'dog' / '3.jpg'
  bad.write_bytes(bad.read_bytes()[:300])
  proc = run_module(TRAIN, '--dataset=image_folder', f'--data_dir={root}', '--model=mlp_1x8',
                    '--epochs=1', '--quiet', f'--logdir={tmp_path}/run')
  assert proc.returncode == 2, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and errors[0].startswith(f'error: {bad}: cannot decode'), proc.stderr
  assert 'truncated' in errors[0] and 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / 'run' / 'metrics.csv')


@pytest.mark.slow
def test_image_cache_flag(tmp_path):
  """--noimage_cache writes no cache entry; the default writes one per split."""
  from rethinking_tf.data import image_cache  # pylint: disable=g-import-not-at-top
  root = _jpeg_folder(tmp_path / 'images')
  entries = [image_cache.entry_path(root, split) for split in ('train', 'test')]
  args = [
      '--dataset=image_folder', f'--data_dir={root}', '--model=mlp_1x8', '--epochs=1', '--quiet'
  ]
  proc = run_module(TRAIN, *args, '--noimage_cache', f'--logdir={tmp_path}/off')
  assert proc.returncode == 0, proc.stderr
  assert not any(os.path.exists(e) for e in entries)
  assert '--noimage_cache' in open(tmp_path / 'off' / 'flags.cfg').read()
  proc = run_module(TRAIN, *args, f'--logdir={tmp_path}/on')
  assert proc.returncode == 0, proc.stderr
  assert all(os.path.exists(e) for e in entries)
  # The cache changes nothing a run computes.
  assert _rows(tmp_path / 'on')[0]['train_loss'] == _rows(tmp_path / 'off')[0]['train_loss']


def test_cifar10_offline_fails_fast(tmp_path):
  from rethinking_tf.data import sources  # pylint: disable=g-import-not-at-top
  if sources._network_available('www.cs.toronto.edu'):  # pylint: disable=protected-access
    pytest.skip('network available: cifar10 would download')
  start = time.time()
  proc = run_module(TRAIN, '--dataset=cifar10', f'--data_dir={tmp_path}/tfds',
                    f'--logdir={tmp_path}/run')
  assert proc.returncode == 2
  assert 'no network' in proc.stderr and 'image_folder' in proc.stderr
  assert time.time() - start < 10  # The network probe, then no TensorFlow.
  assert not os.path.exists(f'{tmp_path}/run') and not os.path.exists(f'{tmp_path}/tfds')


@pytest.mark.slow
def test_steps_per_execution_computes_the_same_run(tmp_path):
  """Any steps per call (3 here: calls of 3 + 1 steps per epoch) gives step-for-step
  equal metrics; the default is min(32, steps per epoch).

  Exactly equal, on any CPU: both runs execute the same kernels on the same
  batch shapes in the same order (grouping steps into one call changes no
  shape), and CPU kernels are run-to-run deterministic on one machine.
  """
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  assert [config_lib.auto_steps_per_execution(n) for n in (4, 11, 391, 40, 1)] == [4, 11, 32, 32, 1]
  args = [*TINY, '--epochs=2', '--labels=random', '--dropout=0.5']
  runs = {'one': 1, 'three': 3, 'auto': 0}
  for name, spe in runs.items():
    proc = run_module(TRAIN, *args, f'--steps_per_execution={spe}', f'--logdir={tmp_path}/{name}')
    assert proc.returncode == 0, proc.stderr
  strip = lambda rows: [{k: v for k, v in r.items() if k != 'seconds'} for r in rows]
  for name in runs:
    assert strip(_rows(f'{tmp_path}/{name}')) == strip(_rows(f'{tmp_path}/one')), name
  assert [r['step'] for r in _rows(f'{tmp_path}/three')] == ['4', '8']
  spe = lambda d: json.load(open(f'{tmp_path}/{d}/results.json'))['steps_per_execution']
  assert [spe(name) for name in runs] == [1, 3, 4]


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _weights(checkpoint_dir):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(checkpoint_dir)
  return {
      k: np.asarray(reader.get_tensor(k))
      for k in reader.get_variable_to_shape_map()
      if k.startswith(('model/', 'optimizer/'))
  }


@pytest.mark.slow
def test_multi_worker_two_local_processes(tmp_path):
  """BUILD.md's several-machines recipe, with both workers on 127.0.0.1."""
  logdir = str(tmp_path / 'run')
  args = ['--dataset=digits', '--model=mlp_1x64', '--epochs=2', '--quiet']
  ports = _free_ports(2)
  procs = []
  try:
    for index in range(2):
      tf_config = {
          'cluster': {
              'worker': [f'127.0.0.1:{p}' for p in ports]
          },
          'task': {
              'type': 'worker',
              'index': index
          }
      }
      env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
      log = open(tmp_path / f'worker_{index}.log', 'w')
      procs.append(
          subprocess.Popen(
              [sys.executable, '-m', TRAIN, '--strategy=multi_worker', *args, f'--logdir={logdir}'],
              cwd=REPO,
              env=env,
              stdout=log,
              stderr=subprocess.STDOUT))
    deadline = time.time() + 300
    for p in procs:
      p.wait(timeout=max(1, deadline - time.time()))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for index, p in enumerate(procs):
    assert p.returncode == 0, (tmp_path / f'worker_{index}.log').read_text()[-3000:]
  chief = json.load(open(os.path.join(logdir, 'results.json')))
  assert chief['num_replicas'] == 2 and chief['steps_completed'] == 22
  worker = os.path.join(logdir, 'workers', 'worker_1')
  a, b = _weights(os.path.join(logdir,
                               'checkpoints')), _weights(os.path.join(worker, 'checkpoints'))
  assert a.keys() == b.keys() and len(a) >= 4
  for k in a:
    assert (a[k] == b[k]).all(), k
  one = str(tmp_path / 'one')
  proc = run_module(TRAIN, *args, f'--logdir={one}')
  assert proc.returncode == 0, proc.stderr
  single = json.load(open(os.path.join(one, 'results.json')))
  assert abs(chief['test_accuracy'] - single['test_accuracy']) <= 0.02
  assert chief['train_loss'] == pytest.approx(single['train_loss'], rel=1e-3)


def _events(directory):
  """{tag: [(step, value)]} of one event directory (value None when not a scalar)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(directory), size_guidance={'tensors': 0})
  acc.Reload()
  value = lambda a: float(a) if a.shape == () and a.dtype.kind == 'f' else None
  return {
      tag: [(e.step, value(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
      for tag in acc.Tags()['tensors']
  }


def test_initial_weights_steps_csv_and_event_directories(tmp_path):
  """One in-process run (digits, 4 steps an epoch, a row every 2 steps): the
  initial weights, steps.csv's windows and the per-split event directories."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rethinking_tf import models  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig(logdir=str(tmp_path),
                                  dataset='digits',
                                  train_size=200,
                                  batch_size=50,
                                  model='mlp_1x64',
                                  epochs=2,
                                  log_every_steps=2,
                                  verbose=False)
  results = trainer.run(config)
  # initial.weights.h5: the weights before the first step, not the final ones.
  fresh = models.build('mlp_1x64', (28, 28, 3), 10, seed=0)
  initial = models.build('mlp_1x64', (28, 28, 3), 10, seed=7)
  initial.load_weights(str(tmp_path / 'initial.weights.h5'))
  for a, b in zip(fresh.get_weights(), initial.get_weights()):
    np.testing.assert_array_equal(a, b)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(str(tmp_path / 'checkpoints'))
  trained = [
      reader.get_tensor(k)
      for k, shape in reader.get_variable_to_shape_map().items()
      if len(shape) == 2  # the kernels (and their momenta)
  ]
  assert len(trained) >= 2 and not any(
      np.array_equal(t, w) for t in trained for w in initial.get_weights())
  # steps.csv: exactly these columns; two windows of 2 steps per epoch, whose
  # example-weighted mean is the epoch's running training loss.
  with open(tmp_path / 'steps.csv') as f:
    assert f.readline().strip() == 'step,epoch,train_loss,train_accuracy'
  steps = list(csv.DictReader(open(tmp_path / 'steps.csv')))
  assert [(r['step'], r['epoch']) for r in steps] == [('2', '1'), ('4', '1'), ('6', '2'),
                                                      ('8', '2')]
  rows = _rows(tmp_path)
  for epoch, row in enumerate(rows):
    pair = steps[2 * epoch:2 * epoch + 2]
    for key in ('train_loss', 'train_accuracy'):
      mean = (float(pair[0][key]) + float(pair[1][key])) / 2  # 100 examples each
      assert mean == pytest.approx(float(row[key]), rel=1e-5), key
  # TensorBoard, as Keras' callback lays it out: one directory per split.
  root = _events(tmp_path)
  train, train_eval, test = (_events(tmp_path / d) for d in ('train', 'train_eval', 'test'))
  assert set(train) == {'loss', 'accuracy', 'learning_rate', 'batch_loss', 'batch_accuracy'}
  assert set(train_eval) == set(test) == {'loss', 'accuracy', 'top5_accuracy'}
  assert [s for s, _ in test['accuracy']] == [1, 2]
  assert test['accuracy'][-1][1] == pytest.approx(results['test_accuracy'])
  assert train_eval['loss'][0][1] == pytest.approx(float(rows[0]['train_eval_loss']))
  assert [s for s, _ in train['batch_loss']] == [2, 4, 6, 8]
  assert [v for _, v in train['batch_loss']
         ] == pytest.approx([float(r['train_loss']) for r in steps])
  assert train['learning_rate'][1][1] == pytest.approx(0.01 * 0.95)
  assert '_hparams_/session_start_info' in root
  assert {'test_accuracy', 'train_accuracy', 'gap'} <= set(root)
  gap = results['train_accuracy'] - results['test_accuracy']
  assert root['gap'] == [(2, pytest.approx(gap))]
  assert not any('global_step' in tags for tags in (root, train, train_eval, test))


@pytest.mark.slow
def test_tensorboard_overlays_train_and_test_accuracy(tmp_path):
  """TensorBoard itself, over its HTTP API (127.0.0.1, stopped by the test):
  the run's splits are runs with the same `accuracy` tag, so one chart."""
  import urllib.request  # pylint: disable=g-import-not-at-top
  logdir = tmp_path / 'runs' / 'one'
  proc = run_module(TRAIN, *TINY, '--epochs=1', '--log_every_steps=2', f'--logdir={logdir}')
  assert proc.returncode == 0, proc.stderr
  (port,) = _free_ports(1)
  board = subprocess.Popen([
      sys.executable, '-m', 'tensorboard.main', f'--logdir={tmp_path / "runs"}', '--host=127.0.0.1',
      f'--port={port}', '--load_fast=false'
  ],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  try:
    deadline, tags = time.time() + 90, {}
    while time.time() < deadline and not tags.get('one/test'):
      try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/data/plugin/scalars/tags',
                                    timeout=5) as r:
          tags = json.load(r)
      except OSError:
        time.sleep(1)
    # The hparams tab: the run's final accuracies and gap as metrics.
    request = urllib.request.Request(f'http://127.0.0.1:{port}/data/plugin/hparams/experiment',
                                     data=json.dumps({
                                         'experimentName': ''
                                     }).encode(),
                                     headers={
                                         'Content-Type': 'application/json',
                                         'X-XSRF-Protected': '1'
                                     })
    with urllib.request.urlopen(request, timeout=10) as r:
      experiment = json.load(r)
  finally:
    board.kill()
    board.wait()
  metrics = {(m['name'].get('group', ''), m['name']['tag']) for m in experiment['metricInfos']}
  assert {('', 'test_accuracy'), ('', 'train_accuracy'), ('', 'gap'),
          ('test', 'accuracy')} <= metrics
  assert {h['name'] for h in experiment['hparamInfos']} >= {'model', 'corrupt_prob', 'seed'}
  assert {'one/train', 'one/train_eval', 'one/test'} <= set(tags), tags
  for run in ('one/train', 'one/train_eval', 'one/test'):
    assert {'loss', 'accuracy'} <= set(tags[run]), run
  assert {'batch_loss', 'batch_accuracy', 'learning_rate'} <= set(tags['one/train'])
  assert not any('global_step' in t for run in tags.values() for t in run)
