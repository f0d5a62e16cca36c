"""The benchmark's peer: the same models in PyTorch, trained beside ours in one run."""

import json
import os
import statistics

import pytest

from conftest import BENCHMARK
from conftest import run_python


def test_peer_without_torch_is_one_line_before_any_work(tmp_path):
  blocked = tmp_path / 'blocked' / 'torch'
  blocked.mkdir(parents=True)
  (blocked / '__init__.py').write_text('raise ImportError("no torch here")\n')
  out = tmp_path / 'out.json'
  env = {**os.environ, 'PYTHONPATH': str(tmp_path / 'blocked')}
  proc = run_python(BENCHMARK,
                    '--quick',
                    '--peer=pytorch',
                    f'--json_out={out}',
                    timeout=60,
                    env=env)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      'error: --peer=pytorch: torch is not importable by this python; allowed: '), lines
  assert 'pip install torch' in lines[0] and not proc.stdout and not out.exists()
  assert 'tensorflow' not in proc.stderr.lower()


def test_peer_in_float16_is_one_line_before_any_work(tmp_path):
  out = tmp_path / 'out.json'
  proc = run_python(BENCHMARK,
                    '--quick',
                    '--peer=pytorch',
                    '--precision=float32,mixed_float16',
                    f'--json_out={out}',
                    timeout=60)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert lines == [
      'error: --peer=pytorch with --precision=mixed_float16: no peer in float16; allowed with '
      "--peer: float32, mixed_bfloat16 (PyTorch's bfloat16 autocast)"
  ], lines
  assert not proc.stdout and not out.exists()


def test_quick_times_six_small_inception_epochs_beside_a_peer():
  code = (
      'import importlib.util, sys\n'
      f'spec = importlib.util.spec_from_file_location("benchmark_tool", {BENCHMARK!r})\n'
      'tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)\n'
      'for argv in (["--quick", "--peer=pytorch"], ["--quick"], []):\n'
      '  tool.FLAGS.unparse_flags(); tool.FLAGS(["benchmark", *argv])\n'
      '  print(tool._epochs_and_size("inception", 1280), tool._epochs_and_size("alexnet", 1280))\n'
      'print("tensorflow" in sys.modules)\n')
  proc = run_python('-c', code, timeout=60)
  assert proc.returncode == 0, proc.stderr[-2000:]
  # (train size, timed epochs, warm-up epochs): the median of 6 epochs with a peer, 2 without.
  assert proc.stdout.split('\n')[:4] == [
      '(256, 6, 1) (1280, 2, 1)', '(256, 2, 1) (1280, 2, 1)', '(1280, 3, 1) (1280, 3, 1)', 'False'
  ], proc.stdout


class _FakePeer:
  """A peer whose every block takes 0.5 s: the ratio is then ours over a known rate."""

  def __init__(self, model, **kwargs):
    self.model, self.kwargs, self.blocks = model, kwargs, []

  def run(self, steps):
    self.blocks.append(steps)
    return 0.5, 0.25

  def info(self):
    return {'library': 'fake', 'version': '0', 'threads': 1, 'layout': 'none'}


@pytest.mark.slow
def test_measure_model_interleaves_the_peer_epoch_by_epoch():
  from rethinking_tf import benchmark  # pylint: disable=g-import-not-at-top
  peers = []
  make = lambda *args, **kwargs: peers.append(_FakePeer(*args, **kwargs)) or peers[-1]
  case = benchmark.ModelCase(model='mlp_1x16', batch_size=64, train_size=256, epochs=3)
  r = benchmark.measure_model(case, peer=make)
  (peer,) = peers
  assert peer.model == 'mlp_1x16' and peer.kwargs['batch_size'] == 64
  assert peer.kwargs['num_train'] == 256 and peer.kwargs['weight_decay'] == 0.0
  assert peer.kwargs['precision'] == 'float32'
  assert peer.blocks == [4, 4, 4]  # one epoch's steps after every epoch, warm-up included
  assert r['peer_images_per_second'] == 4 * 64 / 0.5
  assert r['peer_images_per_cpu_second'] == 4 * 64 / 0.25
  ours = r['images_per_second_all']
  assert r['peer_ratio'] == pytest.approx(statistics.median(ours) / 512)
  assert r['peer_ratio_range'] == pytest.approx([min(ours) / 512, max(ours) / 512])
  assert r['peer_ratio_best'] == pytest.approx(max(ours) / 512)
  assert r['peer']['library'] == 'fake' and len(r['peer_images_per_second_all']) == 2
  c = r['epoch_costs']
  for key in ('train_seconds', 'train_eval_seconds', 'test_seconds', 'checkpoint_seconds'):
    assert c[key] > 0, key
  assert 0 < c['evaluation_share'] < 1 and c['evaluation_share'] == pytest.approx(
      c['train_eval_share'] + c['test_share'])


@pytest.mark.slow
def test_peer_models_have_our_parameter_counts():
  torch = pytest.importorskip('torch')
  from rethinking_tf import models  # pylint: disable=g-import-not-at-top
  from rethinking_tf.benchmark import peer_pytorch  # pylint: disable=g-import-not-at-top
  for name in ('inception', 'alexnet', 'mlp_1x512', 'mlp_3x512'):
    theirs = peer_pytorch.build(name, (28, 28, 3), 10)
    ours = models.build(name, (28, 28, 3), 10)
    assert peer_pytorch.trainable_params(theirs) == models.trainable_params(ours), name
    assert tuple(theirs(torch.zeros(2, 3, 28, 28)).shape) == (2, 10), name
  with pytest.raises(ValueError, match='no PyTorch peer'):
    peer_pytorch.build('inception_v3')


def test_peer_trains_with_momentum_and_decays_only_the_kernels():
  torch = pytest.importorskip('torch')
  from rethinking_tf.benchmark import peer_pytorch  # pylint: disable=g-import-not-at-top
  peer = peer_pytorch.Peer('alexnet',
                           batch_size=4,
                           num_train=4,
                           learning_rate=0.05,
                           weight_decay=0.002,
                           threads=1)
  kernels, others = peer.optimizer.param_groups
  assert kernels['weight_decay'] == 0.002 and others['weight_decay'] == 0.0
  assert kernels['momentum'] == others['momentum'] == 0.9 and kernels['lr'] == 0.05
  assert all(p.dim() == 4 or p.dim() == 2 for p in kernels['params'])
  assert all(p.dim() == 1 for p in others['params'])
  conv = next(m for m in peer.model.modules() if isinstance(m, torch.nn.Conv2d))
  assert conv.weight.is_contiguous(memory_format=torch.channels_last)
  assert peer.x.is_contiguous(memory_format=torch.channels_last)
  losses = [peer.step() for _ in range(30)]  # one batch of 4 random labels: memorized
  assert losses[-1] < 0.9 * losses[0]
  wall, cpu = peer.run(2)
  assert wall > 0 and cpu > 0
  info = peer.info()
  assert info['threads'] == 1 and info['trainable_params'] == 1387786


@pytest.mark.slow
def test_benchmark_with_the_pytorch_peer():
  pytest.importorskip('torch')
  proc = run_python(BENCHMARK,
                    '--models=mlp_1x64',
                    '--train_size=256',
                    '--batch_size=64',
                    '--steps=8',
                    '--pipeline_batches=5',
                    '--pipeline_modes=random_crop',
                    '--peer=pytorch',
                    '--op_profile',
                    timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  r = json.loads(lines[-1])['models']['mlp_1x64']
  assert r['peer_images_per_second'] > 0 and r['peer_ratio'] > 0
  low, high = r['peer_ratio_range']
  assert 0 < low <= r['peer_ratio'] <= high and r['peer_ratio_best'] > 0
  assert any(line.split()[:4] == ['model', 'precision', 'ours', 'img/s'] for line in lines)
  assert any(line.startswith('mlp_1x64: >= 1.2x pytorch in the same run') for line in lines)
  # --op_profile: PyTorch's step per op beside ours (aten::addmm: its dense layers).
  theirs, ours = r['peer_op_profile'], r['op_profile']
  assert theirs['profiler'] == 'torch.profiler' and theirs['ms_per_step']['aten::addmm'] > 0
  assert theirs['calls_per_step']['aten::addmm'] == 2  # two dense layers, forward
  assert 'MatMul' in ours['ms_per_step'] or 'FusedMatMul' in ours['ms_per_step']
  header = next(line for line in lines if line.startswith('rank'))
  assert header.split()[:6] == ['rank', 'ours', 'op', 'ms/step', 'share', 'pytorch']


def test_the_mixed_bfloat16_peer_trains_under_autocast():
  torch = pytest.importorskip('torch')
  from rethinking_tf.benchmark import peer_pytorch  # pylint: disable=g-import-not-at-top
  peer = peer_pytorch.Peer('mlp_1x64',
                           batch_size=4,
                           num_train=4,
                           learning_rate=0.05,
                           threads=1,
                           precision='mixed_bfloat16')
  assert peer.info()['precision'] == 'autocast bfloat16'
  with torch.autocast('cpu', dtype=torch.bfloat16):
    assert peer.model(peer.x).dtype == torch.bfloat16  # the products in bfloat16
  assert all(p.dtype == torch.float32 for p in peer.model.parameters())  # float32 weights
  losses = [peer.step() for _ in range(30)]
  assert losses[-1] < 0.9 * losses[0]
  with pytest.raises(ValueError, match='no PyTorch peer; allowed: float32, mixed_bfloat16'):
    peer_pytorch.Peer('mlp_1x64', batch_size=4, num_train=4, precision='mixed_float16')
