"""The benchmark binary on a small case: one MLP, few steps, digits."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_benchmark_last_line_json():
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'benchmark.py'),
       '--models=mlp_1x64', '--train_size=256', '--batch_size=64', '--steps=4',
       '--pipeline_batches=5', '--pipeline_modes=random_crop'],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert any('PASS' in line or 'FAIL' in line for line in lines[:-1])
  result = json.loads(lines[-1])
  r = result['models']['mlp_1x64']
  for key in ('images_per_second', 'bare_images_per_second', 'flops_per_image',
              'peak_fraction'):
    assert r[key] > 0, key
  # 2352*64 + 64*10 multiply-adds forward; x3 minus the first layer's input grads.
  assert r['flops_per_image'] == 3 * 2 * (2352 * 64 + 640) - 2 * 2352 * 64
  for key in ('matmul_flops_per_second', 'pipeline_images_per_second'):
    assert result[key] > 0, key
  assert isinstance(result['randomization_overhead'], float)


def test_gemm_shapes():
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'benchmark.py'),
       '--gemm_shapes=64x64x64,32x100x10'], capture_output=True, text=True, timeout=120,
      cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rates = json.loads(proc.stdout.strip().splitlines()[-1])['gemm_flops_per_second']
  assert set(rates) == {'64x64x64', '32x100x10'} and min(rates.values()) > 0
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'benchmark.py'), '--gemm_shapes=64x64'],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert bad.returncode == 2 and '--gemm_shapes: 64x64; allowed: MxKxN' in bad.stderr
