"""Norm-based measures (Jiang et al. 2020 appendix C; PAPER.md section 7).

On the layers of `layers.linear_layers` (BatchNorm folded), W_i the kernel
of layer i as a (fan_in, out) matrix, W_i^0 the initial kernel, gamma the
margin (`margins.margin`), d the number of layers:

* Frobenius: sum_i log ||W_i||_F^2 (the log of the product, eq. 37) and
  sum_i ||W_i||_F^2 (eq. 42);
* spectral: sum_i log ||W_i||_2^2 (eq. 32) and sum_i ||W_i||_2^2. A dense
  kernel's ||W||_2 is its largest singular value (exact, from the
  eigenvalues of its Gram matrix). A
  convolution's is the operator norm of the convolution, not of its
  reshaped kernel: the exact norm of the CIRCULAR (wrap-around padded)
  convolution on the layer's input size, by the FFT method of Sedghi,
  Gupta and Long 2019 (the singular values of a circular convolution are
  those of the c_in x c_out matrices of the kernel's 2-D DFT at each of the
  h*w frequencies; the largest from the eigenvalues of their Gram
  matrices). For the 'same' zero-padded convolutions of the models
  this is the standard stand-in, and stride is ignored (a strided
  convolution is a subsampled stride-1 one, so its norm is at most this);
* path-l2 norm (eq. 44): the sum of the outputs of the network whose every
  (folded) kernel and bias is squared, on an all-ones input, in inference
  mode; for a ReLU network of Dense layers it is exactly the sum over all
  input-to-output paths (a bias: a path from a unit that is always 1) of
  the product of the squared weights along the path (with max-pooling or
  local response normalization, as in Alexnet, it is that forward pass,
  as Jiang et al. compute it, not a sum over paths);
* distance from initialization: sum_i ||W_i - W_i^0||_F^2 (eq. 40) and
  sum_i ||W_i - W_i^0||_2^2 (eq. 41);
* each also over the squared margin (eqs. 31, 36, 43 for the log forms:
  minus 2 log gamma);
* Bartlett, Foster, Telgarsky 2017 spectral complexity over margin,
  R_A / gamma with R_A = prod_i ||W_i||_2 (sum_i (||(W_i - W_i^0)^T||_{2,1}
  / ||W_i||_2)^(2/3))^(3/2), ||A^T||_{2,1} the sum over output units of the
  l2 norm of their incoming weights; reported as its log. Their ||X||_F / n
  data factor is left out (it is the same for runs on the same inputs).

Biases enter only the path norm, as in Jiang et al.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from rethinking_tf.measures import layers as layers_lib


def frobenius_sq(kernel: np.ndarray) -> float:
  """||W||_F^2."""
  return float(np.sum(np.square(kernel, dtype=np.float64)))


def dense_spectral_norm(matrix: np.ndarray) -> float:
  """||W||_2, the largest singular value: the square root of the largest
  eigenvalue of the smaller Gram matrix (exact, and faster than a full SVD)."""
  w = np.asarray(matrix, np.float64)
  gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
  return float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))


def conv_spectral_norm(kernel: np.ndarray, input_hw: tuple[int, int]) -> float:
  """Operator norm of the circular 2-D convolution with `kernel` (kh, kw, c_in,
  c_out) on inputs of size `input_hw` (Sedghi et al. 2019: FFT, then SVD)."""
  h, w = input_hw
  kh, kw = kernel.shape[:2]
  if kh > h or kw > w:  # the circular convolution folds the kernel onto the input
    folded = np.zeros((h, w) + kernel.shape[2:])
    for a in range(kh):
      for b in range(kw):
        folded[a % h, b % w] += kernel[a, b]
    kernel = folded
  # A real kernel's transform at -k is the conjugate of that at k (same singular values):
  # the half-spectrum of rfft2 holds every distinct one.
  t = np.fft.rfft2(np.asarray(kernel, np.float64), (h, w), axes=(0, 1))
  th = np.conj(np.swapaxes(t, -1, -2))
  gram = th @ t if t.shape[-2] >= t.shape[-1] else t @ th  # the smaller Gram matrix
  return float(np.sqrt(max(np.linalg.eigvalsh(gram)[..., -1].max(), 0.0)))


def spectral_norm(layer: layers_lib.Linear, kernel: np.ndarray | None = None) -> float:
  """||W||_2 of a layer (or of `kernel` in its shape): SVD or conv FFT."""
  kernel = layer.kernel if kernel is None else kernel
  if layer.kind == 'conv':
    return conv_spectral_norm(kernel, layer.input_hw)
  return dense_spectral_norm(kernel)


def norm_21(matrix: np.ndarray) -> float:
  """||A^T||_{2,1} of A = matrix^T: the sum over output columns of their l2 norms."""
  return float(np.sum(np.linalg.norm(matrix, axis=0)))


def path_norm(model: keras.Model) -> float:
  """Path-l2 norm: outputs of the squared-weight network on ones, summed (eq. 44)."""
  ones = np.ones((1,) + tuple(model.input.shape[1:]), np.float32)
  with layers_lib.folded_squared(model):
    out = model(ones, training=False)
  return float(np.sum(np.asarray(out, np.float64)))


def spectral_complexity_log(final: list[layers_lib.Linear], init: list[layers_lib.Linear],
                            spec: list[float]) -> float:
  """log R_A of Bartlett et al. 2017 (see the module docstring)."""
  terms = [(norm_21(f.matrix - i.matrix) / s)**(2 / 3) for f, i, s in zip(final, init, spec)]
  return float(np.sum(np.log(spec)) + 1.5 * np.log(np.sum(terms)))


def norm_measures(model: keras.Model,
                  initial: keras.Model | None,
                  margin: float | None,
                  seconds: dict[str, float] | None = None) -> dict[str, float | str]:
  """Every norm measure of `model`; a str value says why a measure is missing.

  `initial` (the model at step 0) gives the distance measures; `margin`
  (gamma) the over-margin forms. `seconds`, if given, receives the time
  each measure took (a measure computed with others shares their time).
  """
  seconds = {} if seconds is None else seconds
  clock = [time.perf_counter()]

  def lap(*names: str) -> None:
    now = time.perf_counter()
    for name in names:
      seconds[name] = now - clock[0]
    clock[0] = now

  final = layers_lib.linear_layers(model)
  fro = np.array([frobenius_sq(l.kernel) for l in final])
  out: dict[str, float | str] = {
      'log_prod_fro': float(np.sum(np.log(fro))),
      'sum_fro': float(np.sum(fro)),
  }
  lap('log_prod_fro', 'sum_fro')
  spec = np.array([spectral_norm(l) for l in final])
  out['log_prod_spec'] = float(np.sum(np.log(spec**2)))
  out['sum_spec'] = float(np.sum(spec**2))
  lap('log_prod_spec', 'sum_spec')
  out['path_norm'] = path_norm(model)
  lap('path_norm')
  log_complexity = None
  if initial is not None:
    init = layers_lib.linear_layers(initial)
    diffs = [f.kernel - i.kernel for f, i in zip(final, init)]
    out['dist_fro'] = float(sum(frobenius_sq(d) for d in diffs))
    lap('dist_fro')
    out['dist_spec'] = float(sum(spectral_norm(l, d)**2 for l, d in zip(final, diffs)))
    lap('dist_spec')
    log_complexity = spectral_complexity_log(final, init, list(spec))
    lap('log_spectral_complexity_over_margin')
  else:
    out['dist_fro'] = out['dist_spec'] = 'no initial weights'
  base = ('log_prod_fro', 'sum_fro', 'log_prod_spec', 'sum_spec', 'path_norm', 'dist_fro',
          'dist_spec')
  for k in base:
    seconds.setdefault(k, 0.0)
    seconds[k + '_over_margin'] = seconds[k]
  seconds.setdefault('log_spectral_complexity_over_margin', 0.0)
  if margin is None or margin == 0:
    why = 'no margin' if margin is None else 'margin is 0'
    for k in base:
      out[k + '_over_margin'] = why
    out['log_spectral_complexity_over_margin'] = why
    return out
  g2 = margin**2
  for k in base:
    if isinstance(out[k], str):
      out[k + '_over_margin'] = out[k]
    elif k.startswith('log_'):
      out[k + '_over_margin'] = out[k] - float(np.log(g2))
    else:
      out[k + '_over_margin'] = out[k] / g2
  out['log_spectral_complexity_over_margin'] = (log_complexity -
                                                float(np.log(abs(margin))) if log_complexity
                                                is not None else 'no initial weights')
  return out
