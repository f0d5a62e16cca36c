"""A finished training run, loaded for the measures: the one module of
`rethinking_tf.measures` that imports the rest of the package (data, models,
registry, sources), so that their layout can change in one place.

`load_run(logdir)` gives the run's settings (config.json), results
(results.json), epoch log (metrics.csv) and step log (steps.csv, when
present), its model with the final checkpoint's weights, its initial
weights, its randomized training set and its test set as numpy arrays
(preprocessed as the training binary evaluates them: centre crop,
standardization), and a factory for fresh models of the same architecture
and hyperparameters (for the Rademacher estimate).

Initial weights: `<run>/initial.weights.h5` (saved by the trainer at step
0). When it is absent (older runs) they are rebuilt from the seed, but only
when that is exact: when the model factory is seeded, i.e. two builds with
the same seed, with other random numbers drawn between them, give identical
weights. Otherwise they are missing, with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from rethinking_tf import models
from rethinking_tf import registry
from rethinking_tf.data import loaders
from rethinking_tf.data import pipeline
from rethinking_tf.data import sources
from rethinking_tf.training import rundir

INITIAL_WEIGHTS_FILE = rundir.INITIAL_WEIGHTS

REBUILT = 'rebuilt from seed'


@dataclasses.dataclass
class LoadedRun:
  """Everything the measures read from one finished run."""
  logdir: str
  config: dict
  results: dict
  metrics: list[dict[str, float]]
  steps: list[dict[str, float]] | None
  model: keras.Model
  initial: keras.Model | None
  initial_source: str  # the file, REBUILT, or why the initial weights are missing
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  build: Callable[[int], keras.Model]  # num_classes -> a fresh model of the run's kind


def _weights_equal(a: keras.Model, b: keras.Model) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def _initial(build: Callable[[], keras.Model], logdir: str) -> tuple[keras.Model | None, str]:
  path = os.path.join(logdir, INITIAL_WEIGHTS_FILE)
  if os.path.exists(path):
    model = build()
    model.load_weights(path)
    return model, INITIAL_WEIGHTS_FILE
  first = build()
  keras.utils.set_random_seed(12345)  # draw other numbers: a seeded factory ignores them
  np.random.default_rng().random(10)
  keras.random.normal((10,))
  second = build()
  if _weights_equal(first, second):
    return first, REBUILT
  return None, (f'no {INITIAL_WEIGHTS_FILE}, and this model\'s initial weights are not a '
                'function of the seed alone (its factory is not seeded)')


def load_run(logdir: str, image_cache: bool = True, data_dir: str | None = None) -> LoadedRun:
  """Loads a finished run (see the module docstring); raises ValueError if it
  cannot be read (`rethinking_tf.measures.run_problem` says why first).
  `data_dir` replaces the run's own when given (the data moved)."""
  with open(os.path.join(logdir, 'config.json')) as f:
    config = json.load(f)
  with open(os.path.join(logdir, 'results.json')) as f:
    results = json.load(f)
  if data_dir:
    config = dict(config, data_dir=data_dir)
  rand = registry.Randomization(labels=config['labels'],
                                corrupt_prob=config['corrupt_prob'],
                                inputs=config['inputs'],
                                seed=config['seed'])
  try:
    x_train, y_train, x_test, y_test, _ = pipeline.numpy_arrays(config['dataset'],
                                                                config['data_dir'], rand,
                                                                config['train_size'], image_cache)
    _, num_classes = sources.check_available(config['dataset'], config['data_dir'])
  except sources.DataError as e:
    raise ValueError(str(e)) from e
  if config.get('test_size'):
    keep = loaders.balanced_subset(y_test, config['test_size'], num_classes, split='test')
    x_test, y_test = x_test[keep], y_test[keep]

  def build(classes: int) -> keras.Model:
    return models.build(config['model'],
                        x_train.shape[1:],
                        classes,
                        weight_decay=config['weight_decay'],
                        dropout=config['dropout'],
                        batch_norm=config['batch_norm'],
                        bn_momentum=config['bn_momentum'],
                        seed=config['seed'])

  keras.utils.set_random_seed(config['seed'])
  model = build(num_classes)
  latest = tf.train.latest_checkpoint(os.path.join(logdir, 'checkpoints'))
  if latest is None:
    raise ValueError(f'{logdir}/checkpoints holds no checkpoint')
  tf.train.Checkpoint(
      model=model).restore(latest).expect_partial().assert_existing_objects_matched()
  initial, source = _initial(lambda: build(num_classes), logdir)
  steps_path = os.path.join(logdir, rundir.STEPS)
  return LoadedRun(logdir=logdir,
                   config=config,
                   results=results,
                   metrics=rundir.read_metrics(os.path.join(logdir, rundir.METRICS)),
                   steps=rundir.read_steps(steps_path) if os.path.exists(steps_path) else None,
                   model=model,
                   initial=initial,
                   initial_source=source,
                   x_train=x_train,
                   y_train=y_train.astype(np.int64),
                   x_test=x_test,
                   y_test=y_test.astype(np.int64),
                   build=build)


def training_hyperparameters(config: dict) -> dict:
  """The run's optimizer settings, as `rademacher.estimate` takes them."""
  return dict(learning_rate=config['learning_rate'] or
              registry.default_learning_rate(config['model']),
              lr_decay=config['lr_decay'],
              momentum=config['momentum'],
              batch_size=config['batch_size'],
              lr_decay_steps=config['lr_decay_steps'])
