"""The benchmark binary on a small case: one MLP, few steps, digits."""

import json
import platform

import pytest

from conftest import BENCHMARK
from conftest import run_python


@pytest.mark.slow
def test_benchmark_last_line_json():
  proc = run_python(BENCHMARK,
                    '--models=mlp_1x64',
                    '--train_size=256',
                    '--batch_size=64',
                    '--steps=4',
                    '--pipeline_batches=5',
                    '--pipeline_modes=random_crop',
                    '--breakdown',
                    '--op_profile',
                    '--onednn_profile',
                    timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert any('PASS' in line or 'FAIL' in line for line in lines[:-1])
  result = json.loads(lines[-1])
  r = result['models']['mlp_1x64']
  for key in ('images_per_second', 'bare_images_per_second', 'flops_per_image', 'peak_fraction'):
    assert r[key] > 0, key
  # 2352*64 + 64*10 multiply-adds forward; x3 minus the first layer's input grads.
  assert r['flops_per_image'] == 3 * 2 * (2352 * 64 + 640) - 2 * 2352 * 64
  for key in ('matmul_flops_per_second', 'pipeline_images_per_second'):
    assert result[key] > 0, key
  assert isinstance(result['randomization_overhead'], float)
  c = r['epoch_costs']  # the per-epoch work outside the step, each part alone
  assert min(c['train_eval_seconds'], c['test_seconds'], c['checkpoint_seconds']) > 0
  assert 'peer_ratio' not in r  # no --peer
  assert not any('matmul peak' in t for t in result['checks_failed'])  # not a target
  assert any(line.split()[:2] == ['model', 'precision'] and 'train-eval' in line for line in lines)
  b = result['breakdown']['mlp_1x64']
  assert set(b['phases_seconds']) == {'forward', 'forward_and_gradients', 'update', 'step'}
  assert set(b['seconds_by_type']) == {'Flatten', 'Dense'}
  assert 0 < b['step_peak_fraction'] < 1.5 and b['keras_step_seconds'] > 0
  assert any(line.startswith('mlp_1x64 (batch 64, float32), whole model') for line in lines)
  ops = r['op_profile']  # --op_profile: the real step per op type
  assert ops['profiler'] == 'tensorflow' and ops['steps'] > 0
  products = {k: v for k, v in ops['ms_per_step'].items() if k.endswith('MatMul')}
  assert products and all(v > 0 for v in products.values()), ops['ms_per_step']
  # Per step: two dense layers forward, their kernels' gradients and one input gradient.
  assert sum(ops['calls_per_step'][k] for k in products) == 5, ops['calls_per_step']
  assert any(line.startswith('mlp_1x64: the step per op type') for line in lines)
  if platform.machine() == 'x86_64':  # oneDNN on, on every x86-64 family (cpu.turn_on_onednn)
    assert result['machine']['onednn'] is True
    dnn = r['onednn_profile']['ours']  # --onednn_profile: the dense layers' products
    assert dnn['profiler'] == 'ONEDNN_VERBOSE' and dnn['total_ms_per_step'] > 0, dnn
    assert any(line.startswith('mlp_1x64: oneDNN primitives per step') for line in lines)
    assert lines[0].startswith('machine: ') and lines[0].endswith('oneDNN on'), lines[0]


@pytest.mark.slow
def test_gemm_shapes():
  proc = run_python(BENCHMARK, '--gemm_shapes=64x64x64,32x100x10', timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rates = json.loads(proc.stdout.strip().splitlines()[-1])['gemm_flops_per_second']
  assert set(rates) == {'64x64x64', '32x100x10'} and min(rates.values()) > 0
  bad = run_python(BENCHMARK, '--gemm_shapes=64x64', timeout=120)
  assert bad.returncode == 2 and '--gemm_shapes: 64x64; allowed: MxKxN' in bad.stderr


@pytest.mark.slow
def test_conv_shapes():
  from rethinking_tf import cpu  # pylint: disable=g-import-not-at-top
  bad = run_python(BENCHMARK, '--conv_shapes=8x3x4', timeout=120)
  assert bad.returncode == 2 and '--conv_shapes: 8x3x4; allowed: HxCINxCOUTxK' in bad.stderr
  proc = run_python(BENCHMARK, '--batch_size=4', '--conv_shapes=8x3x4x3', timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  result = json.loads(lines[-1])
  rates = result['conv_flops_per_second']
  assert set(rates) == {'8x3x4x3'} and rates['8x3x4x3']['NHWC'] > 0
  skipped = f'NCHW not measured: {cpu.NO_NCHW}'
  if not cpu.nchw_conv_supported():
    assert set(rates['8x3x4x3']) == {'NHWC'} and skipped in lines
    assert result['nchw_conv_supported'] is False
    pytest.skip(f'{cpu.NO_NCHW}: NHWC checked, NCHW not measured')
  assert set(rates['8x3x4x3']) == {'NHWC', 'NCHW'} and rates['8x3x4x3']['NCHW'] > 0
  assert result['nchw_conv_supported'] is True and skipped not in lines


def test_conv_table_without_nchw_says_so_in_one_line(monkeypatch):
  """The benchmark's convolution report on a CPU without an NCHW kernel."""
  from rethinking_tf import benchmark, cpu  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(cpu, 'nchw_conv_supported', lambda: False)
  table, result = benchmark.conv_table([(8, 3, 4, 3), (6, 2, 2, 1)], batch_size=4, seconds=0.01)
  lines = table.splitlines()
  assert lines[0].split() == ['conv', 'HxCINxCOUTxK,', 'batch', '4', 'NHWC', 'GFLOP/s']
  assert set(lines[1]) == {'-', ' '}
  assert [l.split()[0] for l in lines[2:4]] == ['8x3x4x3', '6x2x2x1']
  assert all(len(l.split()) == 2 and float(l.split()[1]) > 0 for l in lines[2:4])
  assert lines[4:] == [f'NCHW not measured: {cpu.NO_NCHW}']
  assert result['nchw_conv_supported'] is False
  rates = result['conv_flops_per_second']
  assert list(rates) == ['8x3x4x3', '6x2x2x1']
  assert all(list(r) == ['NHWC'] and r['NHWC'] > 0 for r in rates.values())
  json.dumps(result)  # the binary's last line


def test_step_breakdown_counts_every_layer():
  import keras  # pylint: disable=g-import-not-at-top
  from rethinking_tf import benchmark, models  # pylint: disable=g-import-not-at-top
  b = benchmark.step_breakdown('alexnet', batch_size=4, seconds=0.01)
  model = models.build('alexnet', (28, 28, 3), 10)
  kinds = [type(l).__name__ for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  assert [r['type'] for r in b['layers']] == kinds
  assert b['train_flops_per_step'] == 4 * benchmark.flops_per_image(model)['train']
  assert b['layers'][0]['train_flops'] == 4 * 2 * 2 * (28 * 28 * 64 * 5 * 5 * 3)
  assert all(r['forward_seconds'] > 0 and r['train_seconds'] > 0 for r in b['layers'])
  assert b['seconds_by_type']['LocalResponseNormalization'] > 0
  assert b['layers_train_seconds'] > b['conv_dense_train_seconds'] > 0
  assert 'LocalResponseNormalization' in benchmark.format_breakdown(b)


@pytest.mark.parametrize('args,message', [
    (['--dataset=image_folder', '--data_dir=/nonexistent/cifar'
     ], "error: --data_dir='/nonexistent/cifar' is not a readable directory"),
    (['--train_size=5000'], 'error: --train_size=5000 exceeds the 1347 training examples'),
])
def test_missing_data_is_one_line_before_any_work(args, message):
  proc = run_python(BENCHMARK, '--models=mlp_1x64', *args, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr and not proc.stdout


def test_precision_accuracy_trains_the_binary_config():
  from rethinking_tf import benchmark  # pylint: disable=g-import-not-at-top
  r = benchmark.precision_accuracy('mlp_1x16', 'float32', 2, train_size=256, batch_size=64)
  assert (r['model'], r['precision'], r['epochs']) == ('mlp_1x16', 'float32', 2)
  assert 0 <= r['test_accuracy'] <= 1 and r['seconds'] > 0
  assert r['train_accuracy'] > 0.2  # 256 digits, 2 epochs: well above chance (0.1)
  assert r['train_loss'] < 2.3  # below the loss of uniform predictions, ln 10
