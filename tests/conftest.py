"""Shared test helpers."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_ARCHIVE = os.path.join(REPO, '..', 'shared', 'data', 'cifar10-jpeg.tar.gz')


def run_module(module: str, *args: str, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
  """Runs `python -m module args` and returns the completed process."""
  return subprocess.run([sys.executable, '-m', module, *args], capture_output=True,
                        text=True, timeout=timeout, cwd=REPO, **kwargs)


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
