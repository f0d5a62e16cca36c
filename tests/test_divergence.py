"""A run whose loss becomes NaN stops with failed.txt and exit 1 (training.trainer.Diverged)."""

import csv
import math
import os
import re

import pytest

from conftest import run_module


@pytest.mark.slow
def test_diverging_run_stops_and_says_where(tmp_path):
  """A learning rate of 1e6 overflows the weights to inf/NaN within the first epoch."""
  logdir = str(tmp_path / 'run')
  proc = run_module('rethinking_tf.train', '--dataset=digits', '--train_size=200',
                    '--model=mlp_1x64', '--batch_size=50', '--quiet', '--epochs=3',
                    '--learning_rate=1e6', f'--logdir={logdir}')
  assert proc.returncode == 1, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  match = re.fullmatch(
      r'error: run diverged at epoch (\d+), step (\d+); metrics up to it '
      r'are in (.*)', lines[-1])
  assert match, proc.stderr
  assert match.group(3) == os.path.join(logdir, 'metrics.csv')
  assert sum(l.startswith('error:') for l in lines) == 1 and 'Traceback' not in proc.stderr
  epoch, step = int(match.group(1)), int(match.group(2))
  with open(os.path.join(logdir, 'failed.txt')) as f:
    assert f.readline() == f'diverged at epoch {epoch}, step {step}\n'
  with open(os.path.join(logdir, 'metrics.csv')) as f:
    rows = list(csv.DictReader(f))
  # Every epoch up to the diverged one is kept, the diverged one with its NaN.
  assert [int(r['epoch']) for r in rows] == list(range(1, epoch + 1))
  assert int(rows[-1]['step']) == step == 4 * epoch  # 200 examples / batch 50
  last = rows[-1]
  assert not all(
      math.isfinite(float(last[k])) for k in ('train_loss', 'train_eval_loss', 'test_loss'))
  assert all(math.isfinite(float(r['train_loss'])) for r in rows[:-1])
  assert not os.path.exists(os.path.join(logdir, 'results.json'))
