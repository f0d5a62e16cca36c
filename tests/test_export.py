"""Tests of tools/export_image_folder.py on fabricated CIFAR-10 archives."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
import export_image_folder as export  # pylint: disable=wrong-import-position
from conftest import REPO, run_module  # pylint: disable=wrong-import-position

TOOL = os.path.join(REPO, 'tools', 'export_image_folder.py')
PER_BATCH, PER_TEST = 20, 30  # 100 training images, 30 test images


def _source(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Random CHW rows and labels; every class in both splits."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, n in [(b, PER_BATCH) for b in export.TRAIN_BATCHES] + [('test_batch', PER_TEST)]:
    labels = np.concatenate([np.arange(10), rng.integers(0, 10, n - 10)]).astype(np.uint8)
    rng.shuffle(labels)
    out[name] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), labels)
  return out


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(payload)
  tar.addfile(info, io.BytesIO(payload))


def _binary_archive(path: str, source) -> str:
  """The layout of cifar-10-binary.tar.gz: records of 1 label byte + 3072 CHW bytes."""
  with tarfile.open(path, 'w:gz') as tar:
    for name, (rows, labels) in source.items():
      _add(tar, f'cifar-10-batches-bin/{name}.bin',
           np.concatenate([labels[:, None], rows], axis=1).tobytes())
    _add(tar, 'cifar-10-batches-bin/batches.meta.txt',
         ('\n'.join(export.CIFAR10_CLASSES) + '\n\n').encode())
  return path


def _python_archive(path: str, source) -> str:
  """The layout of cifar-10-python.tar.gz: pickled dicts with bytes keys."""
  with tarfile.open(path, 'w:gz') as tar:
    for name, (rows, labels) in source.items():
      _add(
          tar, f'cifar-10-batches-py/{name}',
          pickle.dumps(
              {
                  b'batch_label': name.encode(),
                  b'labels': labels.tolist(),
                  b'data': rows,
                  b'filenames': [b'x.png'] * len(labels)
              },
              protocol=2))
    _add(
        tar, 'cifar-10-batches-py/batches.meta',
        pickle.dumps(
            {
                b'label_names': [n.encode() for n in export.CIFAR10_CLASSES],
                b'num_cases_per_batch': PER_BATCH,
                b'num_vis': 3072
            },
            protocol=2))
  return path


def _expected(source, split: str) -> tuple[np.ndarray, np.ndarray]:
  names = export.TRAIN_BATCHES if split == 'train' else ('test_batch',)
  rows = np.concatenate([source[n][0] for n in names])
  labels = np.concatenate([source[n][1] for n in names])
  return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _check_tree(out: str, source) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  assert sorted(os.listdir(out)) == ['test', 'train']
  for split in ('train', 'test'):
    images, labels = _expected(source, split)
    assert sorted(os.listdir(os.path.join(out, split))) == list(export.CIFAR10_CLASSES)
    for k, name in enumerate(export.CIFAR10_CLASSES):
      files = sorted(os.listdir(os.path.join(out, split, name)))
      want = np.flatnonzero(labels == k)
      assert files == [f'{i:05d}.png' for i in want]
      for f, i in zip(files, want):
        png = tf.io.read_file(os.path.join(out, split, name, f))
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), images[i])


@pytest.mark.parametrize('fmt', ['binary', 'python'])
def test_exports_the_official_archive_losslessly(tmp_path, fmt, capsys):
  source = _source()
  make = _binary_archive if fmt == 'binary' else _python_archive
  archive = make(str(tmp_path / f'cifar-10-{fmt}.tar.gz'), source)
  out = tmp_path / 'cifar10'
  assert export.main([f'--archive={archive}', f'--out={out}']) == 0
  _check_tree(str(out), source)
  printed = capsys.readouterr().out
  assert 'train: 100 images' in printed and 'test: 30 images' in printed
  assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(archive), 'cifar10'])


def test_refuses_a_non_empty_out_and_overwrites_an_earlier_export(tmp_path):
  archive = _binary_archive(str(tmp_path / 'a.tar.gz'), _source(0))
  out = tmp_path / 'cifar10'
  assert export.main([f'--archive={archive}', f'--out={out}']) == 0
  before = sorted(os.listdir(out / 'train' / 'cat'))
  proc = subprocess.run([sys.executable, TOOL, f'--archive={archive}', f'--out={out}'],
                        capture_output=True,
                        text=True,
                        cwd=REPO,
                        timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.startswith('error: --out=') and 'not empty' in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert sorted(os.listdir(out / 'train' / 'cat')) == before
  other = _source(1)
  archive2 = _python_archive(str(tmp_path / 'b.tar.gz'), other)
  assert export.main([f'--archive={archive2}', f'--out={out}', '--overwrite']) == 0
  _check_tree(str(out), other)
  assert sorted(os.listdir(tmp_path)) == ['a.tar.gz', 'b.tar.gz', 'cifar10']
  (out / 'notes.txt').write_text('mine')
  assert export.main([f'--archive={archive}', f'--out={out}', '--overwrite']) == 2
  assert (out / 'notes.txt').exists()


@pytest.mark.parametrize('args, message', [
    ([], '--source=archive needs --archive'),
    (['--archive={tmp}/missing.tar.gz'], 'is not a readable file'),
    (['--archive={tmp}/junk.tar.gz'], 'cannot be read'),
    (['--archive={tmp}/empty.tar.gz'], 'holds no CIFAR-10 batches'),
    (['--source=tfds', '--archive={tmp}/junk.tar.gz'], '--archive is for --source=archive'),
    (['--source=web'], "argument --source: invalid choice: 'web'"),
    (['--archive={tmp}/junk.tar.gz', '--out={tmp}/no/such/dir'], 'is not a writable'),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
  (tmp_path / 'junk.tar.gz').write_bytes(b'not a tar file')
  with tarfile.open(tmp_path / 'empty.tar.gz', 'w:gz') as tar:
    _add(tar, 'readme.txt', b'hello')
  args = [a.format(tmp=tmp_path) for a in args]
  if not any(a.startswith('--out') for a in args):
    args.append(f'--out={tmp_path}/out')
  before = sorted(os.listdir(tmp_path))
  proc = subprocess.run([sys.executable, TOOL, *args],
                        capture_output=True,
                        text=True,
                        cwd=REPO,
                        timeout=60)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.startswith('error: ') and message in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert sorted(os.listdir(tmp_path)) == before


def test_an_interrupted_export_leaves_no_out(tmp_path, monkeypatch):
  archive = _binary_archive(str(tmp_path / 'a.tar.gz'), _source())
  written = []

  def fail_midway(root, splits, names):
    os.makedirs(os.path.join(root, 'train', names[0]))
    written.append(root)
    raise KeyboardInterrupt

  monkeypatch.setattr(export, 'write_tree', fail_midway)
  with pytest.raises(KeyboardInterrupt):
    export.main([f'--archive={archive}', f'--out={tmp_path}/cifar10'])
  assert written and os.path.basename(written[0]).startswith('cifar10.partial-')
  assert sorted(os.listdir(tmp_path)) == ['a.tar.gz']


def test_tfds_source(tmp_path, capsys):
  """--source=tfds through tensorflow-datasets' mock data (offline, random images)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  manual = tmp_path / 'tfds' / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  (manual / 'cifar-10-binary.tar.gz').write_bytes(b'')  # passes the offline check
  with tfds.testing.mock_data(num_examples=12):
    assert export.main(['--source=tfds', f'--data_dir={tmp_path}/tfds',
                        f'--out={tmp_path}/out']) == 0
  for split in ('train', 'test'):
    assert sorted(os.listdir(tmp_path / 'out' / split)) == list(export.CIFAR10_CLASSES)
    assert sum(len(os.listdir(tmp_path / 'out' / split / c)) for c in export.CIFAR10_CLASSES) == 12
  assert 'tensorflow-datasets cifar10' in capsys.readouterr().out


def test_the_exported_tree_trains(tmp_path):
  archive = _binary_archive(str(tmp_path / 'a.tar.gz'), _source())
  out = tmp_path / 'cifar10'
  assert export.main([f'--archive={archive}', f'--out={out}']) == 0
  proc = run_module('rethinking_tf.train', '--dataset=image_folder', f'--data_dir={out}',
                    '--model=mlp_1x512', '--epochs=1', f'--logdir={tmp_path}/run')
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(tmp_path / 'run' / 'results.json') as f:
    results = json.load(f)
  assert results['epochs_completed'] == 1
  assert results['config']['dataset'] == 'image_folder'
