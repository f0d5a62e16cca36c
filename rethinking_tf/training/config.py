"""`TrainConfig`: everything one training run needs (paper section 2, appendix A).

The training binary builds it from its flags; `trainer.run` trains it.
"""

from __future__ import annotations

import dataclasses
import platform
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rethinking_tf import registry

# The default steps per call needs no TensorFlow: the binaries read it first.
MAX_AUTO_STEPS_PER_EXECUTION = registry.MAX_AUTO_STEPS_PER_EXECUTION
auto_steps_per_execution = registry.auto_steps_per_execution


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one training run needs; the binary builds it from flags."""
  logdir: str
  dataset: str = 'cifar10'
  data_dir: str | None = None
  train_size: int | None = None
  test_size: int | None = None
  randomization: registry.Randomization = registry.Randomization()
  random_crop: bool = False
  augment: bool = False
  model: str = 'inception'
  batch_norm: bool = True
  bn_momentum: float = 0.9
  weight_decay: float = 0.0
  dropout: float = 0.0
  learning_rate: float | None = None
  lr_decay: float = 0.95
  lr_decay_steps: int = 0
  momentum: float = 0.9
  batch_size: int = 128
  epochs: int = 100
  early_stopping_patience: int = 0
  fit_threshold: float = 1.0
  stop_on_fit: bool = False
  steps_per_execution: int = 0  # 0 = auto_steps_per_execution
  log_every_steps: int = 0  # steps.csv every N steps; 0 = off
  # The two evaluation passes every K epochs and at the last (1 = every epoch,
  # the paper's); fit_epoch and early stopping are then at K-epoch resolution.
  eval_every_epochs: int = 1
  precision: str = 'float32'
  image_cache: bool = True  # Cache an image_folder's decoded arrays.
  overwrite: bool = False
  verbose: bool = True

  def as_dict(self) -> dict[str, Any]:
    """The settings as config.json stores them (randomization flattened)."""
    d = dataclasses.asdict(self)
    d.update(d.pop('randomization'))
    d['learning_rate'] = self.lr
    return d

  @property
  def lr(self) -> float:
    """The learning rate: the flag, or the model's default (appendix A)."""
    return self.learning_rate or registry.default_learning_rate(self.model)


def versions() -> dict[str, str]:
  """The library versions a run records in results.json."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return {
      'python': platform.python_version(),
      'tensorflow': tf.__version__,
      'keras': keras.__version__,
      'numpy': np.__version__,
      'tensorflow_datasets': tfds.__version__
  }
