"""A miniature ImageNet in the real ILSVRC2012 archive format (Table 2, section 2.2).

Writes `ILSVRC2012_img_train.tar` (one `<synset>.tar` of `<synset>_<n>.JPEG`
files per class, as image-net.org ships it) and `ILSVRC2012_img_val.tar`
(flat `ILSVRC2012_val_<8 digits>.JPEG` files) into a directory, normally
`<data_dir>/downloads/manual/`, so that tensorflow-datasets' own
`imagenet2012` builder prepares it offline, through its real archive
reading, special cases, decoding and splits. What the builder expects is
read from the installed tensorflow-datasets, never restated here:

* the synsets are names from its `labels.txt`: the synsets of the CMYK and
  PNG special cases below, then those of the first validation images, in the
  order of the validation list, so the first validation images' classes are
  trained;
* the validation files are the first `num_validation` names of the real
  validation set: the builder sorts the names and pairs them by position with
  its bundled `validation_labels.txt`, so their labels are the real ones;
* one training file is named as one of the builder's `CMYK_IMAGES` and is a
  CMYK JPEG, one is named as its `PNG_IMAGES` entry and is a PNG, as in the
  real data set; every fourth image is a greyscale JPEG; sizes vary.

Pixels are a per-class colour plus noise. Everything is drawn from `seed`,
and the archives' member order from `order_seed` (the validation archive is
never in sorted order, so the builder's sort is exercised): the same
arguments give byte-identical archives. Reads no flags; needs only numpy and
Pillow (a matplotlib dependency).
"""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile

import numpy as np
from PIL import Image

from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as _builder

from rethinking_tf.data import imagenet_prepare

TRAIN_ARCHIVE, VAL_ARCHIVE = imagenet_prepare.ARCHIVES
CMYK_FILE = _builder.CMYK_IMAGES[1]  # n02077923_14822.JPEG: synset among the first validation ones.
PNG_FILE = _builder.PNG_IMAGES[0]
_DATA = os.path.dirname(_builder.__file__)
MIN_SIDE, MAX_SIDE = 40, 130


def _read_lines(name: str) -> list[str]:
  with open(os.path.join(_DATA, name)) as f:
    return f.read().split()


def synsets() -> list[str]:
  """The 1000 synsets in the builder's label order (label k is the k-th)."""
  return _read_lines('labels.txt')


def validation_synsets() -> list[str]:
  """The synset of each validation image, in sorted file-name order."""
  return _read_lines('validation_labels.txt')


def validation_name(i: int) -> str:
  """The real file name of validation image i (0-based)."""
  return f'ILSVRC2012_val_{i + 1:08d}.JPEG'


@dataclasses.dataclass(frozen=True)
class Miniature:
  """What `write` wrote: paths, classes and per-file synsets."""
  train_archive: str
  val_archive: str
  classes: tuple[str, ...]  # synsets, sorted
  train_files: dict[str, str]  # file name -> synset
  val_files: dict[str, str]  # file name -> synset


def choose_classes(num_classes: int) -> list[str]:
  """The special cases' synsets, then the first validation synsets; sorted."""
  chosen = []
  for synset in [f.split('_')[0] for f in (PNG_FILE, CMYK_FILE)] + validation_synsets():
    if synset not in chosen:
      chosen.append(synset)
    if len(chosen) == num_classes:
      break
  return sorted(chosen)


def _encode(pixels: np.ndarray, mode: str, fmt: str) -> bytes:
  out = io.BytesIO()
  Image.fromarray(pixels, mode).save(out, fmt, **({'quality': 90} if fmt == 'JPEG' else {}))
  return out.getvalue()


def _image(rng: np.random.Generator, colour: np.ndarray, name: str, k: int) -> bytes:
  """One encoded image: CMYK, PNG or (every fourth) greyscale by name/position."""
  h, w = rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2)
  rgb = np.clip(colour + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
  if name == CMYK_FILE:
    return _encode(np.concatenate([255 - rgb, np.zeros((h, w, 1), np.uint8)], -1), 'CMYK', 'JPEG')
  if name == PNG_FILE:
    return _encode(rgb, 'RGB', 'PNG')
  if k % 4 == 3:
    return _encode(rgb.mean(-1).astype(np.uint8), 'L', 'JPEG')
  return _encode(rgb, 'RGB', 'JPEG')


def _tar_bytes(members: list[tuple[str, bytes]], path: str | None = None) -> bytes | None:
  """A plain (uncompressed, ustar) tar of `members` in the given order,
  with fixed owners and times; written to `path`, or returned."""
  out = open(path, 'wb') if path else io.BytesIO()
  with tarfile.open(fileobj=out, mode='w', format=tarfile.USTAR_FORMAT) as tar:
    for name, payload in members:
      info = tarfile.TarInfo(name)
      info.size, info.mtime, info.mode = len(payload), 0, 0o644
      tar.addfile(info, io.BytesIO(payload))
  if path:
    out.close()
    return None
  return out.getvalue()


def _file_names(rng: np.random.Generator, synset: str, count: int) -> list[str]:
  """`count` names `<synset>_<n>.JPEG`, including the special case of the synset."""
  special = [f for f in (CMYK_FILE, PNG_FILE) if f.startswith(synset + '_')]
  numbers = rng.choice(np.arange(1, 30_000), size=count, replace=False)
  names = special + [f'{synset}_{n}.JPEG' for n in numbers if f'{synset}_{n}.JPEG' not in special]
  return sorted(names[:count])


def write(out_dir: str,
          num_classes: int = 4,
          images_per_class: int = 4,
          num_validation: int = 3,
          seed: int = 0,
          order_seed: int = 0) -> Miniature:
  """Writes the two archives into `out_dir` (created if absent); see the module doc."""
  if not 2 <= num_classes <= 1000:
    raise ValueError(f'num_classes={num_classes}; allowed: 2 to 1000')
  if images_per_class < 1 or not 1 <= num_validation <= 50_000:
    raise ValueError(f'images_per_class={images_per_class}, num_validation={num_validation}; '
                     'allowed: images_per_class >= 1, num_validation 1 to 50000')
  rng = np.random.default_rng(seed)
  order = np.random.default_rng(order_seed)
  classes = choose_classes(num_classes)
  label = {s: k for k, s in enumerate(synsets())}
  colour = lambda s: np.random.default_rng([seed, label[s]]).uniform(30, 225, 3)
  os.makedirs(out_dir, exist_ok=True)
  train_files, inner = {}, []
  for synset in classes:
    names = _file_names(rng, synset, images_per_class)
    members = [(n, _image(rng, colour(synset), n, k)) for k, n in enumerate(names)]
    train_files.update((n, synset) for n in names)
    inner.append((f'{synset}.tar', _tar_bytes([members[j] for j in order.permutation(len(names))])))
  train_path = os.path.join(out_dir, TRAIN_ARCHIVE)
  _tar_bytes(inner, train_path)
  truth = validation_synsets()[:num_validation]
  val = [(validation_name(i), _image(rng, colour(s), validation_name(i), i))
         for i, s in enumerate(truth)]
  perm = order.permutation(len(val))
  if len(val) > 1 and np.all(perm == np.arange(len(val))):
    perm = np.roll(perm, 1)  # never sorted: the builder must sort
  val_path = os.path.join(out_dir, VAL_ARCHIVE)
  _tar_bytes([val[j] for j in perm], val_path)
  return Miniature(train_path, val_path, tuple(classes), train_files, {
      validation_name(i): s for i, s in enumerate(truth)
  })
