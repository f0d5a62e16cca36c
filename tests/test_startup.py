"""The start-up's phases (results.json's `startup`) and what keeps the start short."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_module
from rethinking_tf import registry
from rethinking_tf.data import image_cache
from rethinking_tf.data import loaders
from rethinking_tf.data import pipeline
from rethinking_tf.data import randomize
from rethinking_tf.data import sources
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


def test_cache_keeps_the_training_channel_sums(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  root = _folder(tmp_path / 'images')
  decoded = loaders.load_arrays('image_folder', 'train', root)
  assert decoded.source == 'decoded'
  np.testing.assert_array_equal(decoded.pixel_sums, randomize.channel_sums(decoded.images))
  cached = loaders.load_arrays('image_folder', 'train', root)
  assert cached.source == 'image cache'
  np.testing.assert_array_equal(cached.pixel_sums, decoded.pixel_sums)
  np.testing.assert_array_equal(cached.images, decoded.images)
  assert loaders.load_arrays('image_folder', 'test', root).pixel_sums is None
  # The statistics from the sums are those from the images.
  for a, b in zip(randomize.channel_stats(cached.images, cached.pixel_sums),
                  randomize.channel_stats(cached.images)):
    np.testing.assert_array_equal(a, b)
  # An entry written without the sums gets them on its next read.
  path = image_cache.entry_path(root, 'train')
  key = image_cache.files_key(sources.folder_files(root, 'train')[0], root)
  entry = image_cache.load(path, key, 6)
  entry.pixel_sums = None
  assert image_cache.save(path, key, entry)
  with np.load(path) as z:
    assert 'pixel_sums' not in z.files
  np.testing.assert_array_equal(
      loaders.load_arrays('image_folder', 'train', root).pixel_sums, decoded.pixel_sums)
  with np.load(path) as z:
    np.testing.assert_array_equal(z['pixel_sums'], decoded.pixel_sums)
  # A subset has its own statistics: the full set's sums are not carried over.
  train, _, _, _ = pipeline.randomized_arrays('image_folder', root, registry.Randomization(), 4)
  assert train.pixel_sums is None and train.source == 'image cache'
  p = pipeline.make_pipelines('image_folder', root, registry.Randomization(), 2)
  assert p.startup['data_from'] == 'image cache' and p.startup['preprocess_seconds'] >= 0
