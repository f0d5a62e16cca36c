"""CPU capability probes: what differs between x86-64 CPU families is detected."""

import os
import platform
import sys

import pytest
import tensorflow as tf

from conftest import run_python
from rethinking_tf import cpu


def test_features_come_from_cpuinfo():
  flags = cpu.features()
  assert isinstance(flags, frozenset)
  if os.path.exists('/proc/cpuinfo'):  # every x86-64 CPU TensorFlow runs on has SSE2
    assert 'sse2' in flags


def test_precision_warning_only_without_native_bfloat16(monkeypatch):
  monkeypatch.setattr(cpu, 'features', lambda: frozenset({'avx2', 'fma'}))
  assert not cpu.native_bfloat16()
  assert 'without native bfloat16' in cpu.precision_warning('mixed_bfloat16')
  assert cpu.precision_warning('float32') is None
  monkeypatch.setattr(cpu, 'features', lambda: frozenset({'avx512f', 'amx_bf16'}))
  assert cpu.native_bfloat16() and cpu.precision_warning('mixed_bfloat16') is None


@pytest.mark.parametrize('error', [tf.errors.UnimplementedError, tf.errors.InvalidArgumentError])
def test_nchw_probe_says_no_when_the_kernel_is_missing(monkeypatch, error):
  """The error TensorFlow raises on a CPU without an NCHW Conv2D (AVX2-only
  CPUs: 'The Conv2D op currently only supports the NHWC tensor format')."""
  calls = []

  def missing(*args, data_format='NHWC', **kwargs):
    calls.append(data_format)
    raise error(None, None, 'The Conv2D op currently only supports the NHWC tensor format')

  cpu.nchw_conv_supported.cache_clear()
  try:
    monkeypatch.setattr(tf.nn, 'conv2d', missing)
    assert cpu.nchw_conv_supported() is False
    assert cpu.nchw_conv_supported() is False and calls == ['NCHW']  # probed once
  finally:
    monkeypatch.undo()
    cpu.nchw_conv_supported.cache_clear()
  assert isinstance(cpu.nchw_conv_supported(), bool)


def test_nchw_probe_predicts_the_benchmark_without_onednn():
  """With oneDNN off, as TensorFlow runs by default on AVX2-only CPUs, the
  probe says whether the benchmark's NCHW convolution runs (on this CPU too)."""
  code = ('from rethinking_tf import benchmark, cpu\n'
          'try:\n'
          '  benchmark.conv_layouts(4, 2, 2, 1, batch_size=2, seconds=0.01, '
          'formats=("NCHW",))\n'
          '  ran = "ran"\n'
          'except Exception as e:  # pylint: disable=broad-except\n'
          '  ran = type(e).__name__\n'
          'print(cpu.nchw_conv_supported(), ran)\n')
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS='0', TF_CPP_MIN_LOG_LEVEL='3')
  proc = run_python('-c', code, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  probe, ran = proc.stdout.split()
  assert (probe, ran) in (('True', 'ran'), ('False', 'UnimplementedError'),
                          ('False', 'InvalidArgumentError')), proc.stdout


def test_onednn_is_turned_on_where_tensorflow_leaves_it_off(monkeypatch):
  """TF_ENABLE_ONEDNN_OPTS=1 on x86-64 Linux unless the user chose; nowhere else."""
  monkeypatch.setattr(cpu, 'tensorflow_turns_on_onednn', lambda: True)  # no late-import warning
  env = {}
  assert cpu.turn_on_onednn(env, machine='x86_64', system='linux')
  assert env == {'TF_ENABLE_ONEDNN_OPTS': '1'}
  env = {'TF_ENABLE_ONEDNN_OPTS': '0'}  # the user's choice stands
  assert not cpu.turn_on_onednn(env, machine='x86_64', system='linux')
  assert env == {'TF_ENABLE_ONEDNN_OPTS': '0'}
  for machine, system in (('aarch64', 'linux'), ('x86_64', 'darwin'), ('AMD64', 'win32')):
    env = {}
    assert not cpu.turn_on_onednn(env, machine=machine, system=system) and env == {}


def test_a_late_switch_warns_only_where_tensorflow_left_onednn_off(monkeypatch, recwarn):
  """TensorFlow is imported in this process already: too late to turn oneDNN on."""
  monkeypatch.setattr(cpu, 'features', lambda: frozenset({'avx2', 'fma'}))  # AVX2 only
  assert not cpu.tensorflow_turns_on_onednn()
  with pytest.warns(UserWarning, match='imported before rethinking_tf.*import rethinking_tf first'):
    cpu.turn_on_onednn({}, machine='x86_64', system='linux')
  monkeypatch.setattr(cpu, 'features', lambda: frozenset({'avx2', 'avx512f', 'avx512_vnni'}))
  assert cpu.tensorflow_turns_on_onednn()
  cpu.turn_on_onednn({}, machine='x86_64', system='linux')  # on already: nothing to say
  assert not [w for w in recwarn if 'imported before' in str(w.message)]


@pytest.mark.skipif(platform.machine() != 'x86_64' or not sys.platform.startswith('linux'),
                    reason='oneDNN is turned on on x86-64 Linux only')
@pytest.mark.parametrize('user, expected', [(None, '1 True'), ('0', '0 False')])
def test_importing_the_package_turns_onednn_on_in_tensorflow(user, expected):
  """Imported before TensorFlow, the package runs it with oneDNN on this CPU
  family too (TensorFlow's own default is off on AVX2-only CPUs), and a
  TF_ENABLE_ONEDNN_OPTS the user set wins."""
  code = ('import os, rethinking_tf, tensorflow\n'
          'from rethinking_tf import cpu\n'
          'print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), cpu.onednn_enabled())\n')
  env = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
  if user is not None:
    env['TF_ENABLE_ONEDNN_OPTS'] = user
  proc = run_python('-c', code, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == expected
