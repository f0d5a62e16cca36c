"""oneDNN's primitives per step (`benchmark.onednn`): the verbose parse and both sides' counts."""

import pytest

from rethinking_tf import cpu
from rethinking_tf.benchmark import onednn

LINES = """\
onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX2
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32::blocked:acdb::f0,,alg:convolution_direct,mb128_ic3oc64_ih28oh28kh5sh1dh0ph2_iw28ow28kw5sw1dw0pw2,2.5
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32::blocked:acdb::f0,,alg:convolution_direct,mb128_ic64oc64_ih14oh14kh5sh1dh0ph2_iw14ow14kw5sw1dw0pw2,1.5
onednn_verbose,v1,primitive,create:cache_hit,cpu,convolution,jit:avx2,backward_weights,src:f32,,,mb128,0.01
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:abcd::f0,,,64x3x5x5,0.25
onednn_verbose,exec,cpu,gemm_api,,undef,src:f32::blocked:ab::f0,,,m128n10k512,0.1
a line of the program's own
"""


def test_parse_sums_exec_lines_per_primitive_and_reads_the_info():
  events, info = onednn.parse(LINES.splitlines())
  assert info == {'version': 'v3.7.3', 'isa': 'Intel AVX2', 'threads': 2}
  assert [e[0] for e in events] == [
      'convolution forward_training [brg_conv_fwd:avx2]',
      'convolution forward_training [brg_conv_fwd:avx2]', 'reorder [jit:uni]', 'gemm_api'
  ]  # creation lines and foreign lines are not primitives run
  assert events[0][1] == pytest.approx(2.5e-3) and events[-1][1] == pytest.approx(1e-4)


def test_an_unknown_side_is_refused():
  with pytest.raises(ValueError, match="side='jax': allowed: ours, pytorch"):
    onednn.profile('alexnet', 'jax')


def _convolutions(profile):
  calls = profile['calls_per_step']
  count = lambda prop: sum(v for k, v in calls.items() if k.startswith(f'convolution {prop} '))
  return count('forward_training'), count('backward_weights'), count('backward_data')


@pytest.mark.slow
@pytest.mark.skipif(not cpu.onednn_enabled(), reason='TensorFlow runs without oneDNN here')
def test_our_small_alexnet_runs_two_convolutions_and_their_gradients_per_step():
  p = onednn.profile('alexnet', 'ours', steps=2, batch_size=32, threads=1)
  assert p['threads'] == 1  # the intra-op threads asked for, as oneDNN saw them
  # Two conv layers forward and their weight gradients; the first needs no input gradient.
  assert _convolutions(p) == (2, 2, 1), p['calls_per_step']
  assert p['version'].startswith('v') and p['isa'] and p['steps'] == 2
  assert all(v > 0 for v in p['ms_per_step'].values())


@pytest.mark.slow
def test_the_peers_small_alexnet_runs_the_same_convolutions():
  pytest.importorskip('torch')
  p = onednn.profile('alexnet', 'pytorch', steps=2, batch_size=32, threads=1)
  assert p['threads'] == 1
  assert _convolutions(p) == (2, 2, 1), p['calls_per_step']
