"""The committed tables regenerate from the committed run outputs (docs/results)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, 'docs', 'results')


def make_tables(*args: str) -> str:
  return subprocess.run([sys.executable, 'tools/make_tables.py', *args],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        timeout=120,
                        check=True).stdout


@pytest.mark.skipif(not os.path.isdir(os.path.join(RESULTS, 'runs')),
                    reason='no committed runs under docs/results/runs')
def test_committed_tables_regenerate_from_committed_runs():
  out = make_tables('--logdir=docs/results/runs')
  with open(os.path.join(RESULTS, 'tables.md')) as f:
    assert out == f.read()


def test_no_checkpoints_are_committed():
  """Only small outputs are committed under docs/results: never checkpoints."""
  for root, dirs, _ in os.walk(RESULTS):
    assert 'checkpoints' not in dirs, root


PRECISION = os.path.join(RESULTS, 'runs_precision')


@pytest.mark.skipif(not os.path.isdir(PRECISION),
                    reason='no committed runs under docs/results/runs_precision')
@pytest.mark.parametrize('rundir,test_accuracy', [('full_seed0/float32', '75.87'),
                                                  ('full_seed0/mixed_bfloat16', '75.09'),
                                                  ('full_seed1/float32', '75.11'),
                                                  ('full_seed1/mixed_bfloat16', '74.97')])
def test_full_data_alexnet_rows_match_the_readme(rundir, test_accuracy):
  """The README's full-data Alexnet numbers come from these runs."""
  out = make_tables('--table=1', f'--logdir=docs/results/runs_precision/{rundir}')
  row = next(l for l in out.splitlines() if l.startswith('| Alexnet | no | no |'))
  assert f'| 76.07 | {test_accuracy} |' in row and 'image_folder, all ex, 40/40 ep' in row
  assert ('mixed_bfloat16' in row) == rundir.endswith('mixed_bfloat16')
