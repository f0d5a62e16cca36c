"""Bad arguments to tools/run_sweep.py, make_tables.py and make_figures.py: one
line `error: ...` on stderr, exit 2, quickly, and nothing created on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import REPO


def tool(name: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
  start = time.monotonic()
  proc = subprocess.run([sys.executable, os.path.join('tools', name), *args],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        timeout=60)
  return proc, time.monotonic() - start


def tree(root) -> list[str]:
  return sorted(
      os.path.relpath(os.path.join(d, f), root)
      for d, dirs, files in os.walk(root)
      for f in dirs + files)


@pytest.mark.parametrize('name, args, message', [
    ('run_sweep.py', ['--logdir={t}/runs', '--parallel=0', '{t}/a.cfg'
                     ], 'error: --parallel=0; allowed: 1 or more'),
    ('run_sweep.py', ['--logdir={t}/runs'
                     ], 'error: the following arguments are required: FLAGFILE'),
    ('run_sweep.py', ['--logdir={t}/runs', '--bogus', '{t}/a.cfg'],
     'error: unrecognized arguments: --bogus; allowed: --dry_run, --flags_root, --help, '
     '--logdir, --no_reuse, --parallel, --progress_seconds, --set, --skip_failed'),
    ('run_sweep.py', ['--logdir={t}/a.cfg/runs', '{t}/a.cfg'],
     'error: --logdir={t}/a.cfg/runs cannot be created: {t}/a.cfg is not a directory'),
    ('run_sweep.py', ['--logdir={t}/runs', '{t}/missing.cfg'
                     ], 'error: {t}/missing.cfg: no such flagfile'),
    ('make_tables.py', ['--logdir=/nope'],
     'error: --logdir=/nope is not a directory; allowed: a directory tree of runs'),
    ('make_tables.py', [], 'error: the following arguments are required: --logdir'),
    ('make_tables.py', ['--logdir={t}', '--format=pdf'],
     "error: argument --format: invalid choice: 'pdf' (choose from 'markdown', 'latex', "
     "'csv')"),
    ('make_tables.py', ['--logdir={t}', '--out={t}/new/tables.md'
                       ], 'error: --out={t}/new/tables.md: {t}/new is not a writable directory'),
    ('make_figures.py', ['--logdir=/nope', '--out={t}/figs'],
     'error: --logdir=/nope is not a directory; allowed: a directory tree of runs'),
    ('make_figures.py', ['--logdir={t}', '--out={t}/figs', '--figures=3'
                        ], 'error: --figures=3; allowed: 1, 2 or 1,2'),
    ('make_figures.py', ['--logdir={t}', '--out={t}/figs', '--dpi=many'
                        ], "error: argument --dpi: invalid int value: 'many'"),
    ('make_figures.py', ['--logdir={t}', '--out={t}/a.cfg'
                        ], 'error: --out={t}/a.cfg exists and is not a directory'),
    ('make_figures.py', ['--logdir={t}'], 'error: the following arguments are required: --out'),
])
def test_bad_argument_is_one_line(tmp_path, name, args, message):
  (tmp_path / 'a.cfg').write_text('--model=mlp_1x512\n')
  before = tree(tmp_path)
  proc, seconds = tool(name, *(a.format(t=tmp_path) for a in args))
  assert proc.returncode == 2, proc
  assert proc.stderr == message.format(t=tmp_path) + '\n'
  assert proc.stdout == ''
  assert tree(tmp_path) == before
  assert seconds < 2.0, f'{seconds:.1f} s'
