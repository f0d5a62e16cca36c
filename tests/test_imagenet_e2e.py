"""Table 2 end to end on the miniature: the binary prepares it and trains Inception V3."""

import glob
import json
import os
import subprocess
import sys

import pytest

from rethinking_tf.data import imagenet_miniature as mini
from rethinking_tf.data import imagenet_prepare
from tests.conftest import REPO
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


@pytest.mark.slow  # seven Inception V3 runs at 299x299: about three minutes on 2 cores
def test_table2_sweep_fills_every_row_on_the_miniature(tmp_path):
  """The seven Table 2 flagfiles through the sweep runner on one replica (the
  first run prepares the miniature), then make_tables: a number in every cell
  of every row, with the runs' scale, never missing."""
  data_dir, runs = tmp_path / 'data', tmp_path / 'runs'
  mini.write(imagenet_prepare.manual_dir(str(data_dir)))
  flagfiles = sorted(glob.glob(os.path.join(REPO, 'flags', 'table2', '*.cfg')))
  assert len(flagfiles) == 7
  sweep = subprocess.run([
      sys.executable, 'tools/run_sweep.py', f'--logdir={runs}', f'--set=data_dir={data_dir}',
      '--set=train_size=4', '--set=batch_size=4', '--set=epochs=1', *flagfiles
  ],
                         capture_output=True,
                         text=True,
                         cwd=REPO,
                         timeout=1500)
  assert sweep.returncode == 0, sweep.stderr[-3000:]
  assert imagenet_prepare.prepared_sizes(str(data_dir)) == {'train': 16, 'validation': 3}
  for path in flagfiles:
    name = os.path.splitext(os.path.basename(path))[0]
    with open(runs / 'table2' / name / 'results.json') as f:
      results = json.load(f)
    assert results['epochs_completed'] == 1
    assert results['label_noise_fraction'] == (1.0 if 'random_labels' in name else 0.0)
  tables = subprocess.run([sys.executable, 'tools/make_tables.py', f'--logdir={runs}', '--table=2'],
                          capture_output=True,
                          text=True,
                          cwd=REPO,
                          timeout=120)
  assert tables.returncode == 0, tables.stderr
  rows = [l for l in tables.stdout.splitlines() if l.startswith(('| true', '| random'))]
  assert len(rows) == 7
  for row in rows:
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[-1] == '4 ex, 1/1 ep, batch_size 4', row
    assert 'missing' not in row and 'n/r' not in row, row
    for ours in cells[5:-1:3]:  # each metric's "ours" column
      float(ours.split(' ')[0])


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
