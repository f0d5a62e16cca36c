#!/usr/bin/env python
"""Prepares ImageNet (Table 2) once, before any training run.

    python tools/prepare_imagenet.py --data_dir=/data/tfds

runs tensorflow-datasets' imagenet2012 builder on
`<data_dir>/downloads/manual/ILSVRC2012_img_{train,val}.tar`, saying the disk
and time it will take first (`rethinking_tf/data/imagenet_prepare.py`). The
training binary does the same on its first ImageNet run; this tool is for
a data_dir shared by several machines (prepare once, then start the
workers) or to prepare ahead. A prepared data_dir is left as it is.

Missing or unreadable archives, or too little free disk, are one `error:`
line on stderr, exit 2, within a second and before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rethinking_tf.data import imagenet_prepare  # noqa: E402  # pylint: disable=wrong-import-position
from rethinking_tf.data import sources  # noqa: E402  # pylint: disable=wrong-import-position


def main(argv: list[str] | None = None) -> None:
  """Checks the archives and the disk, then prepares."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--data_dir',
                 default=None,
                 help='tensorflow-datasets data_dir (default: $TFDS_DATA_DIR, '
                 'else ~/tensorflow_datasets).')
  args = p.parse_args(argv)
  root = sources.tfds_root(args.data_dir)
  if sources.tfds_prepared(imagenet_prepare.NAME, args.data_dir):
    print(f'{imagenet_prepare.NAME} is already prepared in {root}: '
          f'{imagenet_prepare.prepared_sizes(root)}')
    return
  why = imagenet_prepare.problem(root)
  if why:
    sys.stderr.write(f'error: {why}\n')
    sys.exit(2)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(imagenet_prepare.NAME, data_dir=os.path.expanduser(root))
  imagenet_prepare.prepare(builder, root)
  print(f'prepared {imagenet_prepare.prepared_sizes(root)} in {root}')


if __name__ == '__main__':
  main()
