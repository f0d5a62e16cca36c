"""Table 2 end to end on the miniature: the binary prepares it and trains Inception V3."""

import json
import os

import pytest

from rethinking_tf.data import imagenet_miniature as mini
from rethinking_tf.data import imagenet_prepare
from tests.conftest import run_module


def _train(tmp_path, *flags):
  data_dir = tmp_path / 'data'
  mini.write(imagenet_prepare.manual_dir(str(data_dir)))
  logdir = tmp_path / 'run'
  r = run_module('rethinking_tf.train',
                 '--dataset=imagenet2012',
                 '--model=inception_v3',
                 f'--data_dir={data_dir}',
                 f'--logdir={logdir}',
                 '--train_size=4',
                 '--batch_size=4',
                 '--epochs=1',
                 '--augment',
                 '--labels=random',
                 '--quiet',
                 *flags,
                 timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  # Prepared by the binary, which said the cost first.
  assert 'preparing imagenet2012 from' in r.stderr and 'of disk' in r.stderr
  assert imagenet_prepare.prepared_sizes(str(data_dir)) == {'train': 16, 'validation': 3}
  with open(logdir / 'results.json') as f:
    results = json.load(f)
  assert results['epochs_completed'] == 1 and results['label_noise_fraction'] == 1.0
  assert os.path.isdir(logdir / 'checkpoints')
  return results


@pytest.mark.slow  # Inception V3 at 299x299: about a minute on 2 cores
def test_inception_v3_one_replica(tmp_path):
  _train(tmp_path)


@pytest.mark.slow  # the same on two logical CPUs, synchronized BatchNorm
def test_inception_v3_two_replicas(tmp_path):
  _train(tmp_path, '--strategy=mirrored', '--num_cpu_devices=2')


def test_train_size_is_checked_against_the_prepared_split(tmp_path):
  data_dir = tmp_path / 'data'
  os.makedirs(data_dir / 'imagenet2012' / '5.1.0')
  info = {'splits': [{'name': 'train', 'shardLengths': ['10', '6']}]}
  with open(data_dir / 'imagenet2012' / '5.1.0' / 'dataset_info.json', 'w') as f:
    json.dump(info, f)
  r = run_module('rethinking_tf.train', '--dataset=imagenet2012', '--model=inception_v3',
                 f'--data_dir={data_dir}', f'--logdir={tmp_path / "run"}', '--train_size=17')
  assert r.returncode == 2 and 'exceeds the 16 training examples' in r.stderr
  assert not (tmp_path / 'run').exists()
