"""Preparing ImageNet (Table 2, section 2.2) with tensorflow-datasets' own builder.

tensorflow-datasets cannot download ImageNet: `ILSVRC2012_img_train.tar` and
`ILSVRC2012_img_val.tar` from image-net.org go in
`<data_dir>/downloads/manual/`, and the `imagenet2012` builder turns them
into TFRecord shards under `<data_dir>/imagenet2012/<version>/` once.

The checks here read only the disk (no TensorFlow), so that the binaries
refuse a missing archive or a full disk in the first second: `problem`
names the exact files that are missing, `prepared_sizes` reads the split
sizes tfds wrote. `plan_message` says what preparing will cost before it
starts; `prepare` runs the builder (tfds shows its progress bars).

Disk: tfds stores the JPEG bytes as they are (it re-encodes only the 22 CMYK
images and the one PNG), so the prepared data set takes about the archives'
size; its shuffle buckets are deleted as they are read, so the peak is
little more. Time, an estimate that names its assumptions: the bytes go
through the disk about four times (archive read, shuffle bucket written and
read, shard written), at an assumed 200 MB/s; and tfds spends CPU time on
every example, 5.4 ms each as measured on a generated miniature of 3,500
images (tools/make_miniature_imagenet.py, 20 classes x 150 + 500) on a
2-core Intel Xeon (AVX-512/AMX) with other jobs running. The number of
examples is the official 1,331,167 for the official archive size, counted
in archives under 1 GB, else their bytes over the official mean (116 kB).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tarfile
from typing import TextIO

NAME = 'imagenet2012'
TRAIN_ARCHIVE = 'ILSVRC2012_img_train.tar'
VAL_ARCHIVE = 'ILSVRC2012_img_val.tar'
ARCHIVES = (TRAIN_ARCHIVE, VAL_ARCHIVE)
OFFICIAL_TRAIN_BYTES = 147_897_477_120  # tensorflow-datasets' checksums.tsv
OFFICIAL_TRAIN_EXAMPLES = 1_281_167
DISK_MARGIN = 1.05  # free space needed, in units of the archives' size
DISK_PASSES = 4
DISK_RATE = 200e6  # bytes/s assumed for the time estimate
SECONDS_PER_EXAMPLE = 5.4e-3  # measured, see the module doc
OFFICIAL_EXAMPLES = 1_331_167  # train + validation
OFFICIAL_BYTES = OFFICIAL_TRAIN_BYTES + 6_744_924_160
_VERSION = re.compile(r'^\d+\.\d+\.\d+$')


def manual_dir(root: str) -> str:
  """Where tfds looks for the archives under a tfds data_dir."""
  return os.path.join(os.path.expanduser(root), 'downloads', 'manual')


def archive_paths(root: str) -> list[str]:
  """The two archives' paths under a tfds data_dir."""
  return [os.path.join(manual_dir(root), name) for name in ARCHIVES]


def _archive_bytes(root: str) -> int:
  return sum(os.path.getsize(p) for p in archive_paths(root))


def _free_bytes(path: str) -> int:
  """Free bytes on the file system that holds `path` (or its nearest ancestor)."""
  path = os.path.abspath(os.path.expanduser(path))
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def problem(root: str) -> str | None:
  """Why ImageNet cannot be prepared under `root`, in one line; None if it can."""
  missing = [p for p in archive_paths(root) if not os.path.isfile(p)]
  if missing:
    return (f'{NAME} is not prepared in {root} and {" and ".join(missing)} '
            f'{"is" if len(missing) == 1 else "are"} missing; allowed: both of '
            f'{" and ".join(ARCHIVES)} from image-net.org in {manual_dir(root)} (see BUILD.md), '
            'or a prepared copy in --data_dir')
  unreadable = [p for p in archive_paths(root) if not os.access(p, os.R_OK)]
  if unreadable:
    return f'{NAME}: {" and ".join(unreadable)} cannot be read; allowed: readable archives'
  need, free = int(_archive_bytes(root) * DISK_MARGIN), _free_bytes(root)
  if free < need:
    return (f'{NAME}: preparing needs about {_gb(need)} free in {root}, there is {_gb(free)}; '
            'allowed: a --data_dir on a file system with that much free space')
  return None


def _gb(n: float) -> str:
  return f'{n / 1e9:.1f} GB' if n >= 1e8 else f'{n / 1e6:.1f} MB'


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f'{seconds:.0f} s'
  return f'{seconds / 60:.0f} min' if seconds < 7200 else f'{seconds / 3600:.1f} h'


def _count_examples(root: str, size: int) -> int:
  """Images in the archives: official, counted (under 1 GB), else estimated by size."""
  if size == OFFICIAL_BYTES:
    return OFFICIAL_EXAMPLES
  if size > 1e9:
    return round(size * OFFICIAL_EXAMPLES / OFFICIAL_BYTES)
  train, val = archive_paths(root)
  with tarfile.open(val) as tar:
    count = sum(m.isfile() for m in tar)
  with tarfile.open(train) as outer:
    for member in outer:
      with tarfile.open(fileobj=outer.extractfile(member)) as inner:
        count += sum(m.isfile() for m in inner)
  return count


def plan_message(root: str) -> str:
  """What preparing will take: disk and (estimated) time, said before it starts."""
  size = _archive_bytes(root)
  target = os.path.join(os.path.expanduser(root), NAME)
  examples = _count_examples(root, size)
  disk, cpu = DISK_PASSES * size / DISK_RATE, examples * SECONDS_PER_EXAMPLE
  return (f'preparing {NAME} from {manual_dir(root)} ({_gb(size)} of archives) into {target}, '
          f'once (later runs reuse it): about {_gb(size)} of disk ({_gb(_free_bytes(root))} '
          f'free) and about {_duration(disk + cpu)} ({DISK_PASSES} passes over the bytes at '
          f'{DISK_RATE / 1e6:.0f} MB/s: {_duration(disk)}; about {examples:,} examples at '
          f'{SECONDS_PER_EXAMPLE * 1e3:.1f} ms of CPU each: {_duration(cpu)})')


def _latest_info(root: str) -> dict | None:
  folder = os.path.join(os.path.expanduser(root), NAME)
  try:
    versions = [v for v in os.listdir(folder) if _VERSION.match(v)]
  except OSError:
    return None
  for v in sorted(versions, key=lambda v: tuple(map(int, v.split('.'))), reverse=True):
    try:
      with open(os.path.join(folder, v, 'dataset_info.json')) as f:
        return json.load(f)
    except (OSError, ValueError):
      continue
  return None


def prepared_sizes(root: str) -> dict[str, int] | None:
  """{split: examples} of the prepared data set (its dataset_info.json), or None."""
  info = _latest_info(root)
  if info is None:
    return None
  return {s['name']: sum(int(n) for n in s.get('shardLengths', [])) for s in info['splits']}


def train_examples(root: str) -> int:
  """Training examples: prepared, else those of the official archive (an upper
  bound for any other archive, checked again once prepared)."""
  sizes = prepared_sizes(root)
  return sizes['train'] if sizes and 'train' in sizes else OFFICIAL_TRAIN_EXAMPLES


def prepare(builder, root: str, out: TextIO = sys.stderr) -> None:
  """Says the plan, then runs the tfds builder (its progress bars show)."""
  print(plan_message(root), file=out, flush=True)
  builder.download_and_prepare()
