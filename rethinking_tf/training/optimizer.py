"""SGD with momentum (appendix A) on TensorFlow's fused kernel."""

from __future__ import annotations

import keras
import tensorflow as tf


class MomentumSGD(keras.optimizers.SGD):
  """Keras SGD with momentum, each update applied by one fused TF kernel.

  The update is Keras' own (m <- momentum * m - lr * g; w <- w + m), done by
  `ResourceApplyKerasMomentum` in one pass over each variable instead of the
  five element-wise ops and assignments of `keras.optimizers.SGD`: 10-15% of
  an MLP step on a CPU (docs/performance.md), the same numbers (a test checks
  the weights against keras.optimizers.SGD), the same checkpoint variables.
  """

  def update_step(self, gradient, variable, learning_rate):
    if self.momentum == 0 or self.nesterov:
      return super().update_step(gradient, variable, learning_rate)
    momentum = self.momentums[self._get_variable_index(variable)]
    handle = lambda v: (v.value if isinstance(v, keras.Variable) else v).handle
    dtype = variable.dtype
    tf.raw_ops.ResourceApplyKerasMomentum(var=handle(variable),
                                          accum=handle(momentum),
                                          lr=tf.cast(learning_rate, dtype),
                                          grad=tf.cast(gradient, dtype),
                                          momentum=tf.cast(self.momentum, dtype),
                                          use_locking=False,
                                          use_nesterov=False)
    return None
