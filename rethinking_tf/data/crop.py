"""The random crop as one gather from lookup tables (appendix A).

`crop_tables` cuts every image into its CROP_SIZE-column rows and the affine
map that standardizes each window, once per run; `crop_batch` then gathers a
batch's windows at any (row, col) offsets. Used by `pipeline` for
`--random_crop`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rethinking_tf import registry

CROP_SIZE = registry.CROP_SIZE


def crop_tables(images: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
  """Lookup tables that make the random crop one gather (appendix A).

  For float images [N, H, W, C] with s = W - CROP_SIZE + 1 column offsets:
  `rows[(i * s + col) * H + r]` is row r of image i cut to columns
  [col, col + CROP_SIZE), flattened; uint8 (exact) when every value is k/255,
  as for all inputs but `gaussian`, else float32. `affine[(i * t + row) * s +
  col]` (t = H - CROP_SIZE + 1 row offsets) is (a, b) such that `a * x + b`
  standardizes window (row, col) as `tf.image.per_image_standardization`
  does (mean 0, std max(std, 1/sqrt(#values))), with x the table value.
  Built once per run; they replace per-step gathers and reductions that cost
  more than the MLPs' whole step budget (docs/performance.md).
  """
  n, h, w, c = images.shape
  t, s = h - CROP_SIZE + 1, w - CROP_SIZE + 1
  chunks = range(0, n, chunk)
  as_uint8 = all(
      np.all(np.abs(scaled - np.round(scaled)) < 1e-3)
      for scaled in (images[lo:lo + chunk] * 255.0 for lo in chunks))
  dtype = np.uint8 if as_uint8 else np.float32
  rows = np.empty((n, s, h, CROP_SIZE * c), dtype)
  moments = np.empty((n, t, s, 2))  # float64 window means of x and x^2
  size = CROP_SIZE * CROP_SIZE * c
  for lo in chunks:
    x = images[lo:lo + chunk].astype(np.float64)
    for col in range(s):
      cut = x[:, :, col:col + CROP_SIZE, :].reshape(len(x), h, CROP_SIZE * c)
      rows[lo:lo + chunk, col] = np.round(cut * 255.0) if as_uint8 else cut
    # Window sums from integral images of the per-pixel sums over channels.
    for power, k in ((1, 0), (2, 1)):
      grid = np.zeros((len(x), h + 1, w + 1))
      grid[:, 1:, 1:] = (x**power).sum(-1).cumsum(1).cumsum(2)
      sums = (grid[:, CROP_SIZE:, CROP_SIZE:] - grid[:, :t, CROP_SIZE:] - grid[:, CROP_SIZE:, :s] +
              grid[:, :t, :s])
      moments[lo:lo + chunk, ..., k] = sums / size
  mean, square = moments[..., 0], moments[..., 1]
  std = np.maximum(np.sqrt(np.maximum(square - mean**2, 0.0)), 1.0 / np.sqrt(size))
  scale = 1.0 / std / (255.0 if as_uint8 else 1.0)
  affine = np.stack([scale, -mean / std], axis=-1).astype(np.float32)
  return rows.reshape(n * s * h, CROP_SIZE * c), affine.reshape(n * t * s, 2)


def crop_indices(index: tf.Tensor, offsets: tf.Tensor, height: int,
                 width: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Where the windows at (row, col) `offsets` [B, 2] of images `index` [B]
  are in `crop_tables`' tables: (row ids [B, CROP_SIZE], affine ids [B])."""
  t, s = height - CROP_SIZE + 1, width - CROP_SIZE + 1
  index, row, col = tf.cast(index, tf.int64), offsets[:, 0], offsets[:, 1]
  first = (index * s + col) * height + row
  return first[:, None] + tf.range(CROP_SIZE, dtype=tf.int64), (index * t + row) * s + col


@tf.function(jit_compile=True)
def _standardize_windows(x: tf.Tensor, ab: tf.Tensor) -> tf.Tensor:
  """a * float(x) + b per window (row), fused by XLA into one pass over the
  batch: the cast, multiply and add as three TF ops cost 3x the CPU
  (docs/performance.md)."""
  return tf.cast(x, tf.float32) * ab[:, :1] + ab[:, 1:]


def crop_from_tables(rows: tf.Tensor, affine: tf.Tensor, row_ids: tf.Tensor,
                     affine_ids: tf.Tensor) -> tf.Tensor:
  """The standardized windows [B, CROP_SIZE, CROP_SIZE, C] at `crop_indices`."""
  x = tf.gather(rows, tf.reshape(row_ids, [-1]))
  ab = tf.gather(affine, affine_ids)
  x = _standardize_windows(tf.reshape(x, [tf.shape(affine_ids)[0], -1]), ab)
  return tf.reshape(x, [-1, CROP_SIZE, CROP_SIZE, rows.shape[1] // CROP_SIZE])


def crop_batch(rows: tf.Tensor, affine: tf.Tensor, index: tf.Tensor, offsets: tf.Tensor,
               height: int, width: int) -> tf.Tensor:
  """Standardized CROP_SIZE windows at (row, col) `offsets` [B, 2] of images
  `index` [B], from `crop_tables` of images of size height x width."""
  return crop_from_tables(rows, affine, *crop_indices(index, offsets, height, width))


def random_offsets(n: tf.Tensor, height: int, width: int, seed: tf.Tensor) -> tf.Tensor:
  """Independent uniform (row, col) window offsets [n, 2], one per example."""
  t, s = height - CROP_SIZE + 1, width - CROP_SIZE + 1
  k = tf.random.stateless_uniform([n], seed, minval=0, maxval=t * s, dtype=tf.int64)
  return tf.stack([k // s, k % s], axis=1)
