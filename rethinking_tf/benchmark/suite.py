"""The parts of the training suite that the benchmark measures, imported here only.

Every other module of the benchmark reaches the data pipelines, the models and
the trainer through these names, so that this file is the one to change when
those modules move.
"""

from rethinking_tf import data
from rethinking_tf import models
from rethinking_tf import trainer

# Input pipelines (section 3's randomizations, materialized once).
make_pipelines = data.make_pipelines
Randomization = data.Randomization
CHUNK_BATCHES = data.CHUNK_BATCHES

# The paper's models (appendix A).
build_model = models.build

# The training binary's code path.
TrainConfig = trainer.TrainConfig
Trainer = trainer.Trainer
EpochHooks = trainer.EpochHooks
MomentumSGD = trainer.MomentumSGD
prepare_logdir = trainer.prepare_logdir
make_config_pipelines = trainer.make_pipelines
make_strategy = trainer.make_strategy
train = trainer.run
