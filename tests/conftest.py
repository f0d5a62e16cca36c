"""Shared test helpers."""

import csv
import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Before any test module imports TensorFlow: the package's environment
# (oneDNN on, cpu.turn_on_onednn) holds in this process as in the binaries.
import rethinking_tf  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK = os.path.join(REPO, 'tools', 'benchmark.py')  # the benchmark binary
METRICS_FIELDS = ('epoch,step,learning_rate,train_loss,train_accuracy,train_eval_loss,'
                  'train_eval_accuracy,test_loss,test_accuracy,seconds').split(',')
SHARED_ARCHIVE = os.path.join(REPO, '..', 'shared', 'data', 'cifar10-jpeg.tar.gz')


@pytest.fixture(autouse=True, scope='session')
def _private_cache_home(tmp_path_factory):
  """Points XDG_CACHE_HOME (where image_cache.py keeps decoded image folders)
  at a session directory: no test writes to the user's ~/.cache. Subprocesses
  inherit it."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('XDG_CACHE_HOME', str(tmp_path_factory.mktemp('xdg_cache')))
    yield


def run_python(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
  """Runs `python args` (`-c code ...`, `-m module ...`) in the repository,
  output captured as text, and returns the completed process."""
  return subprocess.run([sys.executable, *args],
                        capture_output=True,
                        text=True,
                        timeout=timeout,
                        cwd=REPO,
                        **kwargs)


def run_module(module: str,
               *args: str,
               timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
  """Runs `python -m module args` and returns the completed process."""
  return run_python('-m', module, *args, timeout=timeout, **kwargs)


@pytest.fixture(scope='session')
def cifar10_folder(tmp_path_factory):
  """The shared CIFAR-10 JPEG copy extracted to a temporary image_folder."""
  if not os.path.exists(SHARED_ARCHIVE):
    pytest.skip('../shared/data/cifar10-jpeg.tar.gz is absent')
  import tarfile  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('cifar10')
  with tarfile.open(SHARED_ARCHIVE) as tar:
    tar.extractall(root, filter='data')
  return str(root / 'cifar10-jpeg')


def flagfile_config(name: str, **overrides) -> dict:
  """A config.json as the binary would write it for flags/<name>.cfg: the
  flagfile's settings (typed), then `overrides`; the rest left to defaults."""
  config = {}
  with open(os.path.join(REPO, 'flags', name + '.cfg')) as f:
    for line in f:
      line = line.strip()
      if not line.startswith('--'):
        continue
      body = line[2:]
      if '=' in body:
        key, value = body.split('=', 1)
        try:
          value = int(value)
        except ValueError:
          try:
            value = float(value)
          except ValueError:
            pass
      elif body.startswith('no'):
        key, value = body[2:], False
      else:
        key, value = body, True
      config[key] = value
  return {**config, **overrides}


def write_run_dir(logdir: str,
                  name: str,
                  *,
                  metrics: list[list],
                  flags: str | None = None,
                  config: dict | None = None,
                  results: dict | None = None,
                  failed: str | None = None) -> str:
  """A fabricated run directory as the training binary leaves it: config.json
  (default: flags/<name>.cfg's settings, if that flagfile exists), flags.cfg
  if given, metrics.csv (rows in METRICS_FIELDS order) and optionally
  results.json or failed.txt. Returns its path."""
  rundir = os.path.join(logdir, name)
  os.makedirs(rundir, exist_ok=True)
  if config is None and os.path.exists(os.path.join(REPO, 'flags', name + '.cfg')):
    config = flagfile_config(name)
  if config is not None:
    with open(os.path.join(rundir, 'config.json'), 'w') as f:
      json.dump(config, f)
  if flags is not None:
    with open(os.path.join(rundir, 'flags.cfg'), 'w') as f:
      f.write(flags)
  with open(os.path.join(rundir, 'metrics.csv'), 'w', newline='') as f:
    csv.writer(f).writerows([METRICS_FIELDS, *metrics])
  if results is not None:
    with open(os.path.join(rundir, 'results.json'), 'w') as f:
      json.dump(results, f)
  if failed is not None:
    with open(os.path.join(rundir, 'failed.txt'), 'w') as f:
      f.write(failed)
  return rundir
