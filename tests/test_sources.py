"""The TensorFlow-free checks: data availability (sources) and names (registry)."""

import json
import os

import pytest

from conftest import run_python
from rethinking_tf import registry
from rethinking_tf.data import sources


def _touch_images(root, counts):
  """Files with image names (never decoded here): {split: {class: n}}."""
  for split, classes in counts.items():
    for name, n in classes.items():
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(n):
        with open(os.path.join(root, split, name, f'{i}.jpg'), 'wb') as f:
          f.write(b'\xff\xd8')
  return str(root)


def test_registry_sources_and_cli_import_no_heavy_module():
  code = ('import json, sys\n'
          'import rethinking_tf.cli, rethinking_tf.registry, rethinking_tf.data.sources\n'
          'print(json.dumps(sorted(m for m in ("tensorflow", "keras", "tensorflow_datasets",'
          ' "sklearn", "scipy") if m in sys.modules)))')
  proc = run_python('-c', code, timeout=60, check=True)
  assert json.loads(proc.stdout) == []


def test_image_folder_counts_and_classes(tmp_path):
  root = _touch_images(tmp_path, {'train': {'b': 3, 'a': 2}, 'test': {'a': 1, 'b': 1}})
  (tmp_path / 'train' / 'a' / 'notes.txt').write_text('not an image')
  assert sources.check_available('image_folder', root) == (5, 2)
  assert sources.num_test_examples('image_folder', root) == 2
  files, labels, classes = sources.folder_files(root, 'train')
  assert classes == ['a', 'b'] and list(labels) == [0, 0, 1, 1, 1]
  assert [os.path.basename(f) for f in files] == ['0.jpg', '1.jpg', '0.jpg', '1.jpg', '2.jpg']


@pytest.mark.parametrize('split', ['train', 'test'])
def test_empty_class_folder_is_an_error_naming_it(tmp_path, split):
  root = _touch_images(tmp_path, {'train': {'a': 2, 'b': 2}, 'test': {'a': 1, 'b': 1}})
  os.makedirs(tmp_path / 'train' / 'c')
  os.makedirs(tmp_path / 'test' / 'c')
  other = 'test' if split == 'train' else 'train'
  _touch_images(tmp_path, {other: {'c': 1}})
  (tmp_path / split / 'c' / 'README').write_text('no images here')
  with pytest.raises(sources.DataError,
                     match=f'class folder {tmp_path}/{split}/c has no images; allowed'):
    sources.check_available('image_folder', root)


def test_empty_class_folder_in_one_split_only_is_named(tmp_path):
  root = _touch_images(tmp_path, {'train': {'a': 2, 'b': 2}, 'test': {'a': 1, 'b': 1}})
  os.makedirs(tmp_path / 'train' / 'extra')
  with pytest.raises(sources.DataError, match=f'class folder {tmp_path}/train/extra has no'):
    sources.check_available('image_folder', root)


def test_image_folder_layout_errors(tmp_path):
  with pytest.raises(sources.DataError, match='is not a readable directory'):
    sources.check_available('image_folder', str(tmp_path / 'nope'))
  _touch_images(tmp_path, {'train': {'a': 1, 'b': 1}})
  with pytest.raises(sources.DataError, match='missing readable test/'):
    sources.check_available('image_folder', str(tmp_path))
  _touch_images(tmp_path, {'test': {'a': 1, 'c': 1}})
  with pytest.raises(sources.DataError,
                     match='different class folders .2 vs 2: train/b, '
                     'test/c has no counterpart.; allowed'):
    sources.check_available('image_folder', str(tmp_path))


def test_tfds_prepared_is_read_from_the_disk_layout(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, '_network_available', lambda host: False)
  with pytest.raises(sources.DataError,
                     match=f'cifar10 is not prepared in {tmp_path} and '
                     'there is no network'):
    sources.check_available('cifar10', str(tmp_path))
  os.makedirs(tmp_path / 'cifar10' / '3.0.2')
  with pytest.raises(sources.DataError, match='no network'):  # No dataset_info.json yet.
    sources.check_available('cifar10', str(tmp_path))
  (tmp_path / 'cifar10' / '3.0.2' / 'dataset_info.json').write_text('{}')
  assert sources.check_available('cifar10', str(tmp_path)) == (50_000, 10)
  with pytest.raises(sources.DataError, match='imagenet2012 is not prepared'):
    sources.check_available('imagenet2012', str(tmp_path))
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))
  assert sources.check_available('cifar10', None) == (50_000, 10)


def test_cifar10_manual_archive_counts_as_available(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, '_network_available', lambda host: False)
  os.makedirs(tmp_path / 'downloads' / 'manual')
  (tmp_path / 'downloads' / 'manual' / 'cifar-10-binary.tar.gz').write_bytes(b'')
  assert sources.check_available('cifar10', str(tmp_path)) == (50_000, 10)


def test_unknown_dataset_and_known_sizes():
  with pytest.raises(sources.DataError, match='allowed: cifar10, digits, image_folder'):
    sources.check_available('mnist', None)
  assert sources.check_available('digits', None) == (1347, 10)
  assert sources.num_test_examples('digits', None) == 450


def test_model_names_and_steps_per_execution_rule():
  assert registry.is_valid_model_name('mlp_2x64') and registry.is_valid_model_name('alexnet')
  assert not registry.is_valid_model_name('resnet50')
  assert not registry.is_valid_model_name('mlp_2x')
  assert registry.default_learning_rate('inception') == 0.1
  assert registry.default_learning_rate('mlp_1x512') == 0.01
  assert registry.auto_steps_per_execution(391) == 32
  assert registry.auto_steps_per_execution(11) == 11


def test_library_modules_take_their_names_from_the_registry():
  """One source of truth: the TensorFlow modules use the registry's and the
  TF-free checks' own objects (imports TensorFlow)."""
  from rethinking_tf.theory import kernels  # pylint: disable=g-import-not-at-top
  from rethinking_tf import models  # pylint: disable=g-import-not-at-top
  from rethinking_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import loaders  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from rethinking_tf.data import randomize  # pylint: disable=g-import-not-at-top
  assert loaders.DataError is sources.DataError
  assert loaders.folder_files is sources.folder_files
  assert pipeline.Randomization is randomize.Randomization is registry.Randomization
  assert list(loaders.DATASETS) == list(registry.DATASET_INFO)
  assert all(e.info is registry.DATASET_INFO[k] for k, e in loaders.DATASETS.items())
  assert pipeline.CROP_SIZE == randomize.CROP_SIZE == registry.CROP_SIZE
  assert models.MODEL_NAMES is registry.MODEL_NAMES
  assert models.is_valid_name is registry.is_valid_model_name
  assert (kernels.KERNELS, kernels.FEATURES) == (registry.KERNELS, registry.FEATURES)
  assert config_lib.auto_steps_per_execution is registry.auto_steps_per_execution


def _age(root, seconds):
  """Sets the modification time of every directory under `root` `seconds` back."""
  then = os.stat(root).st_mtime - seconds
  for d, _, _ in os.walk(root):
    os.utime(d, (then, then))


def test_folder_listing_is_reused_until_a_directory_changes(tmp_path, monkeypatch):
  root = _touch_images(tmp_path, {'train': {'a': 2, 'b': 1}})
  _age(tmp_path, 3600)
  first = sources.folder_files(root, 'train')
  listed = []
  listdir = os.listdir
  monkeypatch.setattr(os, 'listdir', lambda p: listed.append(p) or listdir(p))
  again = sources.folder_files(root, 'train')
  assert listed == [os.path.join(root, 'train')]  # The class folders only: not relisted.
  assert again[0] == first[0] and list(again[1]) == list(first[1]) and again[2] == first[2]
  again[0].append('changed by the caller')  # A copy: the kept listing stays.
  assert sources.folder_files(root, 'train')[0] == first[0]
  _touch_images(tmp_path, {'train': {'b': 2}})  # b/1.jpg is new: b's time changes.
  files, labels, _ = sources.folder_files(root, 'train')
  assert len(files) == 4 and list(labels) == [0, 0, 1, 1]


def test_folder_listing_of_a_fresh_folder_is_not_kept(tmp_path):
  """A directory changed within its timestamp's resolution keeps its time:
  a listing of a folder changed in the last second is made again."""
  root = _touch_images(tmp_path, {'train': {'a': 2, 'b': 1}})
  stamp = os.stat(tmp_path / 'train' / 'a').st_mtime_ns
  assert len(sources.folder_files(root, 'train')[0]) == 3
  os.remove(tmp_path / 'train' / 'a' / '1.jpg')
  os.utime(tmp_path / 'train' / 'a', ns=(stamp, stamp))  # As if in the same tick.
  assert len(sources.folder_files(root, 'train')[0]) == 2
