#!/usr/bin/env python
"""A miniature ImageNet in the real ILSVRC2012 archive format (Table 2's data path).

    python tools/make_miniature_imagenet.py --data_dir=/tmp/mini [--num_classes=4 ...]
    python -m rethinking_tf.train --dataset=imagenet2012 --data_dir=/tmp/mini \
        --model=inception_v3 --batch_size=4 --epochs=1 --logdir=/tmp/mini_run

writes `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` into
`<data_dir>/downloads/manual/`, where tensorflow-datasets' imagenet2012
builder (and so the training binary) looks for the real ones: a check of a
machine before the 155 GB of archives arrive. See
`rethinking_tf/data/imagenet_miniature.py` for what is written.

Bad flags, or archives already in place (never overwritten), are one
`error:` line on stderr, exit 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rethinking_tf.data import imagenet_miniature  # noqa: E402  # pylint: disable=wrong-import-position


class _Parser(argparse.ArgumentParser):

  def error(self, message: str):
    sys.stderr.write(f'error: {message}\n')
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
  """Checks the flags, writes the two archives and prints where they are."""
  p = _Parser(description='Writes a miniature ILSVRC2012 train and validation archive '
              'into <data_dir>/downloads/manual/.')
  p.add_argument('--data_dir', required=True, help='tensorflow-datasets data_dir.')
  p.add_argument('--num_classes', type=int, default=4, help='Synsets (2 to 1000).')
  p.add_argument('--images_per_class', type=int, default=4, help='Training images per synset.')
  p.add_argument('--num_validation', type=int, default=3, help='Validation images (1 to 50000).')
  p.add_argument('--seed', type=int, default=0, help='Seed of the pixels, sizes and names.')
  p.add_argument('--order_seed', type=int, default=0, help='Seed of the archive member order.')
  args = p.parse_args(argv)
  if not 2 <= args.num_classes <= 1000:
    p.error(f'--num_classes={args.num_classes} is out of range; allowed: 2 to 1000')
  if args.images_per_class < 1:
    p.error(f'--images_per_class={args.images_per_class}; allowed: 1 or more')
  if not 1 <= args.num_validation <= 50_000:
    p.error(f'--num_validation={args.num_validation} is out of range; allowed: 1 to 50000')
  manual = os.path.join(os.path.expanduser(args.data_dir), 'downloads', 'manual')
  for name in (imagenet_miniature.TRAIN_ARCHIVE, imagenet_miniature.VAL_ARCHIVE):
    if os.path.lexists(os.path.join(manual, name)):
      p.error(f'{os.path.join(manual, name)} exists; allowed: a --data_dir without ImageNet '
              'archives (they are never overwritten)')
  try:
    os.makedirs(manual, exist_ok=True)
  except OSError as e:
    p.error(f'--data_dir={args.data_dir}: cannot create {manual} ({e.strerror}); allowed: a '
            'writable directory')
  mini = imagenet_miniature.write(manual, args.num_classes, args.images_per_class,
                                  args.num_validation, args.seed, args.order_seed)
  print(f'wrote {len(mini.train_files)} training images of {len(mini.classes)} synsets to '
        f'{mini.train_archive} and {len(mini.val_files)} validation images to {mini.val_archive}')


if __name__ == '__main__':
  main()
