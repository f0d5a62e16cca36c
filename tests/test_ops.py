"""benchmark.ops: a step's time per op type, from TensorFlow's profiler trace."""

import pytest
import tensorflow as tf

from rethinking_tf.benchmark import ops


def test_op_type_names_the_op_a_kernel_implements():
  assert ops.op_type('_MklNativeConv2DBackpropFilter') == 'Conv2DBackpropFilter'
  assert ops.op_type('_MklMatMul') == 'MatMul'
  assert ops.op_type('_FusedConv2D') == 'FusedConv2D'
  assert ops.op_type('ReluGrad') == 'ReluGrad'


def test_summarize_sums_per_type_and_ranks_by_time():
  s = ops.summarize([('A', 0.002, 1), ('B', 0.010, 2), ('A', 0.002, 1)], steps=2)
  assert list(s['ms_per_step']) == ['B', 'A']
  assert s['ms_per_step'] == pytest.approx({'B': 5.0, 'A': 2.0})
  assert s['calls_per_step'] == {'B': 1.0, 'A': 1.0}
  assert s['total_ms_per_step'] == pytest.approx(7.0)


def test_tensorflow_ops_counts_the_ops_of_each_step():
  x = tf.random.normal([256, 256])

  @tf.function
  def step():
    return tf.reduce_sum(tf.linalg.matmul(tf.linalg.matmul(x, x), x))

  step()  # traced outside the profile
  p = ops.tensorflow_ops(lambda: [step().numpy() for _ in range(3)], steps=3)
  products = {k: n for k, n in p['calls_per_step'].items() if k.endswith('MatMul')}
  assert sum(products.values()) == 2, p['calls_per_step']  # two products per step
  assert p['calls_per_step']['Sum'] == 1
  assert all(p['ms_per_step'][k] > 0 for k in products)
  assert p['total_ms_per_step'] >= sum(p['ms_per_step'][k] for k in products)
  text = ops.format_ops('toy', {'ours': p, 'again': p}, top=2)
  lines = text.splitlines()
  assert lines[0].startswith('toy: the step per op type')
  assert lines[1].split() == [
      'rank', 'ours', 'op', 'ms/step', 'share', 'again', 'op', 'ms/step', 'share'
  ]
  assert len(lines) == 2 + 1 + 2 + 1  # title, header, rule, top 2, sum
