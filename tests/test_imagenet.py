"""ImageNet pipeline (Table 2) on tensorflow-datasets' mock data, and Inception V3."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rethinking_tf import registry
from rethinking_tf.data import imagenet
from rethinking_tf import models


@pytest.fixture(scope='module')
def mock():
  with tfds.testing.mock_data(num_examples=16):
    yield


def test_randomized_imagenet_pipeline(mock, tmp_path):
  rand = registry.Randomization(labels='random', inputs='shuffled_pixels', seed=1)
  p = imagenet.make_pipelines(str(tmp_path), rand, 4, None, augment=True)
  assert p.num_train == 16 and p.num_test == 16 and p.num_classes == 1000
  assert p.input_shape == (299, 299, 3) and p.steps_per_epoch == 4
  assert p.label_noise_fraction > 0.9
  x, y = next(iter(p.train(0)))
  assert x.shape == (4, 299, 299, 3) and y.shape == (4,)
  assert -1.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
  # Training labels are fixed per example; test labels are the true ones.
  first = np.concatenate([y.numpy() for _, y in p.train_eval])
  again = np.concatenate([y.numpy() for _, y in p.train_eval])
  np.testing.assert_array_equal(first, again)
  clean = imagenet.make_pipelines(str(tmp_path), registry.Randomization(), 4, None, False)
  true = np.concatenate([y.numpy() for _, y in clean.train_eval])
  assert np.mean(first != true) > 0.9
  np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in p.test]),
                                np.concatenate([y.numpy() for _, y in clean.test]))


def test_inception_v3_regularizers():
  plain = models.build('inception_v3', (299, 299, 3), 1000)
  reg = models.build('inception_v3', (299, 299, 3), 1000, weight_decay=4e-5, dropout=0.2)
  assert not plain.losses and len(reg.losses) == 95  # 94 convs + the logits
  assert models.trainable_params(reg) == models.trainable_params(plain) > 23_000_000
