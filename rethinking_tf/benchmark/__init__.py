"""Throughput of training, input pipeline and hardware, against fixed targets.

Modules: `machine` (CPU, matmul peak, FLOPs), `layers` (convolution layouts, where a
step goes, layer by layer), `ops` (where a step goes, op by op, from the profilers),
`models` (the binary path, the bare loop, the peer, per-epoch costs), `pipeline`
(the input pipeline alone), `report` (`run`, the checks and the reports),
`peer_pytorch` (the same models in PyTorch; imported only when asked for), `suite`
(the one place that imports the data, models and trainer modules measured).

No flags: `tools/benchmark.py` is the binary. Everything here returns plain
dicts. What each number includes:

* `binary`: the training binary's own code path, `trainer.Trainer` built
  from a `TrainConfig` over `data.make_pipelines`, trained by
  `Trainer.train(hooks)` (the `loop.Loop` train calls over `p.train(0)`).
  Training images/s is measured per epoch through the trainer's public
  `EpochHooks`: from the end of one epoch's epoch-end work to the end of the
  next epoch's training steps (so it includes the input pipeline, the
  per-epoch overhead and the metric updates, but not the epoch-end work); the
  epoch-end work (train-set and test-set evaluation passes, summaries,
  checkpoint, metrics.csv) is timed separately. The first `warmup_epochs`
  epochs (tracing) are dropped.
* `bare`: the same compiled train function of the same model and optimizer
  (`Loop.train`, same `steps_per_execution`) called in a Python loop on one
  in-memory batch repeated (`Dataset.from_tensors(..).repeat()`): no
  pipeline, no epoch boundaries. One block of
  bare steps runs right after every epoch of the binary run, so that the two
  are measured side by side under the same machine load.
* `flops_per_image`: analytic count of conv and dense multiply-adds (2 FLOPs
  each): forward + gradient w.r.t. weights + gradient w.r.t. inputs (skipped
  for the first layer, whose input is the image). BatchNorm, pooling, LRN,
  activations, loss and optimizer update are not counted (all O(activations)
  or O(params), small beside the convolutions).
* `matmul`: a dense n x n float32 (or bfloat16) `tf.linalg.matmul`, timed in
  this process; sampled again before every model so that each model's
  `peak_fraction` is against the peak measured next to it.
* `pipeline`: `make_pipelines(..).train(0)` iterated alone, per randomization
  (first, on fresh iterators per round; see `measure_pipeline`).
* `breakdown` (optional): `step_breakdown`, each layer alone and the step's
  phases, beside the bare loop's Keras train function.
* `peer` (optional): the same model trained by another library
  (`peer_pytorch`), one epoch's steps after every bare block;
  `peer_ratio` is the median of the epochs' binary / peer images/s.
* `op_profile` (optional): after training, one bare block under TensorFlow's
  profiler, its op events summed per op type (`ops`), and with a peer one
  peer epoch under the peer's profiler (`peer_op_profile`).
* `epoch_costs`: after training, the inference pass over the training set,
  the test pass and one checkpoint, each timed alone.
* peak memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (process-wide
  high-water mark, cumulative over everything measured before).
"""

from rethinking_tf.benchmark.layers import conv_layouts
from rethinking_tf.benchmark.layers import conv_table
from rethinking_tf.benchmark.layers import format_breakdown
from rethinking_tf.benchmark.layers import step_breakdown
from rethinking_tf.benchmark.machine import flops_per_image
from rethinking_tf.benchmark.machine import machine_info
from rethinking_tf.benchmark.machine import matmul_peak
from rethinking_tf.benchmark.machine import peak_memory_mib
from rethinking_tf.benchmark.models import epoch_costs
from rethinking_tf.benchmark.models import measure_model
from rethinking_tf.benchmark.models import ModelCase
from rethinking_tf.benchmark.models import precision_accuracy
from rethinking_tf.benchmark.pipeline import measure_pipeline
from rethinking_tf.benchmark.pipeline import PIPELINE_MODES
from rethinking_tf.benchmark.report import checks
from rethinking_tf.benchmark.report import CIFAR_MODELS
from rethinking_tf.benchmark.report import format_table
from rethinking_tf.benchmark.report import run
from rethinking_tf.benchmark.report import summary

__all__ = [
    'checks',
    'CIFAR_MODELS',
    'conv_layouts',
    'conv_table',
    'epoch_costs',
    'flops_per_image',
    'format_breakdown',
    'format_table',
    'machine_info',
    'matmul_peak',
    'measure_model',
    'measure_pipeline',
    'ModelCase',
    'peak_memory_mib',
    'PIPELINE_MODES',
    'precision_accuracy',
    'run',
    'step_breakdown',
    'summary',
]
