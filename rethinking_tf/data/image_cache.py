"""A cache of an image folder's decoded arrays, so that a run starts at once.

Decoding an `image_folder` split (appendix A's CIFAR-10 as 60,000 JPEGs) costs
seconds to tens of seconds of silence at the start of every run; reading the
decoded uint8 arrays back costs a fraction of a second. The cache holds one
entry per (folder, split) under the user's cache directory:

    $XDG_CACHE_HOME/rethinking_tf/image_folder/    (default ~/.cache/...)

An entry is an uncompressed `.npz` (images uint8 [N, H, W, 3], labels, class
names) with the key it was made for: a hash of the split's sorted file list
with each file's size and modification time (ns) and of how it was decoded.
A changed, added or removed file changes the key, and the entry is decoded
again and replaced. Entries are written to a temporary file in the same
directory and renamed into place, so a half-written entry is never read; an
unreadable or corrupt entry is ignored (and rewritten); a cache directory that
cannot be written only costs the decoding. Deleting the directory clears it.
The images are read straight from the file into one array (`_read_stored`),
their CRC-32 checked as zipfile checks it: about half of `np.load`'s time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import time
import zipfile
import zlib
from collections.abc import Sequence

from absl import logging
import numpy as np

# Part of every key: bump it when the decoding changes what an entry holds.
DECODE_VERSION = 'rgb-uint8-resize-to-first-bilinear-round-v1'
# Temporary files older than this are left over from a killed writer.
_STALE_SECONDS = 3600.0


@dataclasses.dataclass
class Decoded:
  """A decoded split: uint8 images [N, H, W, 3], int64 labels, class names."""
  images: np.ndarray
  labels: np.ndarray
  classes: list[str]


def cache_dir() -> str:
  """Where entries live: $XDG_CACHE_HOME (or ~/.cache)/rethinking_tf/image_folder."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(base, 'rethinking_tf', 'image_folder')


def entry_path(folder: str, split: str) -> str:
  """The one entry of `<folder>/<split>`, named after the folder for humans."""
  real = os.path.realpath(folder)
  digest = hashlib.sha256(real.encode()).hexdigest()[:16]
  name = re.sub(r'[^A-Za-z0-9_.-]', '_', os.path.basename(real)) or 'root'
  return os.path.join(cache_dir(), f'{name}-{digest}-{split}.npz')


def files_key(files: Sequence[str], root: str) -> str | None:
  """A hash of `files` (paths under `root`), their sizes and mtimes (ns).

  None when a file cannot be stat'ed (then there is nothing to key on).
  """
  prefix = os.path.join(root, '')
  lines = [DECODE_VERSION]
  try:
    for path in files:
      st = os.stat(path)
      name = path[len(prefix):] if path.startswith(prefix) else path
      lines.append(f'{name}\0{st.st_size}\0{st.st_mtime_ns}')
  except OSError:
    return None
  return hashlib.sha256('\n'.join(lines).encode()).hexdigest()


def _read_stored(path: str, z: zipfile.ZipFile, name: str) -> np.ndarray:
  """The array `name` of an uncompressed .npz, read into one buffer.

  `np.load` reads a zip member in chunks through zipfile and copies each;
  this reads the member's bytes in place once and checks the same CRC-32.
  Raises ValueError when the member is not what `save` writes.
  """
  info = z.getinfo(name)
  if info.compress_type != zipfile.ZIP_STORED:
    raise ValueError(f'{name} is compressed')
  with open(path, 'rb') as f:
    f.seek(info.header_offset)
    local = f.read(30)  # The local file header; its name and extra field follow.
    if len(local) != 30 or local[:4] != b'PK\x03\x04':
      raise ValueError(f'{name}: bad local header')
    start = info.header_offset + 30 + int.from_bytes(local[26:28], 'little') + int.from_bytes(
        local[28:30], 'little')
    f.seek(start)
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0
                   if version == (1, 0) else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
    header_size = f.tell() - start
    array = np.empty(shape, dtype)
    if fortran or dtype.hasobject or header_size + array.nbytes != info.file_size:
      raise ValueError(f'{name}: not a C-ordered array of the stored size')
    f.seek(start)
    crc = zlib.crc32(f.read(header_size))
    data = memoryview(array).cast('B')
    if f.readinto(data) != array.nbytes:
      raise ValueError(f'{name}: truncated')
  if zlib.crc32(data, crc) != info.CRC:
    raise ValueError(f'{name}: CRC-32 mismatch')
  return array


def load(path: str, key: str, num_files: int) -> Decoded | None:
  """The entry at `path` if it was made for `key`, else None (never raises)."""
  try:
    with np.load(path, allow_pickle=False) as z:
      if str(z['key']) != key:
        return None
      decoded = Decoded(_read_stored(path, z.zip, 'images.npy'), z['labels'],
                        [str(c) for c in z['classes']])
  except FileNotFoundError:
    return None
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    logging.warning('Ignoring the unreadable image cache entry %s (%s)', path, e)
    return None
  images, labels = decoded.images, decoded.labels
  if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or
      len(images) != num_files or labels.shape != (num_files,)):
    logging.warning('Ignoring the malformed image cache entry %s', path)
    return None
  return decoded


def save(path: str, key: str, decoded: Decoded) -> bool:
  """Writes the entry atomically; False (with a warning) if it cannot."""
  directory, name = os.path.split(path)
  tmp = None
  try:
    os.makedirs(directory, exist_ok=True)
    _remove_stale(directory, name)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=name + '.', suffix='.tmp')
    with os.fdopen(fd, 'wb') as f:
      np.savez(f,
               key=np.array(key),
               images=decoded.images,
               labels=np.asarray(decoded.labels, np.int64),
               classes=np.array(decoded.classes, dtype=str))
    os.replace(tmp, path)
    return True
  except OSError as e:
    logging.warning(
        'Not caching the decoded images in %s (%s); they are decoded '
        'again on the next run', directory, e)
    if tmp:
      try:
        os.remove(tmp)
      except OSError:
        pass
    return False


def _remove_stale(directory: str, name: str) -> None:
  """Removes temporary files of `name` left by a writer that was killed."""
  now = time.time()
  for f in os.listdir(directory):
    if f.startswith(name + '.') and f.endswith('.tmp'):
      try:
        if now - os.stat(os.path.join(directory, f)).st_mtime > _STALE_SECONDS:
          os.remove(os.path.join(directory, f))
      except OSError:
        pass
