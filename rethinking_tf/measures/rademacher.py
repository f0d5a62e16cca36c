"""The empirical Rademacher complexity, estimated as the paper suggests (section 2.2).

The empirical Rademacher complexity of a hypothesis class H on the sample
z_1..z_m is E_sigma[sup_{f in H} (1/m) sum_i sigma_i f(z_i)], sigma_i
uniform on {-1, +1}. The paper's point: the networks fit random labels, so
for them this is ~1 and the bound it gives is vacuous. We estimate the sup
for one draw of sigma by training: the same architecture and training
hyperparameters as the run (learning rate and its decay, momentum, batch
size, weight decay, dropout), with two outputs, on the run's (randomized)
training inputs labelled (sigma_i + 1) / 2, by cross-entropy, for a bounded
number of epochs. f is bounded to [-1, 1] as

  f(z) = p_1(z) - p_0(z) = tanh((l_1(z) - l_0(z)) / 2),

the difference of the two softmax probabilities (l the logits), and also as
sign(l_1 - l_0), for which (1/m) sum_i sigma_i f(z_i) = 2 acc - 1 (acc the
training accuracy on the sigma labels). Both are lower bounds on the sup
(training may not reach it) for this one draw.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from rethinking_tf.measures import margins


def rademacher_labels(m: int, seed: int) -> np.ndarray:
  """m signs sigma_i in {-1, +1}, uniform, from `seed`."""
  return np.where(np.random.default_rng(seed).random(m) < 0.5, -1, 1).astype(np.int64)


def correlation(out: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
  """((1/m) sum sigma_i tanh((l_1 - l_0) / 2), (1/m) sum sigma_i sign(l_1 - l_0))."""
  diff = out[:, 1] - out[:, 0]
  return float(np.mean(sigma * np.tanh(diff / 2))), float(np.mean(sigma * np.sign(diff)))


def estimate(build: Callable[[int], keras.Model],
             x: np.ndarray,
             learning_rate: float,
             lr_decay: float,
             momentum: float,
             batch_size: int,
             epochs: int,
             seed: int = 0,
             lr_decay_steps: int = 0) -> dict[str, float]:
  """Trains `build(2)` on random +-1 labels of `x` for `epochs` epochs.

  Returns rademacher (the tanh form), rademacher_sign (the sign form) and
  the training accuracy on the sigma labels.
  """
  sigma = rademacher_labels(len(x), seed)
  keras.utils.set_random_seed(seed)
  model = build(2)
  steps_per_epoch = -(-len(x) // batch_size)
  schedule = keras.optimizers.schedules.ExponentialDecay(learning_rate,
                                                         lr_decay_steps or steps_per_epoch,
                                                         lr_decay,
                                                         staircase=True)
  model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=momentum),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, (sigma + 1) // 2, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
  soft, hard = correlation(margins.logits(model, x), sigma)
  return {'rademacher': soft, 'rademacher_sign': hard, 'sigma_train_accuracy': (hard + 1) / 2}
