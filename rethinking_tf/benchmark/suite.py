"""The parts of the training suite that the benchmark measures, imported here only.

Every other module of the benchmark reaches the data pipelines, the models and
the trainer through these names, so that this file is the one to change when
those modules move.
"""

from rethinking_tf import models
from rethinking_tf import registry
from rethinking_tf.data import pipeline
from rethinking_tf.training import config
from rethinking_tf.training import distribute
from rethinking_tf.training import optimizer
from rethinking_tf.training import rundir
from rethinking_tf.training import trainer

# Input pipelines (section 3's randomizations, materialized once).
make_pipelines = pipeline.make_pipelines
Randomization = registry.Randomization
CHUNK_BATCHES = pipeline.CHUNK_BATCHES

# The paper's models (appendix A).
build_model = models.build

# The training binary's code path.
TrainConfig = config.TrainConfig
Trainer = trainer.Trainer
EpochHooks = trainer.EpochHooks
MomentumSGD = optimizer.MomentumSGD
prepare_logdir = rundir.prepare_logdir
make_config_pipelines = trainer.make_pipelines
make_strategy = distribute.make_strategy
train = trainer.run
