"""The ImageNet pipeline (Table 2) on a miniature in the real archive format, and Inception V3."""

import glob
import io
import os
import re
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rethinking_tf import models
from rethinking_tf import registry
from rethinking_tf.data import imagenet
from rethinking_tf.data import imagenet_miniature as mini
from rethinking_tf.data import imagenet_prepare
from rethinking_tf.data import sharding
from rethinking_tf.data import sources
from tests.conftest import REPO
from tests.conftest import flagfile_config
from tests.conftest import run_module

SIZE = 75  # Inception V3's smallest input: cheap pipeline tests.


@pytest.fixture(scope='module')
def miniature(tmp_path_factory):
  """A data_dir with the archives only: the pipeline prepares it (and says so)."""
  data_dir = str(tmp_path_factory.mktemp('imagenet'))
  mini.write(imagenet_prepare.manual_dir(data_dir))
  out = io.StringIO()
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  imagenet_prepare.prepare(builder, data_dir, out)
  assert 'of disk' in out.getvalue() and 'at 200 MB/s' in out.getvalue()
  return data_dir


def _files(data_dir, split='train'):
  ds = tfds.builder('imagenet2012', data_dir=data_dir).as_dataset(split=split, shuffle_files=False)
  return [ex['file_name'].numpy().decode() for ex in ds]


def _epoch(p, epoch, steps):
  return [(x.numpy(), y.numpy()) for x, y in p.train(epoch).take(steps)]


def test_check_available_before_and_after_preparation(tmp_path, miniature):
  with pytest.raises(sources.DataError) as e:
    sources.check_available('imagenet2012', str(tmp_path))
  for path in imagenet_prepare.archive_paths(str(tmp_path)):
    assert path in str(e.value)
  assert not os.listdir(tmp_path)
  mini.write(imagenet_prepare.manual_dir(str(tmp_path)), num_classes=2, images_per_class=1)
  assert sources.check_available('imagenet2012', str(tmp_path)) == (1_281_167, 1000)
  assert sources.check_available('imagenet2012', miniature) == (16, 1000)
  assert imagenet_prepare.prepared_sizes(miniature) == {'train': 16, 'validation': 3}


def test_plan_and_disk_check(tmp_path, monkeypatch):
  root = str(tmp_path)
  mini.write(imagenet_prepare.manual_dir(root), num_classes=2, images_per_class=2)
  message = imagenet_prepare.plan_message(root)
  assert 'about 7 examples' in message and imagenet_prepare.manual_dir(root) in message
  assert imagenet_prepare.problem(root) is None
  monkeypatch.setattr(imagenet_prepare, '_archive_bytes', lambda r: imagenet_prepare.OFFICIAL_BYTES)
  message = imagenet_prepare.plan_message(root)
  assert 'about 1,331,167 examples' in message and '154.6 GB of disk' in message
  monkeypatch.setattr(imagenet_prepare, '_free_bytes', lambda r: 10**9)
  assert 'needs about 162.4 GB free' in imagenet_prepare.problem(root)
  with pytest.raises(sources.DataError, match='there is 1.0 GB'):
    sources.check_available('imagenet2012', root)


def test_eval_is_one_resize_of_the_central_crop(miniature):
  ds = tfds.builder('imagenet2012',
                    data_dir=miniature).as_dataset(split='validation',
                                                   shuffle_files=False,
                                                   decoders={'image': tfds.decode.SkipDecoding()})
  encoded = next(iter(ds))['image']
  full = tf.io.decode_jpeg(encoded, channels=3).numpy()
  h, w = full.shape[:2]
  top, left = int((h - h * 0.875) / 2), int((w - w * 0.875) / 2)
  crop = full[top:h - top, left:w - left].astype(np.float32) / 255
  expected = tf.image.resize(crop, [299, 299]).numpy()
  np.testing.assert_allclose(imagenet.eval_image(encoded).numpy(), expected, atol=1e-5)
  p = imagenet.make_pipelines(miniature, registry.Randomization(), 4, None, augment=True)
  x, _ = next(iter(p.test))
  np.testing.assert_allclose(x[0].numpy(), expected * 2 - 1, atol=1e-5)
  assert p.num_test == 3 and p.num_train == 16 and p.input_shape == (299, 299, 3)


def test_augmentation_crops_the_decoded_original_and_flips(miniature):
  ds = tfds.builder('imagenet2012',
                    data_dir=miniature).as_dataset(split='train',
                                                   shuffle_files=False,
                                                   decoders={'image': tfds.decode.SkipDecoding()})
  encoded = next(iter(ds))['image']
  full = tf.image.convert_image_dtype(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
  seen_flip = seen_plain = False
  for k in range(12):
    key = tf.constant([3, k], tf.int64)
    begin, size = imagenet.distorted_box(tf.shape(full), key)
    box = tf.image.resize(tf.slice(full, begin, size), [SIZE, SIZE]).numpy()
    out = imagenet.train_image(encoded, key, SIZE).numpy()
    np.testing.assert_array_equal(out, imagenet.train_image(encoded, key, SIZE).numpy())
    # decode_and_crop_jpeg may differ from decode-then-slice at the box's
    # edges (chroma upsampling): compare the mean difference.
    plain, flip = np.abs(out - box).mean(), np.abs(out - box[:, ::-1]).mean()
    assert min(plain, flip) < 5e-3
    seen_flip |= flip < plain
    seen_plain |= plain < flip
  assert seen_flip and seen_plain


def test_resume_sees_the_batches_of_an_uninterrupted_run(miniature):
  rand = registry.Randomization(labels='random', seed=3)
  p = imagenet.make_pipelines(miniature, rand, 6, None, augment=True, image_size=SIZE)
  assert p.steps_per_epoch == 3  # 6 + 6 + 4
  run = _epoch(p, 0, 6)
  resumed = _epoch(p, 1, 3)
  assert [len(y) for _, y in run] == [6, 6, 4, 6, 6, 4]
  for (x, y), (rx, ry) in zip(run[3:], resumed):
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_allclose(x, rx, atol=1e-6)
  # Another epoch: another order and other crops, the same label per example.
  assert not all(np.array_equal(a[1], b[1]) for a, b in zip(run[:3], run[3:]))
  assert sorted(np.concatenate([y for _, y in run[:3]
                               ])) == sorted(np.concatenate([y for _, y in run[3:]]))


def test_random_labels_are_keyed_by_file_name(miniature, tmp_path):
  rand = registry.Randomization(labels='random', seed=1)

  def labels(data_dir):
    p = imagenet.make_pipelines(data_dir, rand, 8, None, False, image_size=SIZE)
    y = np.concatenate([y.numpy() for _, y in p.train_eval])
    return dict(zip(_files(data_dir), y)), p.label_noise_fraction

  # A second preparation, from archives whose members are in another order.
  other = str(tmp_path)
  mini.write(imagenet_prepare.manual_dir(other), order_seed=7)
  (first, noise), (second, _) = labels(miniature), labels(other)
  assert first == second and len(first) == 16
  assert noise > 0.8
  ids = imagenet.example_id(tf.constant(sorted(first))).numpy()
  assert len(set(ids)) == 16 and ids.dtype == np.int64
  # Fingerprint64 is fixed: this value is the same on every machine.
  assert int(imagenet.example_id(tf.constant('n02105855_2933.JPEG'))) == 3427958106430019183


def test_train_size_is_a_balanced_subset_of_the_prepared_split(miniature):
  p = imagenet.make_pipelines(miniature, registry.Randomization(), 4, 8, False, image_size=SIZE)
  y = np.concatenate([y.numpy() for _, y in p.train_eval])
  assert p.num_train == 8 and p.steps_per_epoch == 2
  assert sorted(np.bincount(y)[np.bincount(y) > 0]) == [2, 2, 2, 2]
  train = np.concatenate([y.numpy() for _, y in p.train(0).take(2)])
  assert sorted(train) == sorted(y)
  with pytest.raises(sources.DataError, match='exceeds the 16 training examples'):
    imagenet.make_pipelines(miniature, registry.Randomization(), 4, 17, False)
  with pytest.raises(sources.DataError, match='class 0 has only 2 examples, 3 needed'):
    imagenet.balanced_ids(np.arange(8), np.repeat([0, 1], [2, 6]), 6)


def test_binary_fails_in_seconds_naming_the_missing_archives(tmp_path):
  start = time.monotonic()
  r = run_module('rethinking_tf.train', '--dataset=imagenet2012', '--model=inception_v3',
                 f'--data_dir={tmp_path}', f'--logdir={tmp_path / "run"}')
  assert r.returncode == 2 and r.stderr.startswith('error: ')
  assert time.monotonic() - start < 30  # seconds, not a TensorFlow start-up
  for path in imagenet_prepare.archive_paths(str(tmp_path)):
    assert path in r.stderr
  assert not os.listdir(tmp_path)


@pytest.mark.slow  # three Inception V3 builds
def test_inception_v3_regularizers_and_seed():
  plain = models.build('inception_v3', (299, 299, 3), 1000)
  reg = models.build('inception_v3', (299, 299, 3), 1000, weight_decay=4e-5, dropout=0.2)
  assert not plain.losses and len(reg.losses) == 95  # 94 convs + the logits
  assert models.trainable_params(reg) == models.trainable_params(plain) > 23_000_000
  other = models.build('inception_v3', (SIZE, SIZE, 3), 1000, seed=1)
  first = lambda m: [w.numpy() for w in m.weights if w.path.endswith('kernel')]
  for a, b, c in zip(first(plain), first(reg), first(other)):
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pixel_randomizations_act_before_augmentation(miniature):
  rand = registry.Randomization(inputs='shuffled_pixels', seed=2)
  p = imagenet.make_pipelines(miniature, rand, 4, None, True, image_size=SIZE)
  clean = imagenet.make_pipelines(miniature,
                                  registry.Randomization(seed=2),
                                  4,
                                  None,
                                  True,
                                  image_size=SIZE)
  x, _ = next(iter(p.train(0)))
  assert x.shape == (4, SIZE, SIZE, 3) and -1 <= float(np.min(x)) <= float(np.max(x)) <= 1
  shuffled, plain = (np.concatenate([x.numpy() for x, _ in q.test]) for q in (p, clean))
  # The same permutation of pixel positions on the test set: same pixels, other places.
  np.testing.assert_allclose(np.sort(shuffled.reshape(3, -1)), np.sort(plain.reshape(3, -1)))
  assert not np.allclose(shuffled, plain)


def _worker(dataset, worker, replicas):
  """Worker `worker` of 2's elements of a dataset marked per worker."""
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=worker,
                                       num_replicas_in_sync=replicas)
  return sharding.per_worker(dataset)(context)


# 2 replicas, batches of 6, 6, 4; 4 replicas (two per worker) on a 6-example
# subset, batches of 4 and 2: worker 1 has no example of the last batch.
@pytest.mark.parametrize('replicas, batch, train_size', [(2, 6, None), (4, 4, 6)])
def test_two_workers_hold_the_global_batches_between_them(miniature, replicas, batch, train_size):
  rand = registry.Randomization(labels='random', seed=3)
  p = imagenet.make_pipelines(miniature, rand, batch, train_size, augment=True, image_size=SIZE)
  steps = p.steps_per_epoch + 1  # across the end of epoch 1
  local = replicas // 2
  slices = [list(_worker(p.train(1), k, replicas).take(steps * local)) for k in range(2)]
  for step, (x, y) in enumerate(_epoch(p, 1, steps)):
    # Step s: each worker's `local` slices, worker 0's replicas first.
    mine = [slices[k][step * local + j] for k in range(2) for j in range(local)]
    assert all(int(n) == len(y) for _, _, n in mine)
    np.testing.assert_array_equal(np.concatenate([s[1] for s in mine]), y)
    np.testing.assert_allclose(np.concatenate([s[0] for s in mine]), x, atol=1e-6)
  if replicas == 4:  # ceil(2 / 4) = 1: replicas 2 and 3 get empty slices of the last batch
    assert [len(s[1]) for s in slices[1][:4]] == [1, 1, 0, 0]
    assert slices[1][2][0].shape == (0, SIZE, SIZE, 3)
    with pytest.raises(ValueError, match='does not split evenly over 4 replicas'):
      _worker(imagenet.make_pipelines(miniature, rand, 6, None, False).train(0), 0, 4)


def test_each_worker_decodes_only_its_own_examples(miniature, monkeypatch):
  decoded = []
  original = imagenet.eval_image

  def counted(encoded, size=imagenet.IMAGE_SIZE):
    tick = tf.py_function(lambda: decoded.append(1) or 0, [], tf.int32)
    with tf.control_dependencies([tick]):
      return tf.identity(original(encoded, size))

  monkeypatch.setattr(imagenet, 'eval_image', counted)
  p = imagenet.make_pipelines(miniature, registry.Randomization(), 6, None, False, image_size=SIZE)
  counts = []
  for k in range(2):
    del decoded[:]
    sizes = [len(y) for _, y, _ in _worker(p.train_eval, k, 2)]
    assert len(decoded) == sum(sizes)
    counts.append(sizes)
  # Batches of 6, 6, 4 cut in halves: each worker decodes 8 of the 16 images.
  assert counts == [[3, 3, 2], [3, 3, 2]]


_SOURCES = ('appendix A', "TF-slim's", 'Szegedy et al. 2016', "the suite's choice")
_HYPERPARAMETERS = ('learning rate', 'batch', 'dropout', 'weight decay', 'augmentation', 'epochs')


def _stated(path):
  """{hyperparameter: its comment text} of a Table 2 flagfile's '# - name: ...' items."""
  items, name = {}, None
  with open(path) as f:
    for line in f:
      item = re.match(r'# - ([a-z ]+): (.*)', line)
      if item:
        name = item.group(1)
        items[name] = item.group(2)
      elif name and line.startswith('#   '):
        items[name] += ' ' + line[4:].strip()
      else:
        name = None
  return items


def test_table2_flagfiles_state_every_hyperparameter_with_its_source():
  paths = sorted(glob.glob(os.path.join(REPO, 'flags', 'table2', '*.cfg')))
  assert len(paths) == 7
  rate = registry.default_learning_rate('inception_v3')
  for path in paths:
    stated = _stated(path)
    assert sorted(stated) == sorted(_HYPERPARAMETERS), path
    for name, text in stated.items():
      assert any(s in text for s in _SOURCES), (path, name)
    config = flagfile_config(os.path.relpath(path, os.path.join(REPO, 'flags'))[:-4])
    assert stated['learning rate'].startswith(f'{rate}, ') and 'learning_rate' not in config
    assert stated['epochs'].startswith(f'{config["epochs"]}, ')
    # The row's own values, as its flags set them.
    for name, flag, value in (('dropout', 'dropout', '0.2'), ('weight decay', 'weight_decay',
                                                              '4e-5')):
      assert stated[name].startswith(f'{value} ')
      expected = value if config[flag] else 'none'
      assert stated[name].endswith(f'this row: {expected}.'), (path, name)
      assert config[flag] in (0, float(value))
    assert ('this row: on.' in stated['augmentation']) == config['augment']


def test_docs_give_the_table2_learning_rate_of_the_flagfiles_and_the_binary():
  rate = registry.default_learning_rate('inception_v3')
  with open(os.path.join(REPO, 'docs', 'reproducing.md')) as f:
    reproducing = f.read()
  table2 = reproducing[reproducing.index('**Table 2 (ImageNet)**'):]
  table2 = table2[:table2.index('\n\n', table2.index('Learning rate, momentum'))]
  assert f'learning rate {rate}, SGD with momentum 0.9, x0.95' in table2
  assert re.findall(r'learning rate (0\.\d+)', table2) == [str(rate)]
  with open(os.path.join(REPO, 'BUILD.md')) as f:
    build = f.read()
  assert f'the learning rate ({rate}, x0.95 every epoch)' in build
  assert not re.search(r'ImageNet[^.]*learning rate 0\.01', reproducing + build)
