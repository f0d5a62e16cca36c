"""What this machine's CPU and TensorFlow build can run: probed, never assumed.

The project runs on x86-64 CPUs of both families, Intel with AVX-512 and AMX
and AMD with AVX2 only. Two things differ between them that the code must
not take for granted:

* oneDNN. TensorFlow turns its oneDNN kernels on by default only on CPUs
  with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX; on AVX2-only CPUs it runs
  its Eigen kernels instead, which train the conv nets about 1.5x slower.
  `turn_on_onednn` (run by the package's `__init__`, before TensorFlow is
  imported) turns oneDNN on for every x86-64 CPU.
* NCHW convolutions. TensorFlow's own CPU Conv2D kernel is NHWC-only; NCHW
  runs only through oneDNN (never with TF_ENABLE_ONEDNN_OPTS=0). The
  models are NHWC (Keras' channels_last); only the benchmark measures NCHW.
* bfloat16 speed. `mixed_bfloat16` runs on any CPU, but it is fast only with
  native bfloat16 instructions (AVX512_BF16, AMX_BF16); elsewhere it is
  emulated and usually slower than float32.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import warnings
from collections.abc import MutableMapping

NO_NCHW = ('this CPU has no NCHW Conv2D kernel (TensorFlow runs NCHW on the CPU only '
           'through oneDNN; is TF_ENABLE_ONEDNN_OPTS=0 set?)')
ONEDNN_VARIABLE = 'TF_ENABLE_ONEDNN_OPTS'


def turn_on_onednn(environ: MutableMapping[str, str] = os.environ,
                   machine: str | None = None,
                   system: str = sys.platform) -> bool:
  """Turns TensorFlow's oneDNN kernels on for x86-64 Linux CPUs that TensorFlow leaves on Eigen.

  TensorFlow's default (its `DefaultOneDnnPolicy`) is oneDNN only with
  AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX. With AVX2 instructions only,
  Eigen's kernels trained the conv nets about 1.5x slower than oneDNN's and
  the MLPs as fast (docs/performance.md, "AVX2-only CPUs"). Sets
  TF_ENABLE_ONEDNN_OPTS=1 unless the user set it; it counts only before
  TensorFlow is imported. Returns whether it set it.
  """
  machine = machine or platform.machine()
  if (ONEDNN_VARIABLE in environ or not system.startswith('linux') or
      machine not in ('x86_64', 'AMD64')):
    return False
  environ[ONEDNN_VARIABLE] = '1'
  if 'tensorflow' in sys.modules and not tensorflow_turns_on_onednn():
    warnings.warn(
        'TensorFlow was imported before rethinking_tf, so it runs without oneDNN on this CPU '
        '(no AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX); import rethinking_tf first, or set '
        'TF_ENABLE_ONEDNN_OPTS=1 before starting Python',
        stacklevel=2)
  return True


def tensorflow_turns_on_onednn() -> bool:
  """Whether TensorFlow itself turns oneDNN on for this CPU (its `DefaultOneDnnPolicy` on Linux)."""
  return bool(features() &
              {'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_int8', 'amx_bf16'})


def onednn_enabled() -> bool | None:
  """Whether this process's TensorFlow runs oneDNN's kernels (None where the build does not say)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return bool(_pywrap_util_port.IsMklEnabled())


@functools.cache
def features() -> frozenset[str]:
  """The CPU's feature flags from /proc/cpuinfo (empty where it is unreadable)."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return frozenset(line.split(':', 1)[1].split())
  except OSError:
    pass
  return frozenset()


def native_bfloat16() -> bool:
  """Whether the CPU computes in bfloat16 natively (AVX512_BF16 or AMX_BF16)."""
  return bool(features() & {'avx512_bf16', 'amx_bf16'})


def precision_warning(precision: str) -> str | None:
  """A one-line warning when `precision` is slow on this CPU, else None."""
  if 'bfloat16' in precision and not native_bfloat16():
    return (f'{precision} on a CPU without native bfloat16 (no AVX512_BF16 or AMX_BF16 '
            'flag in /proc/cpuinfo): emulated, likely slower than float32')
  return None


@functools.cache
def nchw_conv_supported() -> bool:
  """Whether an NCHW `tf.nn.conv2d` runs on this CPU (one tiny convolution, cached)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    with tf.device('/CPU:0'):
      tf.nn.conv2d(tf.zeros([1, 1, 2, 2]), tf.zeros([1, 1, 1, 1]), 1, 'SAME',
                   data_format='NCHW').numpy()
  except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
    return False
  return True
