"""--eval_every_epochs: the evaluation passes every K epochs and at the last.

The training computation does not change (the passes read the weights, they
touch no training state), so a run with K > 1 has the training columns of
the K = 1 run and its evaluated columns at the evaluated epochs, exactly
(one process, the same kernels on the same shapes in the same order).
"""

import csv
import dataclasses
import json
import math
import os

import pytest

from conftest import write_run_dir

# 200 digits in batches of 50: 4 steps an epoch.
TINY = dict(dataset='digits',
            train_size=200,
            batch_size=50,
            model='mlp_1x64',
            dropout=0.5,
            log_every_steps=3,
            steps_per_execution=1)
EVAL = ('train_eval_loss', 'train_eval_accuracy', 'test_loss', 'test_accuracy',
        'train_eval_top5_accuracy', 'test_top5_accuracy')


def _rows(logdir):
  with open(os.path.join(logdir, 'metrics.csv'), newline='') as f:
    return [{k: v for k, v in r.items() if k != 'seconds'} for r in csv.DictReader(f)]


def _config(logdir, **settings):
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.TrainConfig(logdir=str(logdir), verbose=False, **{**TINY, **settings})


def _train(logdir, hooks=None, **settings):
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top
  return trainer.run(_config(logdir, **settings), hooks=hooks)


def _events(directory):
  """{tag: [steps]} of one event directory."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(directory), size_guidance={'tensors': 0})
  acc.Reload()
  return {tag: [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()['tensors']}


def _as_k(every_epoch, k, epochs):
  """The rows a run with interval k should write: every_epoch's, evaluated
  columns kept at epochs k, 2k, ... and the last."""
  return [{
      **r,
      **{
          c: '' for c in EVAL
      }
  } if int(r['epoch']) % k and int(r['epoch']) < epochs else r for r in every_epoch[:epochs]]


@pytest.fixture(scope='module')
def every_epoch(tmp_path_factory):
  """The paper's evaluation after every epoch: 6 epochs."""
  logdir = tmp_path_factory.mktemp('every_epoch') / 'run'
  results = _train(logdir, epochs=6)
  return logdir, _rows(logdir), results


def test_evaluated_epochs_and_what_decides_on_them():
  from rethinking_tf.training import progress  # pylint: disable=g-import-not-at-top
  assert [e for e in range(1, 12) if progress.evaluates(e, 4, 10)] == [4, 8, 10, 11]
  assert all(progress.evaluates(e, 1, 10) for e in range(1, 11))
  row = lambda e, train=None, test=None: dict(epoch=e,
                                              step=10 * e,
                                              seconds=e,
                                              train_loss=1.0,
                                              train_accuracy=0.5,
                                              train_eval_loss=None if train is None else 1.0,
                                              train_eval_accuracy=train,
                                              test_loss=None if test is None else 1.0,
                                              test_accuracy=test,
                                              train_eval_top5_accuracy=train,
                                              test_top5_accuracy=test)
  rows = [row(1), row(2, 0.8, 0.5), row(3), row(4, 1.0, 0.4), row(5), row(6, 1.0, 0.45)]
  # The not-evaluated epochs count neither as fitted nor as best.
  assert progress.fit_epoch(rows, 0.9)['epoch'] == 4
  assert progress.fit_epoch(rows[:3], 0.9) is None
  # Early stopping counts epochs since the best evaluated test accuracy (epoch 2).
  assert not progress.early_stop(rows[:4], 3)
  assert progress.early_stop(rows[:4], 2) and progress.early_stop(rows, 4)
  assert not progress.early_stop(rows[:1], 1)
  numbers = progress.numbers(rows, 1.0, 2)
  assert numbers['best_test_accuracy'] == 0.5 and numbers['best_test_epoch'] == 2
  assert numbers['fit_epoch'] == 4 and numbers['fit_step'] == 40
  assert numbers['eval_every_epochs'] == 2 and numbers['evaluated_epochs'] == 3
  assert numbers['test_accuracy'] == 0.45 and numbers['epochs_completed'] == 6
  with pytest.raises(ValueError, match='epoch 5, the last, was not evaluated'):
    progress.numbers(rows[:5], 1.0, 2)


def test_rows_results_and_events_at_the_interval(tmp_path, every_epoch):
  """K = 4 over 6 epochs: epochs 4 and 6 evaluated; the training columns of
  every epoch and the evaluated ones of epochs 4 and 6 equal the K = 1 run's."""
  _, full, full_results = every_epoch
  passes = []
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top

  class Passes(trainer.EpochHooks):

    def epoch_done(self, epoch, step, eval_seconds):
      passes.append(eval_seconds > 0)

  logdir = tmp_path / 'run'
  results = _train(logdir, Passes(), epochs=6, eval_every_epochs=4)
  rows = _rows(logdir)
  assert rows == _as_k(full, 4, 6)
  assert [bool(r['test_accuracy']) for r in rows] == [False, False, False, True, False, True]
  assert passes == [False, False, False, True, False, True]
  assert results['eval_every_epochs'] == 4 and results['evaluated_epochs'] == 2
  assert json.loads((logdir / 'config.json').read_text())['eval_every_epochs'] == 4
  assert json.loads((logdir / 'results.json').read_text())['eval_every_epochs'] == 4
  assert full_results['eval_every_epochs'] == 1 and full_results['evaluated_epochs'] == 6
  for key in ('train_accuracy', 'test_accuracy', 'train_loss', 'test_top5_accuracy'):
    assert results[key] == full_results[key], key
  best = max((r for r in rows if r['test_accuracy']), key=lambda r: float(r['test_accuracy']))
  assert results['best_test_accuracy'] == float(best['test_accuracy'])
  assert results['best_test_epoch'] == int(best['epoch'])
  # TensorBoard: the evaluated splits only at the evaluated epochs.
  assert _events(logdir / 'train')['loss'] == [1, 2, 3, 4, 5, 6]
  for split in ('train_eval', 'test'):
    events = _events(logdir / split)
    assert events['loss'] == events['accuracy'] == events['top5_accuracy'] == [4, 6], split


def test_stop_on_fit_at_the_interval(tmp_path, every_epoch):
  """--stop_on_fit with K = 3 stops at the first evaluated epoch that is fitted:
  the K = 1 run's fit epoch rounded up to a multiple of 3."""
  _, full, _ = every_epoch
  accuracies = [float(r['train_eval_accuracy']) for r in full]
  threshold = sorted(accuracies)[1]  # reached at the second epoch at the latest
  fit = next(int(r['epoch']) for r in full if float(r['train_eval_accuracy']) >= threshold)
  fit_k = next(e for e in (3, 6) if accuracies[e - 1] >= threshold)
  assert fit <= fit_k < fit + 3
  results = _train(tmp_path / 'run',
                   epochs=6,
                   eval_every_epochs=3,
                   stop_on_fit=True,
                   fit_threshold=threshold)
  assert results['fit_epoch'] == results['epochs_completed'] == fit_k
  assert results['fit_step'] == 4 * fit_k
  assert _rows(tmp_path / 'run') == _as_k(full, 3, fit_k)


class _Interrupt(Exception):
  pass


@pytest.mark.parametrize('epoch, evaluated', [(3, False), (4, True)])
def test_resume_between_checkpoint_and_metrics(tmp_path, epoch, evaluated):
  """Stopped after epoch 3's (or 4's) checkpoint, before its row: the resumed
  run rebuilds the row from the checkpoint, evaluating it only at an evaluated
  epoch (4), and writes the uninterrupted run's metrics.csv and steps.csv."""
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top

  class Stop(trainer.EpochHooks):

    def checkpoint_saved(self, e, step):
      if e == epoch:
        raise _Interrupt()

  settings = dict(epochs=5, eval_every_epochs=2)
  with pytest.raises(_Interrupt):
    _train(tmp_path / 'resumed', Stop(), **settings)
  assert len(_rows(tmp_path / 'resumed')) == epoch - 1
  evaluations = []

  class Count(trainer.EpochHooks):

    def steps_done(self, e, step):
      evaluations.append(('step', step))

  original = trainer.Trainer.evaluate

  def counted(self, ds):
    evaluations.append(('evaluate', self.loop.step))
    return original(self, ds)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(trainer.Trainer, 'evaluate', counted)
    _train(tmp_path / 'resumed', Count(), **settings)
  rebuilt = [('evaluate', 4 * epoch)] * 2 if evaluated else []
  assert evaluations[:len(rebuilt) + 1] == rebuilt + [('step', 4 * epoch + 1)]
  _train(tmp_path / 'straight', **settings)
  assert _rows(tmp_path / 'resumed') == _rows(tmp_path / 'straight')
  assert [bool(r['test_accuracy']) for r in _rows(tmp_path / 'straight')
         ] == [False, True, False, True, True]
  steps = lambda d: (tmp_path / d / 'steps.csv').read_text()
  assert steps('resumed') == steps('straight')


def test_resumed_with_fewer_epochs_evaluates_its_last(tmp_path):
  """A K = 2 run of 5 epochs stopped after epoch 3's row (not evaluated),
  resumed with --epochs=3: epoch 3 is now its last, evaluated from the
  checkpoint; the same rows as a run of 3 epochs, and results.json."""
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top

  class Stop(trainer.EpochHooks):

    def epoch_done(self, e, step, seconds):
      if e == 3:
        raise _Interrupt()

  with pytest.raises(_Interrupt):
    _train(tmp_path / 'resumed', Stop(), epochs=5, eval_every_epochs=2)
  assert _rows(tmp_path / 'resumed')[-1]['test_accuracy'] == ''
  results = _train(tmp_path / 'resumed', epochs=3, eval_every_epochs=2)
  straight = _train(tmp_path / 'straight', epochs=3, eval_every_epochs=2)
  assert _rows(tmp_path / 'resumed') == _rows(tmp_path / 'straight')
  assert results['test_accuracy'] == straight['test_accuracy']
  assert results['epochs_completed'] == 3 and results['evaluated_epochs'] == 2
  assert _events(tmp_path / 'resumed' / 'test')['accuracy'] == [2, 3]


def test_divergence_is_caught_between_evaluations(tmp_path):
  """A NaN training loss ends the run at its epoch, whatever the interval; that
  epoch is evaluated, the earlier ones (not multiples of 5) are not."""
  from rethinking_tf.training import trainer  # pylint: disable=g-import-not-at-top
  with pytest.raises(trainer.Diverged) as error:
    _train(tmp_path / 'run', epochs=4, eval_every_epochs=5, learning_rate=1e6, dropout=0.0)
  rows = _rows(tmp_path / 'run')
  assert len(rows) == error.value.epoch < 5
  assert not math.isfinite(float(rows[-1]['train_loss']))
  assert rows[-1]['test_loss'] != '' and all(r['test_loss'] == '' for r in rows[:-1])
  assert (tmp_path / 'run' / 'failed.txt').read_text().startswith('diverged at epoch')


def test_another_interval_is_another_run(tmp_path):
  """The logdir refuses to resume with another interval; the sweep's contract
  has the flag (read from the binary) and tells the runs apart."""
  from rethinking_tf.sweep import flagfiles  # pylint: disable=g-import-not-at-top
  from rethinking_tf.sweep import runner  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import rundir  # pylint: disable=g-import-not-at-top
  config = _config(tmp_path, eval_every_epochs=5)
  rundir.prepare_logdir(config, None)
  with pytest.raises(rundir.RunExists, match='eval_every_epochs'):
    rundir.prepare_logdir(dataclasses.replace(config, eval_every_epochs=1), None)
  assert flagfiles.TRAIN_FLAGS['eval_every_epochs'] == 'int'
  assert flagfiles.BINARY_DEFAULTS['eval_every_epochs'] == '1'
  assert flagfiles.canonical_flags({'eval_every_epochs': '5'}) != flagfiles.canonical_flags({})
  assert flagfiles.canonical_flags({'eval_every_epochs': '1'}) == flagfiles.canonical_flags({})
  (tmp_path / 'results.json').write_text(json.dumps({'config': config.as_dict()}))
  job = runner.Job('f.cfg', 'f', str(tmp_path), {'model': 'mlp_1x64'}, [])
  assert any('--eval_every_epochs=1' in c for c in job.conflicts())


def _fabricated(logdir, name):
  """A finished run evaluated every 2 of 5 epochs: empty evaluated cells."""
  from conftest import flagfile_config  # pylint: disable=g-import-not-at-top
  metrics = [[
      e, 10 * e, 0.01, 2.0 / e, 0.2 * e,
      *((2.0 / e, 0.2 * e, 1.5, 0.1 * e if e < 5 else 0.35) if e % 2 == 0 or e == 5 else
        ('',) * 4), e
  ] for e in range(1, 6)]
  config = flagfile_config(name, train_size=1000, epochs=5, eval_every_epochs=2)
  results = dict(train_accuracy=1.0,
                 test_accuracy=0.35,
                 epochs_completed=5,
                 steps_completed=50,
                 fit_epoch=5,
                 fit_step=50,
                 eval_every_epochs=2)
  return write_run_dir(logdir, name, metrics=metrics, config=config, results=results)


def test_tables_figures_and_measures_skip_the_empty_cells(tmp_path):
  from rethinking_tf.measures import optimization  # pylint: disable=g-import-not-at-top
  from rethinking_tf.results import figures  # pylint: disable=g-import-not-at-top
  from rethinking_tf.results import layout  # pylint: disable=g-import-not-at-top
  from rethinking_tf.results import runs  # pylint: disable=g-import-not-at-top
  from rethinking_tf.results import tables  # pylint: disable=g-import-not-at-top
  logdir = str(tmp_path)
  run = runs.read_run(_fabricated(logdir, 'figure2/inception_bn'))
  assert run.status == 'finished' and run.eval_every == 2
  assert run.scale() == '1,000 ex, 5/5 ep, evaluated every 2 ep'
  _fabricated(logdir, 'table1/inception')
  text = tables.render(logdir, 'markdown')
  row = next(l for l in text.splitlines() if l.startswith('| Inception | no | no |'))
  assert '| 1,000 ex, 5/5 ep, evaluated every 2 ep |' in row
  # Figure 2a: test accuracy at the evaluated epochs only, never an empty cell as 0.
  fig = figures.figure2(logdir)
  (curve,) = [l for l in fig.axes[0].lines if l.get_gid() == layout.DATA]
  assert list(curve.get_xdata()) == [20, 40, 50]
  assert list(curve.get_ydata()) == pytest.approx([20, 40, 35])
  assert 'evaluated every 2 epochs' in fig.axes[0].get_title()
  assert 'evaluated epoch' in fig.axes[0].get_ylabel()
  # Without best_test_accuracy in results.json: the best evaluated row, epoch 4.
  assert figures.final_and_best(run) == (0.35, pytest.approx(0.4), 4)
  # The measures' steps to a training loss read the evaluated epochs.
  assert optimization.steps_to_loss(run.metrics, 'train_eval_loss', 0.5) == (40, 0.5)
