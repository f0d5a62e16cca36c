"""Exact resume: a run killed (SIGKILL) at any moment, then finished by the
training binary, writes the metrics.csv and steps.csv of an uninterrupted run.

Exact equality is expected: the same machine, the same process type (a fresh
Python process each), the same kernels on the same batch shapes in the same
order, and the checkpoint restores every state the next steps read (weights,
optimizer and step counter, dropout's seed states, the epoch's running sums).
"""

import csv
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, run_module

TRAIN = 'rethinking_tf.train'
# 200 digits in batches of 50: 4 steps an epoch; windows of 3 steps span epochs.
MLP = dict(dataset='digits',
           train_size=200,
           batch_size=50,
           model='mlp_1x64',
           dropout=0.5,
           epochs=3,
           log_every_steps=3,
           steps_per_execution=1)
# The small Inception (BatchNorm) on a few digits, with dropout.
INCEPTION = dict(dataset='digits',
                 train_size=40,
                 test_size=40,
                 batch_size=20,
                 model='inception',
                 dropout=0.3,
                 epochs=2,
                 log_every_steps=3,
                 steps_per_execution=1)

# Runs the trainer through `trainer.run` with a hook that kills this process
# at the chosen moment: argv = logdir, moment, epoch, then the config as JSON.
_KILLER = textwrap.dedent('''\
    import json, os, signal, sys
    from rethinking_tf import cli
    cli.import_tensorflow()
    from rethinking_tf.training import config as config_lib, trainer

    logdir, moment, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = json.loads(sys.argv[4])

    def kill():
      os.kill(os.getpid(), signal.SIGKILL)

    class Kill(trainer.EpochHooks):
      def steps_done(self, e, step):
        if moment == 'mid_epoch' and e == epoch and step % 4 == 2:
          kill()
      def training_done(self, e, step):
        if moment == 'training_done' and e == epoch:
          kill()
      def checkpoint_saved(self, e, step):
        if moment == 'checkpoint' and e == epoch:
          kill()
      def epoch_done(self, e, step, seconds):
        if moment == 'metrics' and e == epoch:
          kill()

    config = config_lib.TrainConfig(logdir=logdir, verbose=False, **settings)
    trainer.run(config, hooks=Kill())
    ''')


def _flags(settings):
  return [f'--{k}={v}' for k, v in settings.items()] + ['--quiet']


def _csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _metrics(logdir):
  return [{k: v for k, v in r.items() if k != 'seconds'} for r in _csv(f'{logdir}/metrics.csv')]


def _killed_then_finished(tmp_path, settings, moment, epoch):
  import json  # pylint: disable=g-import-not-at-top
  logdir = str(tmp_path / f'{moment}_{epoch}')
  script = tmp_path / 'killer.py'
  script.write_text(_KILLER)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  proc = subprocess.run(
      [sys.executable,
       str(script), logdir, moment,
       str(epoch), json.dumps(settings)],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert not os.path.exists(f'{logdir}/results.json')
  killed = _metrics(logdir) if os.path.exists(f'{logdir}/metrics.csv') else []
  finished = run_module(TRAIN, *_flags(settings), f'--logdir={logdir}')
  assert finished.returncode == 0, finished.stderr[-3000:]
  return logdir, killed


@pytest.fixture(scope='module')
def straight_runs(tmp_path_factory):
  """Uninterrupted runs of the binary, by name of settings."""
  runs = {}

  def get(name, settings):
    if name not in runs:
      logdir = str(tmp_path_factory.mktemp('straight') / name)
      proc = run_module(TRAIN, *_flags(settings), f'--logdir={logdir}')
      assert proc.returncode == 0, proc.stderr[-3000:]
      runs[name] = logdir
    return runs[name]

  return get


def _check_equal(logdir, straight):
  assert _metrics(logdir) == _metrics(straight)
  assert _csv(f'{logdir}/steps.csv') == _csv(f'{straight}/steps.csv')
  with open(f'{logdir}/initial.weights.h5', 'rb') as a, open(f'{straight}/initial.weights.h5',
                                                             'rb') as b:
    assert len(a.read()) == len(b.read())


@pytest.mark.slow
def test_kill_after_checkpoint_recomputes_the_row_by_evaluation(tmp_path, straight_runs):
  """Killed between epoch 2's checkpoint and its metrics.csv row: the resumed run
  evaluates that checkpoint for the row (never training epoch 2 again)."""
  logdir, killed = _killed_then_finished(tmp_path, MLP, 'checkpoint', 2)
  assert [r['epoch'] for r in killed] == ['1']
  straight = straight_runs('mlp', MLP)
  _check_equal(logdir, straight)
  steps = [r['step'] for r in _csv(f'{logdir}/steps.csv')]
  assert steps == ['3', '6', '9', '12']
  assert [r['epoch'] for r in _csv(f'{logdir}/steps.csv')] == ['1', '2', '3', '3']


@pytest.mark.slow
# After a step mid-epoch and after an epoch's metrics row (after the checkpoint:
# above). Killing after an epoch's last step, before its evaluation, is the
# mid-epoch case for the resumed run (both restart from the previous checkpoint).
@pytest.mark.parametrize('moment, epoch', [('mid_epoch', 2), ('metrics', 2)])
def test_kill_at_any_moment_gives_the_uninterrupted_run(tmp_path, straight_runs, moment, epoch):
  logdir, killed = _killed_then_finished(tmp_path, MLP, moment, epoch)
  done = {'mid_epoch': epoch - 1, 'training_done': epoch - 1, 'checkpoint': epoch - 1}
  assert len(killed) == done.get(moment, epoch)
  _check_equal(logdir, straight_runs('mlp', MLP))


@pytest.mark.slow
@pytest.mark.parametrize('epoch', [2, 3])
def test_kill_with_an_evaluation_interval(tmp_path, straight_runs, epoch):
  """--eval_every_epochs=3 over 4 epochs (epochs 3 and 4 evaluated), killed after
  epoch 2's checkpoint (its row rebuilt without evaluation) or epoch 3's (with
  it): the uninterrupted run's rows, empty cells included."""
  settings = dict(MLP, epochs=4, eval_every_epochs=3)
  logdir, killed = _killed_then_finished(tmp_path, settings, 'checkpoint', epoch)
  assert len(killed) == epoch - 1
  _check_equal(logdir, straight_runs('mlp_every3', settings))
  assert [r['test_accuracy'] != '' for r in _metrics(logdir)] == [False, False, True, True]


@pytest.mark.slow
def test_kill_with_batch_norm_and_dropout(tmp_path, straight_runs):
  logdir, _ = _killed_then_finished(tmp_path, INCEPTION, 'mid_epoch', 1)
  _check_equal(logdir, straight_runs('inception', INCEPTION))


def test_checkpoint_holds_the_seed_states_and_running_sums(tmp_path):
  """Dropout's `SeedGenerator` state is not tracked through the model: the
  trainer's checkpoint holds it (and the epoch's running sums) explicitly."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig(logdir=str(tmp_path), verbose=False, **dict(MLP, epochs=1))
  trainer.run(config)
  names = [n for n, _ in tf.train.list_variables(str(tmp_path / 'checkpoints'))]
  seeds = [n for n in names if n.startswith('seeds/')]
  assert len(seeds) == 1 and 'Dropout' in seeds[0], names
  for key in ('loss_sum', 'correct', 'count'):
    assert any(n.startswith(f'train_sums/{key}') for n in names), names
  reader = tf.train.load_checkpoint(str(tmp_path / 'checkpoints'))
  assert reader.get_tensor([n for n in names if n.startswith('train_sums/count')][0]) == 200
  # Four steps drew four dropout masks from the seed generator.
  import numpy as np  # pylint: disable=g-import-not-at-top
  state = np.asarray(reader.get_tensor(seeds[0]))
  assert state[1] != 0


class _Interrupt(Exception):
  pass


def test_stop_between_checkpoint_and_metrics_recomputes_the_row(tmp_path):
  """In one process (cheap): a run stopped right after epoch 2's checkpoint
  resumes at epoch 3 with epoch 2's row evaluated from the checkpoint and its
  running sums, equal to an uninterrupted run's, and trains 4 steps, not 8."""
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top

  class Stop(trainer.EpochHooks):

    def checkpoint_saved(self, epoch, step):
      if epoch == 2:
        raise _Interrupt()

  make = lambda d: config_lib.TrainConfig(logdir=str(tmp_path / d), verbose=False, **MLP)
  with pytest.raises(_Interrupt):
    trainer.run(make('resumed'), hooks=Stop())
  assert [r['epoch'] for r in _metrics(tmp_path / 'resumed')] == ['1']
  assert [r['step'] for r in _csv(tmp_path / 'resumed' / 'steps.csv')] == ['3', '6']
  first = (tmp_path / 'resumed' / 'initial.weights.h5').stat().st_mtime_ns
  steps = []

  class Count(trainer.EpochHooks):

    def steps_done(self, epoch, step):
      steps.append(step)

  trainer.run(make('resumed'), hooks=Count())
  assert steps == [9, 10, 11, 12]
  trainer.run(make('straight'))
  assert _metrics(tmp_path / 'resumed') == _metrics(tmp_path / 'straight')
  assert _csv(tmp_path / 'resumed' / 'steps.csv') == _csv(tmp_path / 'straight' / 'steps.csv')
  assert (tmp_path / 'resumed' / 'initial.weights.h5').stat().st_mtime_ns == first


def test_a_run_started_before_a_setting_existed_resumes(tmp_path):
  """config.json without `log_every_steps` matches its default, not another value."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import rundir  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig(logdir=str(tmp_path), dataset='digits')
  rundir.prepare_logdir(config, None)
  settings = json.loads((tmp_path / 'config.json').read_text())
  del settings['log_every_steps']
  (tmp_path / 'config.json').write_text(json.dumps(settings))
  rundir.prepare_logdir(config, None)
  (tmp_path / 'config.json').write_text(json.dumps(settings))
  with pytest.raises(rundir.RunExists, match='log_every_steps'):
    rundir.prepare_logdir(dataclasses.replace(config, log_every_steps=5), None)
