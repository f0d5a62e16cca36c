"""The quickstart binary (rethinking_tf/quickstart.py): what it says it writes, and where."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rethinking_tf import quickstart

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_first_line_and_criterion():
  assert quickstart.first_line('/tmp/q', True) == (
      'quickstart: writes to /tmp/q: true_labels/ and random_labels/, replacing the runs they '
      'hold '
      '(--logdir to choose another directory)')
  assert 'resuming them if unfinished' in quickstart.first_line('/tmp/q', False)
  assert quickstart.criterion(300) == ('until 100% train accuracy (evaluated after each epoch), '
                                       'at most 300 epochs')


@pytest.mark.slow
def test_quickstart_writes_where_its_first_line_says(tmp_path):
  """One epoch per run on digits into --logdir, replacing an earlier run there."""
  logdir = tmp_path / 'q'
  os.makedirs(logdir / 'true_labels')
  (logdir / 'true_labels' / 'results.json').write_text('{"epochs_completed": 99}')
  proc = subprocess.run(
      [sys.executable, '-m', 'rethinking_tf.quickstart', f'--logdir={logdir}', '--epochs=1'],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0] == quickstart.first_line(str(logdir), True)
  assert ('--- MLP 1x512 on digits, true labels, until 100% train accuracy (evaluated after '
          'each epoch), at most 1 epochs ---') in lines
  epoch_lines = [l for l in lines if l.startswith('epoch ')]
  assert epoch_lines and all(
      l.startswith('epoch    1/1 (or until 100% eval train acc)') for l in epoch_lines), epoch_lines
  for labels in ('true', 'random'):
    with open(logdir / f'{labels}_labels' / 'results.json') as f:
      assert json.load(f)['epochs_completed'] == 1
