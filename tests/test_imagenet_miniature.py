"""The miniature ImageNet through tensorflow-datasets' real imagenet2012 builder (Table 2)."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from rethinking_tf.data import imagenet_miniature as mini
from tests.conftest import REPO


def _prepare(data_dir: str, **kwargs) -> tuple[mini.Miniature, object]:
  written = mini.write(os.path.join(data_dir, 'downloads', 'manual'), **kwargs)
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  builder.download_and_prepare()
  return written, builder


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('imagenet'))
  written, builder = _prepare(data_dir)
  return data_dir, written, builder


def _examples(builder, split):
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return {ex['file_name'].decode(): ex for ex in tfds.as_numpy(ds)}


def test_builder_prepares_miniature_offline(prepared):
  _, written, builder = prepared
  names = mini.synsets()
  assert builder.info.splits['train'].num_examples == 16
  assert builder.info.splits['validation'].num_examples == 3
  train = _examples(builder, 'train')
  assert {f: names[int(ex['label'])] for f, ex in train.items()} == written.train_files
  assert all(ex['image'].ndim == 3 and ex['image'].shape[2] == 3 for ex in train.values())
  assert len({ex['image'].shape for ex in train.values()}) > 8  # varied sizes
  # The special cases are in, under their exact names, and come out as RGB.
  assert mini.CMYK_FILE in train and mini.PNG_FILE in train
  # Validation labels: the builder's bundled list, by sorted file name.
  val = _examples(builder, 'validation')
  assert {f: names[int(ex['label'])] for f, ex in val.items()} == written.val_files
  assert sorted(val) == [mini.validation_name(i) for i in range(3)]
  assert set(written.val_files.values()) <= set(written.classes)


def test_special_cases_are_what_the_builder_converts(tmp_path):
  written = mini.write(str(tmp_path), num_classes=2, images_per_class=2, num_validation=1)
  with tarfile.open(written.train_archive) as outer:
    blobs = {}
    for member in outer:
      with tarfile.open(fileobj=outer.extractfile(member)) as inner:
        blobs.update((m.name, inner.extractfile(m).read()) for m in inner)
  assert Image.open(io.BytesIO(blobs[mini.CMYK_FILE])).mode == 'CMYK'
  assert blobs[mini.PNG_FILE][:8] == b'\x89PNG\r\n\x1a\n'
  assert len(blobs) == 4 and set(written.classes) == {'n02077923', 'n02105855'}


def test_archives_are_deterministic(tmp_path):
  digest = lambda p: hashlib.sha256(open(p, 'rb').read()).hexdigest()
  a = mini.write(str(tmp_path / 'a'), num_classes=3, images_per_class=2)
  b = mini.write(str(tmp_path / 'b'), num_classes=3, images_per_class=2)
  c = mini.write(str(tmp_path / 'c'), num_classes=3, images_per_class=2, order_seed=1)
  assert digest(a.train_archive) == digest(b.train_archive)
  assert digest(a.val_archive) == digest(b.val_archive)
  assert digest(a.val_archive) != digest(c.val_archive) and a.val_files == c.val_files


def test_tool_writes_into_manual_dir_and_refuses_to_overwrite(tmp_path):
  tool = os.path.join(REPO, 'tools', 'make_miniature_imagenet.py')
  run = lambda *a: subprocess.run(
      [sys.executable, tool, *a], capture_output=True, text=True, timeout=60)
  ok = run(f'--data_dir={tmp_path}', '--num_classes=2', '--images_per_class=1')
  assert ok.returncode == 0, ok.stderr
  manual = tmp_path / 'downloads' / 'manual'
  assert sorted(os.listdir(manual)) == [mini.TRAIN_ARCHIVE, mini.VAL_ARCHIVE]
  again = run(f'--data_dir={tmp_path}')
  assert again.returncode == 2 and again.stderr.startswith('error: ')
  assert mini.TRAIN_ARCHIVE in again.stderr
  bad = run(f'--data_dir={tmp_path / "x"}', '--num_classes=1')
  assert bad.returncode == 2 and '--num_classes=1' in bad.stderr
  assert not (tmp_path / 'x').exists()


def test_classes_cover_first_validation_images():
  classes = mini.choose_classes(5)
  assert len(classes) == 5 and classes == sorted(classes)
  assert set(mini.validation_synsets()[:3]) <= set(classes)
  assert np.all([c in mini.synsets() for c in classes])


def _prepare_tool(data_dir):
  return subprocess.run([
      sys.executable,
      os.path.join(REPO, 'tools', 'prepare_imagenet.py'), f'--data_dir={data_dir}'
  ],
                        capture_output=True,
                        text=True,
                        timeout=300)


def test_prepare_tool_names_the_missing_archives(tmp_path):
  missing = _prepare_tool(tmp_path)
  assert missing.returncode == 2 and missing.stderr.startswith('error: ')
  for name in (mini.TRAIN_ARCHIVE, mini.VAL_ARCHIVE):
    assert os.path.join(tmp_path, 'downloads', 'manual', name) in missing.stderr
  assert not os.listdir(tmp_path)


@pytest.mark.slow  # a TensorFlow start-up and a preparation
def test_prepare_tool_prepares_once(tmp_path):
  mini.write(os.path.join(tmp_path, 'downloads', 'manual'), num_classes=2, images_per_class=2)
  done = _prepare_tool(tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'preparing imagenet2012' in done.stderr and "'train': 4" in done.stdout
  again = _prepare_tool(tmp_path)
  assert again.returncode == 0 and 'already prepared' in again.stdout
