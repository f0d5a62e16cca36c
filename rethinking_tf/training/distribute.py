"""tf.distribute strategies for the trainer, and each worker's directory."""

from __future__ import annotations

import os

import tensorflow as tf


def worker_dir(strategy: tf.distribute.Strategy) -> str | None:
  """'workers/<type>_<id>' for a non-chief multi-worker task, else None."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return None
  spec = resolver.cluster_spec().as_dict()
  chief = (resolver.task_type == 'chief' or
           (resolver.task_type == 'worker' and resolver.task_id == 0 and 'chief' not in spec))
  return None if chief else os.path.join('workers', f'{resolver.task_type}_{resolver.task_id}')


def make_strategy(name: str, num_cpu_devices: int = 1) -> tf.distribute.Strategy:
  """`default`, `mirrored` (local GPUs, else logical CPUs) or `multi_worker`.

  `num_cpu_devices > 1` splits the CPU into that many logical devices (before
  any op runs) so that MirroredStrategy can be tested without GPUs.
  """
  if num_cpu_devices > 1:
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] *
                                               num_cpu_devices)
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f'unknown strategy {name!r}; allowed: default, mirrored, multi_worker')
