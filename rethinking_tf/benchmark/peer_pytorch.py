"""The paper's models in PyTorch, trained as a researcher would write them: the peer.

Only `tools/benchmark.py --peer=pytorch` imports this module (PyTorch is never
a dependency of the package). `build` gives small Inception, small Alexnet
and the MLPs (appendix A) with the same layer shapes and the same trainable
parameter counts as `rethinking_tf.models` (a test checks); `Peer` trains one
of them on in-memory batches with `torch.optim.SGD` (momentum 0.9, the same
learning rate, weight decay as the same L2 gradient on the kernels only):

    optimizer.zero_grad(); cross_entropy(model(x), y).backward(); optimizer.step()

Convolutions run in channels_last (NHWC in memory, as TensorFlow's
channels_last layout); the MLPs take contiguous inputs. Beside our
`mixed_bfloat16` the peer runs its forward pass and loss under
`torch.autocast('cpu', dtype=torch.bfloat16)`, PyTorch's own mixed precision
(float32 weights and optimizer, bfloat16 products), the counterpart of
Keras' policy; `mixed_float16` has no peer (on the CPU PyTorch's float16
autocast is not what a researcher would reach for). What differs and does
not change the cost of a step: PyTorch's initializers, the running variance
of BatchNorm (unbiased in PyTorch), where 'same' max-pooling pads (both sides
here, the bottom-right in TensorFlow) and no learning-rate decay.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from rethinking_tf.benchmark import ops

# Keras' defaults, which rethinking_tf.models keeps.
_BN_EPSILON = 1e-3
_MLP = re.compile(r'mlp_(\d+)x(\d+)$')


class BatchNormNoScale(nn.Module):
  """BatchNorm with a learned shift and no scale: Keras' `BatchNormalization(scale=False)`.

  One `functional.batch_norm` call (PyTorch's fused kernel) with `weight=None`; the
  momentum is Keras' 0.9 as PyTorch's 0.1.
  """

  def __init__(self, channels: int, momentum: float = 0.9):
    super().__init__()
    self.bias = nn.Parameter(torch.zeros(channels))
    self.register_buffer('running_mean', torch.zeros(channels))
    self.register_buffer('running_var', torch.ones(channels))
    self.momentum = 1.0 - momentum

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return functional.batch_norm(x, self.running_mean, self.running_var, None, self.bias,
                                 self.training, self.momentum, _BN_EPSILON)


class ConvModule(nn.Sequential):
  """conv -> BatchNorm(no scale) -> ReLU, 'same' padding (small Inception's building block)."""

  def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
    super().__init__(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
                     BatchNormNoScale(cout), nn.ReLU(inplace=True))


class Inc(nn.Module):
  """Inception module: a 1x1 and a 3x3 conv module side by side, concatenated."""

  def __init__(self, cin: int, c1: int, c3: int):
    super().__init__()
    self.one, self.three = ConvModule(cin, c1, 1), ConvModule(cin, c3, 3)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([self.one(x), self.three(x)], 1)


class Down(nn.Module):
  """Downsample module: a stride-2 3x3 conv module beside a 3x3/2 max-pool."""

  def __init__(self, cin: int, c3: int):
    super().__init__()
    self.conv, self.pool = ConvModule(cin, c3, 3, 2), nn.MaxPool2d(3, 2, padding=1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([self.conv(x), self.pool(x)], 1)


def inception(channels: int = 3, num_classes: int = 10) -> nn.Module:
  """Small Inception (appendix A, figure 3), with BatchNorm."""
  layers: list[nn.Module] = [ConvModule(channels, 96, 3), Inc(96, 32, 32), Inc(64, 32, 48)]
  layers.append(Down(80, 80))
  cin = 160
  for c1, c3 in ((112, 48), (96, 64), (80, 80), (48, 96)):
    layers.append(Inc(cin, c1, c3))
    cin = c1 + c3
  layers.append(Down(cin, 96))
  cin += 96
  for _ in range(2):
    layers.append(Inc(cin, 176, 160))
    cin = 336
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
  return nn.Sequential(*layers)


def alexnet(channels: int = 3, num_classes: int = 10, height: int = 28) -> nn.Module:
  """Small Alexnet: 2 x (conv5x5/64 -> ReLU -> maxpool3x3/2 -> LRN), dense 384, 192.

  PyTorch's LRN divides alpha by the window size: TensorFlow's alpha 0.001/9
  over a 9-channel window (depth radius 4) is PyTorch's alpha 0.001.
  """
  layers: list[nn.Module] = []
  for cin in (channels, 64):
    layers += [
        nn.Conv2d(cin, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    ]
    height = (height + 1) // 2
  layers += [
      nn.Flatten(),
      nn.Linear(height * height * 64, 384),
      nn.ReLU(inplace=True),
      nn.Linear(384, 192),
      nn.ReLU(inplace=True),
      nn.Linear(192, num_classes)
  ]
  return nn.Sequential(*layers)


def mlp(inputs: int, num_classes: int, layers: int, width: int) -> nn.Module:
  """ReLU multilayer perceptron: `layers` hidden layers of `width` units."""
  out: list[nn.Module] = [nn.Flatten()]
  for i in range(layers):
    out += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU(inplace=True)]
  out.append(nn.Linear(width if layers else inputs, num_classes))
  return nn.Sequential(*out)


def build(name: str, input_shape=(28, 28, 3), num_classes: int = 10) -> nn.Module:
  """The model `name` (as --model spells it) for NHWC `input_shape`."""
  height, width, channels = input_shape
  match = _MLP.match(name)
  if match:
    return mlp(height * width * channels, num_classes, int(match[1]), int(match[2]))
  if name == 'inception':
    return inception(channels, num_classes)
  if name == 'alexnet' and height == width:
    return alexnet(channels, num_classes, height)
  raise ValueError(f'no PyTorch peer for {name!r}; allowed: inception, alexnet, '
                   'mlp_<layers>x<width> (square inputs)')


def trainable_params(model: nn.Module) -> int:
  """Trainable parameters (BatchNorm's running statistics are buffers, not counted)."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def is_convolutional(model: nn.Module) -> bool:
  """Whether `model` has a convolution (its inputs then go in channels_last)."""
  return any(isinstance(m, nn.Conv2d) for m in model.modules())


def default_threads() -> int:
  """The CPUs this process may run on: TensorFlow's default intra-op thread count."""
  return len(os.sched_getaffinity(0))


PRECISIONS = ('float32', 'mixed_bfloat16')  # the precisions a peer can train in


class Peer:
  """Trains one PyTorch model on `num_train` in-memory images, in blocks of steps.

  Each block iterates the images in a fresh random order (a gather per batch,
  as a shuffled in-memory loader does) and returns its wall and CPU seconds;
  a block waits for its last step (PyTorch on the CPU runs eagerly).
  """

  def __init__(self,
               model: str,
               input_shape=(28, 28, 3),
               num_classes: int = 10,
               batch_size: int = 128,
               num_train: int = 1280,
               learning_rate: float = 0.01,
               momentum: float = 0.9,
               weight_decay: float = 0.0,
               threads: int | None = None,
               seed: int = 0,
               precision: str = 'float32'):
    if precision not in PRECISIONS:
      raise ValueError(
          f'precision={precision!r}: no PyTorch peer; allowed: {", ".join(PRECISIONS)}')
    torch.manual_seed(seed)
    self.precision = precision
    self.threads = threads or default_threads()
    torch.set_num_threads(self.threads)
    self.name, self.batch_size = model, batch_size
    self.model = build(model, input_shape, num_classes)
    self.layout = torch.channels_last if is_convolutional(self.model) else torch.contiguous_format
    self.model = self.model.to(memory_format=self.layout).train()
    height, width, channels = input_shape
    self.x = torch.randn(num_train, channels, height, width).contiguous(memory_format=self.layout)
    self.y = torch.randint(0, num_classes, (num_train,))
    # The paper's L2 (lambda/2 |W|^2 on the kernels) has gradient lambda W: SGD's weight_decay.
    kernels = [p for p in self.model.parameters() if p.dim() > 1]
    others = [p for p in self.model.parameters() if p.dim() <= 1]
    self.optimizer = torch.optim.SGD([{
        'params': kernels,
        'weight_decay': weight_decay
    }, {
        'params': others,
        'weight_decay': 0.0
    }],
                                     lr=learning_rate,
                                     momentum=momentum)
    self.order, self.position = torch.randperm(num_train), 0
    self.run(2)  # oneDNN's primitives, the optimizer's momentum buffers

  def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
    n = self.x.shape[0]
    if self.position + self.batch_size > n:
      self.order, self.position = torch.randperm(n), 0
    index = self.order[self.position:self.position + self.batch_size]
    self.position += self.batch_size
    return self.x[index].contiguous(memory_format=self.layout), self.y[index]

  def step(self) -> float:
    """One training step; returns its loss."""
    x, y = self._batch()
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=self.precision != 'float32'):
      loss = functional.cross_entropy(self.model(x), y)
    loss.backward()
    self.optimizer.step()
    return loss.item()

  def run(self, steps: int) -> tuple[float, float]:
    """Runs `steps` training steps; returns (wall, process CPU) seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      self.step()
    return time.perf_counter() - start, time.process_time() - cpu

  def op_profile(self, steps: int) -> dict[str, Any]:
    """`ops.summarize` of `steps` training steps under torch.profiler: self CPU
    time per op (PyTorch runs ops one after another on the calling thread,
    each using the intra-op threads, so self CPU time is wall time per op)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
      self.run(steps)
    events = [(e.key, e.self_cpu_time_total * 1e-6, e.count) for e in prof.key_averages()]
    out = ops.summarize(events, steps)
    out['profiler'] = 'torch.profiler'
    return out

  def info(self) -> dict[str, Any]:
    """What the peer is: library versions, threads, layout, parameter count."""
    return {
        'library': 'pytorch',
        'version': torch.__version__,
        'threads': self.threads,
        'interop_threads': torch.get_num_interop_threads(),
        # OpenMP's threads spin at barriers by default; PASSIVE sleeps (for shared machines).
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', 'default'),
        'layout': 'channels_last' if self.layout == torch.channels_last else 'contiguous',
        'precision': 'float32' if self.precision == 'float32' else 'autocast bfloat16',
        'trainable_params': trainable_params(self.model),
        'cpu_capability': torch.backends.cpu.get_cpu_capability(),
    }
