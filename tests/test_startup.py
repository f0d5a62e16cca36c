"""The start-up's phases (results.json's `startup`) and what keeps the start short."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_module
from rethinking_tf import registry
from rethinking_tf.data import loaders
from rethinking_tf.data import pipeline
from rethinking_tf.data import randomize
from rethinking_tf.training import config as config_lib
from rethinking_tf.training import loop as loop_lib
from rethinking_tf.training import startup
from rethinking_tf.training import trainer

PHASES = ('data_seconds', 'preprocess_seconds', 'model_seconds', 'first_train_call_seconds')


def _tiny(logdir, **kw):
  return config_lib.TrainConfig(logdir=str(logdir),
                                dataset='digits',
                                train_size=200,
                                model='mlp_1x16',
                                batch_size=50,
                                epochs=1,
                                **kw)


def _check_phases(record):
  assert all(record[k] >= 0 for k in PHASES), record
  # The phases follow each other: together they are the run's set-up.
  assert sum(record[k] for k in PHASES) == pytest.approx(record['run_seconds'], abs=1e-3)
  assert record['data_from'] == 'scikit-learn digits'


def test_results_record_the_startup_phases(tmp_path, capsys):
  startup.note_tensorflow_import(1.25)  # As cli.import_tensorflow does.
  results = trainer.run(_tiny(tmp_path / 'a'))
  with open(tmp_path / 'a' / 'results.json') as f:
    record = json.load(f)['startup']
  assert record == results['startup']
  _check_phases(record)
  assert record['first_train_call_step'] == 4  # One call of the epoch's 4 steps.
  assert record['tensorflow_import_seconds'] == 1.25
  if startup.process_age() is not None:  # Linux
    assert record['process_seconds'] >= record['run_seconds']
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith('start-up: TensorFlow import 1.2 s, data ') and lines[1].startswith(
      'epoch    1/1'), lines
  assert '(scikit-learn digits)' in lines[0] and 'training to step 4' in lines[0]
  # The import belongs to the process's first run only; a quiet run prints nothing.
  again = trainer.run(_tiny(tmp_path / 'b', verbose=False))['startup']
  _check_phases(again)
  assert 'tensorflow_import_seconds' not in again and 'process_seconds' not in again
  assert not capsys.readouterr().out


@pytest.mark.slow
def test_binary_prints_and_records_its_startup(tmp_path):
  logdir = tmp_path / 'run'
  proc = run_module('rethinking_tf.train', '--dataset=digits', '--train_size=200',
                    '--model=mlp_1x16', '--batch_size=50', '--epochs=1', f'--logdir={logdir}')
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0].startswith('start-up: TensorFlow import ') and lines[1].startswith(
      'epoch '), lines
  with open(logdir / 'results.json') as f:
    record = json.load(f)['startup']
  _check_phases(record)
  assert record['tensorflow_import_seconds'] > 0
  assert record['process_seconds'] >= record['tensorflow_import_seconds'] + record['run_seconds']
  assert record['process_seconds'] < 300


def test_distribute_builds_the_dataset_once():
  """Building a training pipeline traces its tf.data functions: once is enough."""
  built = []

  def make():
    built.append(1)
    return tf.data.Dataset.from_tensor_slices((tf.zeros([6, 2]), tf.zeros([6], tf.int64))).batch(4)

  strategy = tf.distribute.get_strategy()
  model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2)])
  loop = loop_lib.Loop(strategy, model, tf.keras.optimizers.SGD())
  dataset = loop.distribute(make)
  assert len(built) == 1
  assert [int(n) for _, _, n in dataset] == [4, 2]
  assert len(built) == 1


def _folder(root, per_class=3):
  rng = np.random.default_rng(0)
  for split in ('train', 'test'):
    for name in ('a', 'b'):
      os.makedirs(root / split / name)
      for i in range(per_class):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        tf.io.write_file(str(root / split / name / f'{i}.png'), tf.io.encode_png(image))
  return str(root)


def test_make_pipelines_records_where_the_data_came_from(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  root = _folder(tmp_path / 'images')
  assert loaders.load_arrays('image_folder', 'train', root).source == 'decoded'
  assert loaders.load_arrays('image_folder', 'train', root).source == 'image cache'
  p = pipeline.make_pipelines('image_folder', root, registry.Randomization(), 2)
  assert p.startup['data_from'] == 'train: image cache, test: decoded'
  assert p.startup['data_seconds'] >= 0 and p.startup['preprocess_seconds'] >= 0
  p = pipeline.make_pipelines('image_folder', root, registry.Randomization(), 2, train_size=4)
  assert p.startup['data_from'] == 'image cache'  # A subset keeps its source.
  p = pipeline.make_pipelines('image_folder', root, registry.Randomization(), 2, image_cache=False)
  assert p.startup['data_from'] == 'decoded'


def test_channel_statistics_are_computed_for_gaussian_inputs_only(monkeypatch):
  """They shape the gaussian inputs and nothing else (0.3 s on CIFAR-10)."""
  calls = []
  stats = randomize.channel_stats
  monkeypatch.setattr(randomize, 'channel_stats', lambda images: calls.append(1) or stats(images))
  for inputs in registry.INPUT_MODES:
    pipeline.make_pipelines('digits', None, registry.Randomization(inputs=inputs), 100)
  assert len(calls) == 1


def test_the_test_set_is_standardized_at_the_first_evaluation(tmp_path, monkeypatch):
  """Training starts before the test set's copy, whose seconds are kept."""
  events = []
  materialize = pipeline.materialize

  def logged(arrays, *args, **kw):
    events.append(('copy', len(arrays.labels)))
    return materialize(arrays, *args, **kw)

  class Hooks(trainer.EpochHooks):

    def steps_done(self, epoch, step):
      events.append(('steps', step))

    def training_done(self, epoch, step):
      events.append(('evaluation', step))

  monkeypatch.setattr(pipeline, 'materialize', logged)
  record = trainer.run(_tiny(tmp_path / 'a', verbose=False), hooks=Hooks())['startup']
  assert events == [('copy', 200), ('steps', 4), ('evaluation', 4), ('copy', 450)]
  _check_phases(record)
  assert record['test_preprocess_seconds'] > 0
  p = pipeline.make_pipelines('digits', None, registry.Randomization(), 100)
  assert 'test_preprocess_seconds' not in p.startup
  assert sum(len(y) for _, y in p.test) == p.num_test == 450
  assert p.startup['test_preprocess_seconds'] > 0
