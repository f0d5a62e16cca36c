"""The committed tables regenerate from the committed run outputs (docs/results)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, 'docs', 'results')


@pytest.mark.skipif(not os.path.isdir(os.path.join(RESULTS, 'runs')),
                    reason='no committed runs under docs/results/runs')
def test_committed_tables_regenerate_from_committed_runs():
  out = subprocess.run([sys.executable, 'tools/make_tables.py',
                        '--logdir=docs/results/runs'], cwd=REPO, capture_output=True,
                       text=True, timeout=120, check=True).stdout
  with open(os.path.join(RESULTS, 'tables.md')) as f:
    assert out == f.read()
  # Only small outputs are committed: never checkpoints.
  for root, dirs, _ in os.walk(os.path.join(RESULTS, 'runs')):
    assert 'checkpoints' not in dirs, root
