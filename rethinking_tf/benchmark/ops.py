"""Where a training step's time goes, op by op, inside the compiled step.

`tensorflow_ops(run, steps)` runs `run()` (which trains `steps` steps) under
TensorFlow's profiler (`tf.profiler.experimental`) and sums the trace's op
events per op type, read from its XPlane file with TensorFlow's own protobuf
(the profiler's TensorBoard plugin, which would do the same, is not a
dependency). The peer does the same with its own profiler
(`peer_pytorch.Peer.op_profile`), into the same shape of dict.

Unlike `layers.step_breakdown` (each layer alone), this times the real
step. Ops that TensorFlow runs side by side (inter-op parallelism) are each
counted in full, so their sum can exceed the wall time; with one inter-op
thread (`tools/benchmark.py --inter_op_threads=1`) each op's time is its own.
oneDNN's kernels are named after the op they implement (`_MklNativeConv2D`
is `Conv2D`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
import glob
import os
import re
import tempfile
from typing import Any

import tensorflow as tf

from rethinking_tf.benchmark import tables

# An op event is '<node name>:<op type>'; other trace events (the executor's,
# the eager runtime's) have spaces or '::' in their names.
_OP_EVENT = re.compile(r'^[^\s:]+:(\w+)$')
_KERNEL_PREFIX = re.compile(r'^_(MklNative|Mkl)?')


def op_type(kernel: str) -> str:
  """The op a kernel implements: '_MklNativeConv2DBackpropFilter' -> 'Conv2DBackpropFilter'."""
  return _KERNEL_PREFIX.sub('', kernel)


def summarize(events: Iterable[tuple[str, float, int]], steps: int) -> dict[str, Any]:
  """(op type, seconds, calls) triples -> ms per step and calls per step, per op type."""
  seconds: dict[str, float] = collections.Counter()
  calls: dict[str, int] = collections.Counter()
  for name, s, n in events:
    seconds[name] += s
    calls[name] += n
  order = sorted(seconds, key=lambda k: -seconds[k])
  return {
      'steps': steps,
      'ms_per_step': {
          k: 1000 * seconds[k] / steps for k in order
      },
      'calls_per_step': {
          k: calls[k] / steps for k in order
      },
      'total_ms_per_step': 1000 * sum(seconds.values()) / steps,
  }


def _xplane_op_events(path: str) -> list[tuple[str, float, int]]:
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  with open(path, 'rb') as f:
    space.ParseFromString(f.read())
  events = []
  for plane in space.planes:
    if not plane.name.startswith('/host:CPU'):
      continue
    for line in plane.lines:
      for event in line.events:
        m = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
        if m:
          events.append((op_type(m.group(1)), event.duration_ps * 1e-12, 1))
  return events


def tensorflow_ops(run: Callable[[], Any], steps: int) -> dict[str, Any]:
  """`summarize` of the TensorFlow ops that `run()` (training `steps` steps) executes."""
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    try:
      run()
    finally:
      tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)
    if not paths:
      raise RuntimeError(f'TensorFlow\'s profiler wrote no trace under {logdir}')
    events = [e for p in paths for e in _xplane_op_events(p)]
  out = summarize(events, steps)
  out['profiler'] = 'tensorflow'
  return out


def format_ops(name: str,
               profiles: Mapping[str, dict[str, Any]],
               top: int = 12,
               title: str | None = None) -> str:
  """The `top` op types of each profile, ranked side by side (ms per step and share)."""
  columns = []
  for p in profiles.values():
    total = p['total_ms_per_step']
    columns.append([(k, f'{v:.1f}', f'{v / total:.3f}') for k, v in p['ms_per_step'].items()][:top])
  header = ['rank']
  for who in profiles:
    header += [f'{who} op', 'ms/step', 'share']
  rows = []
  for i in range(max(len(c) for c in columns)):
    row = [str(i + 1)]
    for c in columns:
      row += list(c[i]) if i < len(c) else ['', '', '']
    rows.append(tuple(row))
  rows.append(
      tuple(['sum'] +
            [x for p in profiles.values() for x in ('', f"{p['total_ms_per_step']:.1f}", '')]))
  title = title or ('the step per op type (profilers\' op time; ops that overlap each count '
                    'in full)')
  return f'{name}: {title}\n' + tables.table(tuple(header), rows)
