"""Randomization semantics and determinism (section 2.1), data sets, subsets."""

import os
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_python
from rethinking_tf.data import crop
from rethinking_tf.data import loaders
from rethinking_tf.data import pipeline
from rethinking_tf.data import randomize
from rethinking_tf import registry
from rethinking_tf.data import sources
from rethinking_tf.data import image_cache


def _arrays(n=2000, classes=10, size=8, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  labels = np.arange(n, dtype=np.int64) % classes
  return loaders.Arrays(images, labels, np.arange(n, dtype=np.int64))


def _randomized_images(arrays, rand, is_train=True):
  mean, std = randomize.channel_stats(arrays.images)
  batches = list(pipeline.apply_inputs(arrays, rand, mean, std, is_train, batch=256))
  return np.concatenate([x.numpy() for x, _ in batches])


@pytest.mark.parametrize('p', [0.0, 0.2, 0.5, 0.8, 1.0])
def test_label_corruption_changes_the_expected_fraction(p):
  n, k = 20000, 10
  labels = tf.constant(np.arange(n) % k, tf.int64)
  rand = registry.Randomization(labels='corrupted', corrupt_prob=p, seed=3)
  new = randomize.randomize_labels(labels, tf.range(n, dtype=tf.int64),
                                   randomize.label_tables(n, k, rand)).numpy()
  changed = np.mean(new != labels.numpy())
  # A redrawn label keeps its class with probability 1/k: 0.9p change.
  assert abs(changed - 0.9 * p) < 0.015
  assert new.min() >= 0 and new.max() < k


def test_labels_fixed_per_example_and_by_seed():
  n, k = 5000, 10
  labels = tf.constant(np.arange(n) % k, tf.int64)
  index = tf.range(n, dtype=tf.int64)
  draw = lambda seed: randomize.randomize_labels(
      labels, index, randomize.label_tables(n, k, registry.Randomization('random', seed=seed))
  ).numpy()
  assert (draw(1) == draw(1)).all()  # integer labels from stateless draws: exact
  assert np.mean(draw(1) != draw(2)) > 0.8
  # Keyed by the stable index: a subset or a reordering sees the same labels.
  tables = randomize.label_tables(n, k, registry.Randomization('random', seed=1))
  sub = tf.constant([4999, 7, 100], tf.int64)
  assert (randomize.randomize_labels(tf.gather(labels, sub), sub,
                                     tables).numpy() == draw(1)[[4999, 7, 100]]).all()


def test_shuffled_pixels_one_permutation_for_train_and_test():
  arrays = _arrays(50)
  rand = registry.Randomization(inputs='shuffled_pixels', seed=5)
  train = _randomized_images(arrays, rand, is_train=True)
  test = _randomized_images(arrays, rand, is_train=False)
  # Exact: uint8 / 255 then a gather, elementwise on the same shapes.
  np.testing.assert_array_equal(train, test)
  original = arrays.images.reshape(50, -1, 3).astype(np.float32) / 255
  perm = randomize.pixel_permutation(8, 8, 5).numpy()
  assert sorted(perm) == list(range(64)) and (perm != np.arange(64)).any()
  np.testing.assert_allclose(train.reshape(50, -1, 3), original[:, perm], rtol=1e-6)


def test_random_pixels_independent_permutation_per_image():
  arrays = _arrays(20)
  rand = registry.Randomization(inputs='random_pixels', seed=5)
  out = _randomized_images(arrays, rand).reshape(20, -1, 3)
  original = arrays.images.reshape(20, -1, 3).astype(np.float32) / 255
  perms = []
  for i in range(20):
    # Each image is a permutation of its own pixels (rows of 3 channels move together).
    key = lambda a: np.lexsort(a.T[::-1])
    np.testing.assert_allclose(out[i][key(out[i])], original[i][key(original[i])], rtol=1e-6)
    perms.append(tuple(np.argsort(key(out[i]))))
  assert len(set(perms)) == 20
  # The test set keeps its real images.
  np.testing.assert_allclose(_randomized_images(arrays, rand, is_train=False),
                             arrays.images / np.float32(255),
                             rtol=1e-6)
  # Fixed: the same again (same ops, same shapes, same process: bit for bit).
  np.testing.assert_array_equal(out, _randomized_images(arrays, rand).reshape(20, -1, 3))


def test_gaussian_matches_channel_statistics():
  arrays = _arrays(2000)
  arrays.images[..., 0] //= 2  # Make the channels differ.
  rand = registry.Randomization(inputs='gaussian', seed=1)
  out = _randomized_images(arrays, rand)
  mean, std = randomize.channel_stats(arrays.images)
  np.testing.assert_allclose(out.reshape(-1, 3).mean(0), mean, atol=3e-3)
  np.testing.assert_allclose(out.reshape(-1, 3).std(0), std, rtol=1e-2)
  assert not np.allclose(out, arrays.images / 255.0, atol=0.1)
  np.testing.assert_array_equal(out, _randomized_images(arrays, rand))  # same call: exact
  other = _randomized_images(arrays, registry.Randomization(inputs='gaussian', seed=2))
  assert not np.allclose(out, other)


def test_channel_stats_exact():
  images = _arrays(100).images
  mean, std = randomize.channel_stats(images)
  x = images.reshape(-1, 3) / 255.0
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std, x.std(0), rtol=1e-6)


def test_per_image_standardization_is_tensorflows_to_the_bit():
  rng = np.random.default_rng(3)
  for shape in ((7, 28, 28, 3), (3, 32, 32, 3), (28, 28, 3)):
    x = tf.constant(rng.integers(0, 256, shape).astype(np.float32) / 255)
    np.testing.assert_array_equal(
        randomize.per_image_standardization(x).numpy(),
        tf.image.per_image_standardization(x).numpy())
  flat = tf.fill([2, 28, 28, 3], 0.5)  # std 0: the 1/sqrt(pixels) floor
  np.testing.assert_array_equal(
      randomize.per_image_standardization(flat).numpy(),
      tf.image.per_image_standardization(flat).numpy())


@pytest.mark.parametrize('inputs', ['original', 'shuffled_pixels', 'random_pixels', 'gaussian'])
@pytest.mark.parametrize('is_train', [True, False])
def test_materialize_is_the_batched_pipeline_in_one_tensor(inputs, is_train):
  # The trainer keeps materialize()'s tensors; apply_inputs is the reference
  # tf.data pass over the same batches. Eager and tf.data kernels may round
  # differently only where grappler fuses ops: a tolerance, not equality.
  arrays = _arrays(2300, size=32)  # not a multiple of the batch: a short last batch
  rand = registry.Randomization(labels='random', inputs=inputs, seed=4)
  mean, std = randomize.channel_stats(arrays.images)
  x, y = pipeline.materialize(arrays, rand, mean, std, is_train, batch=1024)
  ref = pipeline.apply_inputs(arrays, rand, mean, std, is_train, batch=1024)
  ref_x = np.concatenate([randomize.standardize(a).numpy() for a, _ in ref])
  assert x.shape == (2300, registry.CROP_SIZE, registry.CROP_SIZE, 3) and x.dtype == tf.float32
  np.testing.assert_array_equal(y.numpy(), arrays.labels)
  np.testing.assert_allclose(x.numpy(), ref_x, rtol=1e-5, atol=1e-5)
  raw, _ = pipeline.materialize(arrays, rand, mean, std, is_train, centre=False, batch=1024)
  assert raw.shape == (2300, 32, 32, 3)


def test_channel_stats_match_float64_numpy_on_the_cifar_scale():
  images = np.random.default_rng(1).integers(0, 256, (9000, 32, 32, 3), dtype=np.uint8)
  images[:100] = 255  # skewed, so a mean-then-variance slip would show
  mean, std = randomize.channel_stats(images)
  x = images.reshape(-1, 3).astype(np.float64) / 255.0
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std, x.std(0), rtol=1e-6)


def test_balanced_subset():
  labels = np.array([0, 1, 1, 2, 0, 2, 1, 0, 2, 0])
  keep = loaders.balanced_subset(labels, 7, 3)
  assert list(keep) == [0, 1, 2, 3, 4, 5, 7]  # first 3 of class 0, first 2 of 1 and 2
  with pytest.raises(sources.DataError, match='train_size'):
    loaders.balanced_subset(labels, 11, 3)
  with pytest.raises(sources.DataError, match='class 1'):
    loaders.balanced_subset(np.array([0, 0, 0, 1]), 4, 2)
  with pytest.raises(sources.DataError, match='--test_size=11 exceeds the 10 test'):
    loaders.balanced_subset(labels, 11, 3, split='test')


def test_test_size_keeps_a_balanced_test_subset():
  rand = registry.Randomization(labels='random', seed=3)
  full = pipeline.make_pipelines('digits', None, rand, batch_size=100, train_size=200)
  small = pipeline.make_pipelines('digits',
                                  None,
                                  rand,
                                  batch_size=100,
                                  train_size=200,
                                  test_size=100)
  assert (full.num_test, small.num_test) == (450, 100)
  x_full, y_full = map(np.concatenate, zip(*[(x.numpy(), y.numpy()) for x, y in full.test]))
  x, y = map(np.concatenate, zip(*[(x.numpy(), y.numpy()) for x, y in small.test]))
  assert np.bincount(y, minlength=10).tolist() == [10] * 10
  keep = loaders.balanced_subset(y_full, 100, 10, split='test')
  # The same images, preprocessed alike, but standardized in a batch of 100
  # instead of 450: equal up to float32 rounding of the per-image mean and std
  # (values are standardized, O(1)), not necessarily bit for bit on every CPU.
  np.testing.assert_allclose(x, x_full[keep], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(y, y_full[keep])
  # The training set is untouched by --test_size (the same 200 images through
  # the same ops on the same shapes: exact).
  a, b = next(iter(full.train(0))), next(iter(small.train(0)))
  np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())


def test_pipeline_deterministic_per_epoch_and_fixed_across_epochs():
  rand = registry.Randomization(labels='random', seed=7)
  p = pipeline.make_pipelines('digits',
                              None,
                              rand,
                              batch_size=100,
                              train_size=500,
                              random_crop=True)
  q = pipeline.make_pipelines('digits',
                              None,
                              rand,
                              batch_size=100,
                              train_size=500,
                              random_crop=True)
  assert p.steps_per_epoch == 5 and p.num_train == 500
  first = lambda pipe, e: next(iter(pipe.train(e)))
  # Same seed, same epoch: the same batch, images included (crops are seeded);
  # bit for bit, as p and q run the same ops on the same shapes.
  for e in (0, 3):
    (x1, y1), (x2, y2) = first(p, e), first(q, e)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
  # Epochs differ in order, not in the labels each example carries.
  def epoch_pairs(e):
    it = iter(p.train(e))
    xs, ys = zip(*[next(it) for _ in range(p.steps_per_epoch)])
    return np.concatenate(ys)

  y0, y1 = epoch_pairs(0), epoch_pairs(1)
  assert (y0 != y1).any()
  assert sorted(y0) == sorted(y1)
  evaluated = np.concatenate([y.numpy() for _, y in p.train_eval])
  assert sorted(evaluated) == sorted(y0)
  # Test labels are never randomized.
  test_true = loaders.load_arrays('digits', 'test').labels
  np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in p.test]), test_true)
  assert 0.8 < p.label_noise_fraction < 1.0


def test_preprocessing_centre_crop_and_standardize():
  x, _, xt, _, _ = pipeline.numpy_arrays('digits', None, registry.Randomization(), train_size=100)
  assert x.shape == (100, 28, 28, 3) and xt.shape == (450, 28, 28, 3)
  np.testing.assert_allclose(x.reshape(100, -1).mean(1), 0, atol=1e-5)
  np.testing.assert_allclose(x.reshape(100, -1).std(1), 1, atol=1e-3)


def test_image_folder(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (('train', 6), ('test', 2)):
    for name in ('zebra', 'ant', 'cat'):  # Classes in sorted order: ant, cat, zebra.
      os.makedirs(tmp_path / split / name)
      for i in range(n):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
        tf.io.write_file(str(tmp_path / split / name / f'{i}.{"png" if i % 2 else "jpg"}'),
                         encode(image))
  (tmp_path / 'train' / 'ant' / 'notes.txt').write_text('not an image')
  assert sources.check_available('image_folder', str(tmp_path)) == (18, 3)
  train = loaders.load_arrays('image_folder', 'train', str(tmp_path))
  assert train.images.shape == (18, 32, 32, 3)
  assert list(train.labels) == [0] * 6 + [1] * 6 + [2] * 6
  # PNG is lossless: the decoded pixels are the written ones.
  png = tf.io.decode_png(tf.io.read_file(str(tmp_path / 'train' / 'ant' / '1.png'))).numpy()
  np.testing.assert_array_equal(train.images[1], png)
  p = pipeline.make_pipelines('image_folder',
                              str(tmp_path),
                              registry.Randomization(),
                              4,
                              train_size=9)
  assert p.num_train == 9 and p.num_classes == 3 and p.num_test == 6


def test_image_folder_errors(tmp_path):
  with pytest.raises(sources.DataError, match='data_dir'):
    sources.check_available('image_folder', str(tmp_path / 'nope'))
  os.makedirs(tmp_path / 'train' / 'a')
  with pytest.raises(sources.DataError, match='test/'):
    sources.check_available('image_folder', str(tmp_path))


def _small_folder(root, per_class=3, classes=('a', 'b')):
  """A tiny image_folder of random 32x32 JPEGs (the CIFAR-10 layout)."""
  rng = np.random.default_rng(1)
  for split in ('train', 'test'):
    for name in classes:
      os.makedirs(root / split / name)
      for i in range(per_class):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        tf.io.write_file(str(root / split / name / f'{i}.jpg'), tf.io.encode_jpeg(image))
  return str(root)


def _entry(root, split='train'):
  return image_cache.entry_path(root, split)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
  """An empty cache directory of this test's own."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  return tmp_path / 'cache'


@pytest.fixture
def decode_calls(monkeypatch):
  """Counts the decoding passes of image_folder splits (cache misses)."""
  calls = []
  decode = loaders._decode_files  # pylint: disable=protected-access

  def counted(files):
    calls.append(len(files))
    return decode(files)

  monkeypatch.setattr(loaders, '_decode_files', counted)
  return calls


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_undecodable_image_is_one_line_naming_the_file(tmp_path, cache_home, damage):
  root = _small_folder(tmp_path / 'images', per_class=40)
  bad = tmp_path / 'images' / 'train' / 'b' / '7.jpg'
  raw = bad.read_bytes()
  bad.write_bytes(b'not an image at all' if damage == 'garbage' else raw[:len(raw) // 2])
  for load in (lambda: loaders.load_arrays('image_folder', 'train', root),
               lambda: pipeline.randomized_arrays('image_folder', root, registry.Randomization())):
    with pytest.raises(sources.DataError) as e:
      load()
    message = str(e.value)
    assert '\n' not in message and message.startswith(f'{bad}: cannot decode')
    assert ('Unknown image file format' if damage == 'garbage' else 'truncated') in message
  assert not os.path.exists(_entry(root))  # Nothing cached for the broken split.
  # The test split is fine and loads.
  assert loaders.load_arrays('image_folder', 'test', root).images.shape == (80, 32, 32, 3)


def test_undecodable_first_image_is_named(tmp_path, cache_home):
  root = _small_folder(tmp_path)
  (tmp_path / 'train' / 'a' / '0.jpg').write_bytes(b'\xff\xd8\xff\xe0')
  with pytest.raises(sources.DataError, match=r'train/a/0\.jpg: cannot decode .*truncated'):
    loaders.load_arrays('image_folder', 'train', root)


def test_image_cache_second_load_reads_the_entry(tmp_path, cache_home, decode_calls, monkeypatch):
  root = _small_folder(tmp_path / 'images')
  first = [loaders.load_arrays('image_folder', split, root) for split in ('train', 'test')]
  assert decode_calls == [6, 6]
  assert sorted(os.listdir(cache_home / 'rethinking_tf' / 'image_folder')) == [
      os.path.basename(_entry(root, 'test')),
      os.path.basename(_entry(root))
  ]
  monkeypatch.setattr(loaders, '_decode_files', lambda files: pytest.fail('decoded again'))
  for split, arrays in zip(('train', 'test'), first):
    again = loaders.load_arrays('image_folder', split, root)
    np.testing.assert_array_equal(again.images, arrays.images)
    np.testing.assert_array_equal(again.labels, arrays.labels)
    np.testing.assert_array_equal(again.index, arrays.index)


def test_image_cache_changed_file_invalidates(tmp_path, cache_home, decode_calls):
  root = _small_folder(tmp_path)
  first = loaders.load_arrays('image_folder', 'train', root)
  path = tmp_path / 'train' / 'b' / '1.jpg'
  st = os.stat(path)
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # Same bytes, new mtime.
  loaders.load_arrays('image_folder', 'train', root)
  assert decode_calls == [6, 6]
  white = np.full((32, 32, 3), 255, np.uint8)
  tf.io.write_file(str(path), tf.io.encode_png(white))  # New content (and size).
  changed = loaders.load_arrays('image_folder', 'train', root)
  assert decode_calls == [6, 6, 6]
  np.testing.assert_array_equal(changed.images[4], white)
  np.testing.assert_array_equal(changed.images[:4], first.images[:4])
  os.remove(tmp_path / 'train' / 'a' / '2.jpg')  # A file fewer.
  assert len(loaders.load_arrays('image_folder', 'train', root).labels) == 5
  assert decode_calls == [6, 6, 6, 5]
  loaders.load_arrays('image_folder', 'train', root)
  assert decode_calls == [6, 6, 6, 5]  # One entry per split, now for 5 files.


@pytest.mark.parametrize('damage', ['truncated', 'flipped', 'empty'])
def test_image_cache_corrupt_entry_is_ignored_and_rewritten(tmp_path, cache_home, decode_calls,
                                                            damage):
  root = _small_folder(tmp_path)
  first = loaders.load_arrays('image_folder', 'train', root)
  entry = _entry(root)
  raw = open(entry, 'rb').read()
  if damage == 'truncated':
    raw = raw[:len(raw) // 2]
  elif damage == 'flipped':  # A bit of the image data, not of the zip structure.
    middle = len(raw) // 2
    raw = raw[:middle] + bytes([raw[middle] ^ 1]) + raw[middle + 1:]
  else:
    raw = b''
  with open(entry, 'wb') as f:
    f.write(raw)
  again = loaders.load_arrays('image_folder', 'train', root)
  np.testing.assert_array_equal(again.images, first.images)
  assert decode_calls == [6, 6]
  loaders.load_arrays('image_folder', 'train', root)  # Rewritten: read back now.
  assert decode_calls == [6, 6]


def test_image_cache_write_is_atomic(tmp_path, cache_home, decode_calls, monkeypatch):
  """A write that dies half way leaves no entry (and no temporary file)."""
  root = _small_folder(tmp_path)
  savez = np.savez

  def dies(f, **arrays):
    f.write(b'PK\x03\x04 half an entry')
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(np, 'savez', dies)
  first = loaders.load_arrays('image_folder', 'train', root)
  directory = os.path.dirname(_entry(root))
  assert os.listdir(directory) == []
  monkeypatch.setattr(np, 'savez', savez)
  loaders.load_arrays('image_folder', 'train', root)
  assert os.listdir(directory) == [os.path.basename(_entry(root))]
  np.testing.assert_array_equal(
      loaders.load_arrays('image_folder', 'train', root).images, first.images)
  assert decode_calls == [6, 6]


def test_image_cache_removes_temporary_files_of_killed_writers(tmp_path, cache_home):
  root = _small_folder(tmp_path)
  directory = os.path.dirname(_entry(root))
  os.makedirs(directory)
  old, fresh = (os.path.join(directory,
                             os.path.basename(_entry(root)) + s)
                for s in ('.old.tmp', '.fresh.tmp'))
  for path in (old, fresh):
    open(path, 'wb').write(b'PK half')
  os.utime(old, (time.time() - 7200,) * 2)
  loaders.load_arrays('image_folder', 'train', root)
  assert sorted(os.listdir(directory)) == sorted(
      [os.path.basename(_entry(root)), os.path.basename(fresh)])


def test_image_cache_unwritable_directory_decodes(tmp_path, monkeypatch, decode_calls):
  root = _small_folder(tmp_path)
  (tmp_path / 'a_file').write_text('')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'a_file'))  # Not a directory.
  for _ in range(2):
    assert loaders.load_arrays('image_folder', 'train', root).images.shape == (6, 32, 32, 3)
  assert decode_calls == [6, 6]


def test_image_cache_off_neither_reads_nor_writes(tmp_path, cache_home, decode_calls, monkeypatch):
  root = _small_folder(tmp_path)
  p = pipeline.make_pipelines('image_folder', root, registry.Randomization(), 4, image_cache=False)
  assert p.num_train == 6 and not os.path.exists(cache_home)
  loaders.load_arrays('image_folder', 'train', root)  # Writes the entry.
  assert decode_calls == [6, 6, 6]
  fail = lambda *a, **k: pytest.fail('the cache was used')
  monkeypatch.setattr(image_cache, 'load', fail)
  monkeypatch.setattr(image_cache, 'save', fail)
  loaders.load_arrays('image_folder', 'train', root, image_cache=False)
  pipeline.randomized_arrays('image_folder', root, registry.Randomization(), image_cache=False)
  assert decode_calls == [6, 6, 6, 6, 6, 6]


def test_unknown_dataset():
  with pytest.raises(sources.DataError, match='allowed: cifar10'):
    sources.check_available('mnist', None)


@pytest.mark.slow
def test_shared_cifar10_copy(cifar10_folder):
  """The real CIFAR-10 copy of ../shared/data reads as an image_folder."""
  assert sources.check_available('image_folder', cifar10_folder) == (50000, 10)
  train = loaders.load_arrays('image_folder', 'train', cifar10_folder)
  assert train.images.shape == (50000, 32, 32, 3)
  assert np.bincount(train.labels).tolist() == [5000] * 10
  mean, _ = randomize.channel_stats(train.images)
  np.testing.assert_allclose(mean * 255, [125.3, 123.0, 113.9], atol=2.0)
  # Read back from the image cache, the same arrays.
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loaders, '_decode_files', lambda files: pytest.fail('decoded again'))
    cached = loaders.load_arrays('image_folder', 'train', cifar10_folder)
  np.testing.assert_array_equal(cached.images, train.images)


def test_corrupted_at_p_0_and_1_are_true_and_random_labels():
  """run_sweep treats these as the same run (tools/run_sweep.canonical_flags)."""
  n, k = 5000, 10
  labels = tf.constant(np.arange(n) % k, tf.int64)
  index = tf.range(n, dtype=tf.int64)

  def relabel(**kw):
    tables = randomize.label_tables(n, k, registry.Randomization(seed=4, **kw))
    return randomize.randomize_labels(labels, index, tables).numpy()

  np.testing.assert_array_equal(relabel(labels='corrupted', corrupt_prob=0.0), labels.numpy())
  np.testing.assert_array_equal(relabel(labels='corrupted', corrupt_prob=1.0),
                                relabel(labels='random'))
  assert np.mean(relabel(labels='random') != labels.numpy()) > 0.85


def _reference_crop(images: np.ndarray, index: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """The random crop as appendix A says it: slice the window, standardize it."""
  c = registry.CROP_SIZE
  crops = [images[i, r:r + c, k:k + c, :] for i, (r, k) in zip(index, offsets)]
  return tf.image.per_image_standardization(np.stack(crops)).numpy()


@pytest.mark.parametrize('gaussian', [False, True])
def test_crop_tables_give_standardized_windows(gaussian):
  rng = np.random.default_rng(1)
  if gaussian:  # not k/255 values: the table stays float32
    images = rng.normal(0.5, 0.2, (7, 32, 30, 3)).astype(np.float32)
  else:
    images = rng.integers(0, 256, (7, 32, 30, 3)).astype(np.float32) / 255.0
    images[3] = 128 / 255  # a constant image: std clamps to 1/sqrt(#values)
  rows, affine = crop.crop_tables(images, chunk=3)
  assert rows.dtype == (np.float32 if gaussian else np.uint8)
  index = np.array([0, 3, 6, 2, 2, 5])
  offsets = np.array([[0, 0], [4, 2], [2, 1], [4, 0], [0, 2], [3, 1]])  # rows 0-4, cols 0-2
  got = crop.crop_batch(tf.constant(rows), tf.constant(affine), tf.constant(index),
                        tf.constant(offsets, tf.int64), 32, 30).numpy()
  np.testing.assert_allclose(got, _reference_crop(images, index, offsets), atol=2e-5)


def test_random_offsets_cover_every_window_uniformly():
  offsets = crop.random_offsets(50_000, 32, 30, tf.constant([3, 4], tf.int64)).numpy()
  counts = np.zeros((5, 3))
  np.add.at(counts, (offsets[:, 0], offsets[:, 1]), 1)
  assert counts.min() > 0.9 * 50_000 / 15 and counts.max() < 1.1 * 50_000 / 15


def test_random_crop_pipeline_matches_reference():
  """Training batches are standardized random windows; train-eval the centre one."""
  rand = registry.Randomization(seed=5)
  p = pipeline.make_pipelines('digits', None, rand, batch_size=64, train_size=128, random_crop=True)
  arrays, _, _, _ = pipeline.randomized_arrays('digits', None, rand, train_size=128)
  images = arrays.images.astype(np.float32) / 255.0
  x, y = next(iter(p.train(2)))
  order = tf.random.experimental.stateless_shuffle(tf.range(128, dtype=tf.int64),
                                                   tf.constant([5, 2], tf.int64)).numpy()[:64]
  key = tf.random.experimental.stateless_fold_in(tf.constant([5, 2], tf.int64), randomize.SALT_CROP)  # pylint: disable=protected-access
  offsets = crop.random_offsets(128, 32, 32, key).numpy()[:64]  # the epoch's first 64
  np.testing.assert_allclose(x.numpy(), _reference_crop(images, order, offsets), atol=2e-5)
  np.testing.assert_array_equal(y.numpy(), arrays.labels[order])
  x_eval, _ = next(iter(p.train_eval))
  np.testing.assert_allclose(x_eval.numpy(),
                             randomize.standardize(images[:len(x_eval)]).numpy(),
                             atol=2e-5)


def test_train_batches_are_the_epoch_order_cut_into_batches():
  """Chunked gathering (CHUNK_BATCHES batches at a time) gives exactly the batches
  of the epoch's seeded order, the short last one included, epoch after epoch."""
  rand = registry.Randomization(labels='random', seed=3)
  n, b = 1100, 32  # 35 batches per epoch: 34 of 32 and one of 12; 3 chunks of <= 16
  p = pipeline.make_pipelines('digits', None, rand, batch_size=b, train_size=n)
  assert p.steps_per_epoch == 35 and pipeline.CHUNK_BATCHES < 35
  x_all = np.concatenate([x.numpy() for x, _ in p.train_eval])
  y_all = np.concatenate([y.numpy() for _, y in p.train_eval])
  it = iter(p.train(4))
  for e in (4, 5):
    order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                     tf.constant([3, e], tf.int64)).numpy()
    for k in range(p.steps_per_epoch):
      x, y = next(it)
      idx = order[k * b:(k + 1) * b]
      assert len(y) == (12 if k == 34 else 32)
      # Both are gathers from the one materialized table: copies, exact.
      np.testing.assert_array_equal(x.numpy(), x_all[idx])
      np.testing.assert_array_equal(y.numpy(), y_all[idx])


@pytest.mark.parametrize('n,size', [(10, 4), (12, 4), (3, 4)])
def test_chunks_are_batch_without_per_row_work(n, size):
  """pipeline.chunks gives the elements of from_tensor_slices(..).batch(size)."""
  a = tf.range(n, dtype=tf.int64) * 7
  b = tf.reshape(tf.range(2 * n), [n, 2])
  for tensors in (a, (a, b)):
    got = list(pipeline.chunks(tensors, size).as_numpy_iterator())
    want = list(tf.data.Dataset.from_tensor_slices(tensors).batch(size).as_numpy_iterator())
    assert len(got) == len(want) == -(-n // size)
    for g, w in zip(got, want):
      for x, y in zip(tf.nest.flatten(g), tf.nest.flatten(w)):
        np.testing.assert_array_equal(x, y)


def test_data_tables_live_on_the_host():
  """The materialized tables stay on CPU:0 even inside another device's scope
  (as under a GPU default device), where tf.data gathers from them."""
  code = ('import numpy as np, tensorflow as tf\n'
          'cpu = tf.config.list_physical_devices("CPU")[0]\n'
          'tf.config.set_logical_device_configuration(\n'
          '    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n'
          'from rethinking_tf.data import pipeline\n'
          'with tf.device("/CPU:1"):\n'
          '  print(pipeline._variable(np.zeros(3, np.float32)).device, tf.Variable(0.0).device)\n')
  proc = run_python('-c', code, timeout=300, check=True)
  pinned, unpinned = proc.stdout.split()
  assert unpinned.endswith('CPU:1')  # the scope does move an ordinary variable
  assert pinned.endswith('CPU:0'), pinned
