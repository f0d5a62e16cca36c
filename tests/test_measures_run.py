"""Measures of a real (tiny) training run: loading it, measures.json, the binary."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import run_module
from rethinking_tf.measures import MEASURES

MEASURE = 'rethinking_tf.measure'
TINY = [
    '--dataset=digits', '--train_size=200', '--model=mlp_1x64', '--batch_size=50', '--quiet',
    '--epochs=2'
]
SMALL_BUDGET = [
    '--sharpness_examples=100', '--search_depth=2', '--mc_samples=1', '--ascent_steps=1'
]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """A finished two-epoch digits run."""
  logdir = str(tmp_path_factory.mktemp('measures') / 'run')
  proc = run_module('rethinking_tf.train', *TINY, f'--logdir={logdir}')
  assert proc.returncode == 0, proc.stderr
  return logdir


@pytest.mark.slow
def test_load_run_and_measures_json(tiny_run, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  from rethinking_tf.measures import compute  # pylint: disable=g-import-not-at-top
  from rethinking_tf.measures import run as run_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.measures import sharpness  # pylint: disable=g-import-not-at-top
  logdir = str(tmp_path / 'run')
  shutil.copytree(tiny_run, logdir)
  results = json.load(open(os.path.join(logdir, 'results.json')))
  # The trainer saved its initial weights; rebuilt from the seed they are the same.
  saved = run_lib.load_run(logdir)
  assert saved.initial_source == run_lib.INITIAL_WEIGHTS_FILE
  os.remove(os.path.join(logdir, run_lib.INITIAL_WEIGHTS_FILE))
  run = run_lib.load_run(logdir)
  assert run.initial_source == run_lib.REBUILT and run.steps is None
  for a, b in zip(saved.initial.get_weights(), run.initial.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert run.x_train.shape == (200, 28, 28, 3) and len(run.metrics) == 2
  # the initial weights rebuilt from the seed differ from the final ones
  assert not np.allclose(run.initial.get_weights()[0], run.model.get_weights()[0])

  # initial.weights.h5, when present, is what is read (here: twice the rebuilt weights)
  doubled = run.build(10)
  doubled.set_weights([2 * w for w in run.initial.get_weights()])
  doubled.save_weights(os.path.join(logdir, 'initial.weights.h5'))
  with open(os.path.join(logdir, 'steps.csv'), 'w') as f:
    f.write('step,epoch,train_loss,train_accuracy\n1,1,2.3,0.1\n3,1,0.09,0.97\n5,2,0.05,0.99\n')
  run = run_lib.load_run(logdir)
  assert run.initial_source == 'initial.weights.h5' and len(run.steps) == 3
  np.testing.assert_allclose(run.initial.get_weights()[0], doubled.get_weights()[0])

  budget = sharpness.Budget(examples=100, mc_samples=1, search_depth=2, ascent_steps=1)
  out = compute.compute(run, ['margin', 'norm', 'sharpness', 'optimization', 'rademacher'],
                        budget,
                        rademacher_epochs=1,
                        rademacher_examples=50)
  assert out['train_accuracy_recomputed'] == pytest.approx(results['train_accuracy'], abs=1e-6)
  assert out['initial_weights'] == 'initial.weights.h5'
  saved = json.load(open(os.path.join(logdir, 'measures.json')))
  assert saved == json.loads(json.dumps(out))
  assert set(saved['measures']) == set(MEASURES)
  for name, entry in saved['measures'].items():
    if name == 'disagreement':
      assert 'study-level' in entry['missing']
    elif name != 'steps_to_fit':  # a 2-epoch run does not fit its training set
      assert np.isfinite(entry['value']) and entry['seconds'] >= 0, (name, entry)
  assert saved['measures']['steps_to_loss_0.1']['value'] == 3  # from steps.csv
  assert 'never fitted' in saved['measures']['steps_to_fit']['missing']
  w = run.model.get_weights()
  w0 = run.initial.get_weights()
  dist = sum(np.sum((a.astype(np.float64) - b)**2) for a, b in zip(w[::2], w0[::2]))
  assert saved['measures']['dist_fro']['value'] == pytest.approx(dist, rel=1e-5)
  assert 'epochs' in saved['measures']['rademacher']['note']
  preds = np.load(os.path.join(logdir, 'test_predictions.npy'))
  assert preds.shape == (450,) and preds.max() < 10

  # cached: a second call keeps every entry; recompute redoes the asked-for ones only
  again = compute.compute(run, ['margin', 'sharpness'], budget)
  assert again['measures'] == out['measures']
  fresh = compute.compute(run, ['margin'], budget, recompute=True)
  assert fresh['measures']['margin']['value'] == pytest.approx(out['measures']['margin']['value'])
  assert fresh['measures']['sum_fro'] == out['measures']['sum_fro']  # kept


def test_initial_weights_of_an_unseeded_factory_are_missing(tmp_path):
  from rethinking_tf.measures import run as run_lib  # pylint: disable=g-import-not-at-top
  build = lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  model, why = run_lib._initial(build, str(tmp_path))  # pylint: disable=protected-access
  assert model is None and 'not seeded' in why
  seeded = lambda: keras.Sequential(
      [keras.Input((3,)),
       keras.layers.Dense(2, kernel_initializer=keras.initializers.Ones())])
  assert run_lib._initial(seeded, str(tmp_path))[1] == run_lib.REBUILT  # pylint: disable=protected-access


def _constructed_run(logdir):
  """A LoadedRun of a tiny model on random data, without training (fast)."""
  from rethinking_tf.measures import run as run_lib  # pylint: disable=g-import-not-at-top

  def build(k, seed=0):
    inputs = keras.Input((6,))
    h = keras.layers.Dense(16,
                           activation='relu',
                           kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
    return keras.Model(inputs, keras.layers.Dense(k, kernel_initializer='zeros')(h))

  rng = np.random.default_rng(0)
  x = rng.normal(size=(120, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
  model, initial = build(4), build(4)
  model.set_weights([w + 0.3 * rng.normal(size=w.shape) for w in model.get_weights()])
  metrics = [
      dict(epoch=1.0, step=10.0, train_eval_loss=0.3),
      dict(epoch=2.0, step=20.0, train_eval_loss=0.08)
  ]
  config = dict(seed=0,
                learning_rate=0.05,
                lr_decay=1.0,
                momentum=0.9,
                batch_size=60,
                lr_decay_steps=0,
                model='mlp_1x16')
  return run_lib.LoadedRun(logdir, config, {
      'train_accuracy': 0.5,
      'test_accuracy': 0.4,
      'fit_step': None
  }, metrics, None, model, initial, run_lib.REBUILT, x, y, x[:30], y[:30], build)


def test_compute_writes_every_measure_and_caches(tmp_path):
  from rethinking_tf.measures import compute  # pylint: disable=g-import-not-at-top
  from rethinking_tf.measures import sharpness  # pylint: disable=g-import-not-at-top
  run = _constructed_run(str(tmp_path))
  budget = sharpness.Budget(examples=60, mc_samples=1, search_depth=3, ascent_steps=1)
  out = compute.compute(run, ['margin', 'norm', 'sharpness', 'optimization', 'rademacher'],
                        budget,
                        rademacher_epochs=2,
                        rademacher_examples=40)
  saved = json.load(open(os.path.join(str(tmp_path), 'measures.json')))
  assert saved == json.loads(json.dumps(out)) and set(saved['measures']) == set(MEASURES)
  for name, entry in saved['measures'].items():
    if name in ('disagreement', 'steps_to_fit'):
      assert entry['missing']
    else:
      assert np.isfinite(entry['value']) and entry['seconds'] >= 0, (name, entry)
  assert saved['measures']['steps_to_loss_0.1']['value'] == 20
  assert saved['budget']['search_depth'] == 3
  assert np.load(os.path.join(str(tmp_path), 'test_predictions.npy')).shape == (30,)
  again = compute.compute(run, ['margin', 'sharpness'], budget)  # cached: nothing recomputed
  assert again['measures'] == out['measures']
  fresh = compute.compute(run, ['margin'], budget, recompute=True)
  assert fresh['measures']['sum_fro'] == out['measures']['sum_fro']  # kept
  assert fresh['measures']['margin']['value'] == pytest.approx(out['measures']['margin']['value'])


def _fake_run(path):
  os.makedirs(os.path.join(path, 'checkpoints'))
  for name in ('results.json', 'metrics.csv', 'checkpoints/checkpoint'):
    open(os.path.join(path, name), 'w').close()
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump({'dataset': 'image_folder', 'data_dir': path + '/moved'}, f)


@pytest.mark.parametrize('args,message', [
    ([], '--logdir is required'),
    (['--logdir=/nonexistent/run'], 'is not a directory'),
    (['--logdir={tmp}'], 'has no config.json'),
    (['--logdir={run}', '--families=norm,bogus'], 'unknown bogus'),
    (['--logdir={run}', '--search_depth=0'], '--search_depth=0'),
    (['--logdir={run}'], 'is not available'),
    (['--logdir={run}', '--data_dir={tmp}'], 'is not available'),
])
def test_binary_refuses_bad_input(tmp_path, args, message):
  run = str(tmp_path / 'run')
  _fake_run(run)
  args = [a.format(tmp=tmp_path / 'empty', run=run) for a in args]
  os.makedirs(tmp_path / 'empty')
  proc = run_module(MEASURE, *args, timeout=60)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], proc.stderr
  assert 'measures.json' not in os.listdir(run) and os.listdir(tmp_path / 'empty') == []


@pytest.mark.slow
def test_binary_writes_and_caches(tiny_run, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  logdir = str(tmp_path / 'run')
  shutil.copytree(tiny_run, logdir)
  proc = run_module(MEASURE, f'--logdir={logdir}', *SMALL_BUDGET)
  assert proc.returncode == 0, proc.stderr
  first = json.load(open(os.path.join(logdir, 'measures.json')))
  assert first['budget']['examples'] == 100 and first['initial_weights'] == 'initial.weights.h5'
  assert 'not asked for' in first['measures']['rademacher']['missing']
  proc = run_module(MEASURE, f'--logdir={logdir}', '--families=margin')
  assert proc.returncode == 0, proc.stderr
  assert json.load(open(os.path.join(logdir, 'measures.json')))['measures'] == first['measures']
  assert 'path_norm' in proc.stdout
