"""Names and value rules of the experiments, importable without TensorFlow.

The one source of truth for what the binaries accept: data sets, the
randomization tests' label and input modes and `Randomization` itself
(section 2.1), model names and their default learning rates (appendix A),
precision policies, the kernels and features of section 5, the benchmark's
pipeline modes, and the rule for `steps_per_execution`. `data`, `models`,
`kernels`, `trainer` and `benchmark` take them from here, and the binaries
check every flag against them before TensorFlow, Keras, tfds or scipy is
imported. This module imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """A data set: its name, classes (0: from the data), whether it fits in memory."""
  name: str
  num_classes: int
  in_memory: bool
  description: str


DATASET_INFO: dict[str, DatasetInfo] = {
    'cifar10': DatasetInfo('cifar10', 10, True, 'CIFAR-10 via tensorflow-datasets'),
    'digits': DatasetInfo('digits', 10, True, "scikit-learn's bundled digits, 32x32x3"),
    'image_folder': DatasetInfo('image_folder', 0, True, '<data_dir>/{train,test}/<class>/<image>'),
    'imagenet2012': DatasetInfo('imagenet2012', 1000, False, 'ImageNet via tensorflow-datasets'),
}
LABEL_MODES = ('true', 'corrupted', 'random')
INPUT_MODES = ('original', 'shuffled_pixels', 'random_pixels', 'gaussian')


@dataclasses.dataclass(frozen=True)
class Randomization:
  """Which randomization test to apply (section 2.1): LABEL_MODES, INPUT_MODES."""
  labels: str = 'true'
  corrupt_prob: float = 0.0
  inputs: str = 'original'
  seed: int = 0

  @property
  def label_prob(self) -> float:
    """Probability that an example's label is redrawn."""
    return {'true': 0.0, 'corrupted': self.corrupt_prob, 'random': 1.0}[self.labels]


CROP_SIZE = 28  # Appendix A: CIFAR-10 images are centre-cropped to 28x28.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')

MODEL_NAMES = ('inception', 'alexnet', 'mlp_1x512', 'mlp_3x512', 'inception_v3')
MLP_PATTERN = re.compile(r'^mlp_(\d+)x(\d+)$')  # mlp_<layers>x<width>
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')

KERNELS = ('gaussian', 'linear')  # Section 5.
FEATURES = ('pixels', 'standardized', 'random_conv')

# The input-pipeline measurements of tools/benchmark.py: (name, randomization
# fields, random crop).
PIPELINE_MODES: tuple[tuple[str, dict, bool], ...] = (
    ('baseline', {}, False),
    ('labels=corrupted(0.5)', {
        'labels': 'corrupted',
        'corrupt_prob': 0.5
    }, False),
    ('labels=random', {
        'labels': 'random'
    }, False),
    ('inputs=shuffled_pixels', {
        'inputs': 'shuffled_pixels'
    }, False),
    ('inputs=random_pixels', {
        'inputs': 'random_pixels'
    }, False),
    ('inputs=gaussian', {
        'inputs': 'gaussian'
    }, False),
    ('random_crop', {}, True),
)


def is_valid_model_name(name: str) -> bool:
  """One of MODEL_NAMES, or mlp_<layers>x<width>."""
  return name in MODEL_NAMES or bool(MLP_PATTERN.match(name))


def default_learning_rate(name: str) -> float:
  """Appendix A: 0.1 for small Inception, 0.01 for Alexnet and the MLPs."""
  return 0.1 if name in ('inception', 'inception_v3') else 0.01


MAX_AUTO_STEPS_PER_EXECUTION = 32


def auto_steps_per_execution(steps_per_epoch: int) -> int:
  """Training steps per tf.function call by default: min(32, steps per epoch).

  Running several steps per call computes the same steps (a test checks
  equal metrics) with less per-call Python and dispatch work: +15-54% for
  the MLPs on a CPU (docs/performance.md), nothing for the conv nets. Any
  number works under any strategy: an epoch's last call runs what is left.
  """
  return max(1, min(MAX_AUTO_STEPS_PER_EXECUTION, steps_per_epoch))
