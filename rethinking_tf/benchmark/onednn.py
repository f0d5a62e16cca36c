"""oneDNN's primitives inside a training step, ours and the peer's, from ONEDNN_VERBOSE.

`profile(model, side, steps)` trains `steps` steps of a model in a child
process with ONEDNN_VERBOSE=1 and sums oneDNN's `exec` lines per primitive
kind, propagation and implementation (`convolution backward_weights
[jit:avx512_core]`). Both libraries call oneDNN for their convolutions, so
this shows, one for one, which kernel each got and how long it ran. It
also names each library's oneDNN version and the instruction set oneDNN
dispatches to (held back by ONEDNN_MAX_CPU_ISA, which the child inherits).

Why a child process: oneDNN reads ONEDNN_VERBOSE once, before its first
primitive, and TensorFlow has no switch for it in a running process. Our
step runs there with one inter-op thread, so that primitives do not overlap
and each one's time is its own. Primitives outside oneDNN (PyTorch's own
BatchNorm, TensorFlow's Eigen ops) are not listed: `ops` has the whole step.
"""

from __future__ import annotations

from collections.abc import Iterable
import os
import subprocess
import sys
import tempfile
from typing import Any

from rethinking_tf.benchmark import ops

SIDES = ('ours', 'pytorch')
_MARK = 'rethinking_tf.benchmark.onednn: the timed steps follow'


def parse(lines: Iterable[str]) -> tuple[list[tuple[str, float, int]], dict[str, Any]]:
  """oneDNN verbose lines -> ((primitive, seconds, 1) per exec line, {'version', 'isa',
  'threads'})."""
  events, info = [], {}
  for line in lines:
    f = line.strip().split(',')
    if f[0] != 'onednn_verbose':
      continue
    if 'info' in f[1:3]:
      if f[-1].startswith('oneDNN v'):
        info['version'] = f[-1].split()[1]
      elif f[-1].startswith('isa:'):
        info['isa'] = f[-1][len('isa:'):]
      elif f[-1].startswith('nthr:'):
        info['threads'] = int(f[-1][len('nthr:'):])
    elif 'exec' in f[1:4] and len(f) > f.index('exec') + 4:
      i = f.index('exec')  # ...,exec,cpu,<kind>,<implementation>,<propagation>,...,<ms>
      kind, implementation, propagation = f[i + 2], f[i + 3], f[i + 4]
      what = kind if propagation == 'undef' else f'{kind} {propagation}'
      label = f'{what} [{implementation}]' if implementation else what
      events.append((label, float(f[-1]) * 1e-3, 1))
  return events, info


def profile(model: str,
            side: str = 'ours',
            steps: int = 4,
            batch_size: int = 128,
            threads: int = 0,
            timeout: float = 900.0) -> dict[str, Any]:
  """`ops.summarize` of oneDNN's primitives in `steps` training steps of `model`.

  `side` is 'ours' (the binary's compiled step, `models.BareLoop`, on
  in-memory digits at 28x28x3) or 'pytorch' (`peer_pytorch.Peer`). Adds the
  oneDNN 'version' and 'isa' the child reported. `threads` > 0: the
  child's intra-op threads (ours) or `torch.set_num_threads` (the peer's),
  as the parent's; 0 = each library's default.
  """
  if side not in SIDES:
    raise ValueError(f'side={side!r}: allowed: {", ".join(SIDES)}')
  code = (f'from rethinking_tf.benchmark import onednn\n'
          f'onednn._child({model!r}, {side!r}, {steps}, {batch_size}, {threads})\n')
  proc = subprocess.run([sys.executable, '-c', code],
                        capture_output=True,
                        text=True,
                        env=dict(os.environ, ONEDNN_VERBOSE='1'),
                        timeout=timeout)
  head, found, timed = proc.stdout.partition(_MARK)
  if proc.returncode or not found:
    raise RuntimeError(f'oneDNN profile of {side} {model} failed (exit {proc.returncode}): '
                       f'{proc.stderr.strip()[-1500:]}')
  events, _ = parse(timed.splitlines())
  out = ops.summarize(events, steps)
  out.update(parse(head.splitlines())[1], profiler='ONEDNN_VERBOSE', side=side)
  return out


def _child(model: str, side: str, steps: int, batch_size: int, threads: int = 0) -> None:
  """In the child: warm up, print the mark, run `steps` steps (oneDNN prints each primitive)."""
  if side == 'pytorch':
    from rethinking_tf.benchmark import peer_pytorch  # pylint: disable=g-import-not-at-top
    run = peer_pytorch.Peer(model,
                            batch_size=batch_size,
                            num_train=2 * batch_size,
                            threads=threads or None).run
    _mark_then(run, steps)
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  from rethinking_tf.benchmark import models  # pylint: disable=g-import-not-at-top
  from rethinking_tf.benchmark import suite  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as logdir:
    case = models.ModelCase(model,
                            batch_size=batch_size,
                            train_size=2 * batch_size,
                            epochs=1,
                            steps_per_execution=1)
    config = case.train_config(logdir)
    suite.prepare_logdir(config, None)
    t = suite.Trainer(config, tf.distribute.get_strategy())
    t.build(suite.make_config_pipelines(config))
    bare = models.BareLoop(t)
    bare.run(2)  # tracing, oneDNN's primitive caches
    _mark_then(bare.run, steps)


def _mark_then(run, steps: int) -> None:
  """Prints the mark on file descriptor 1, after everything before it (oneDNN
  flushes each of its lines), then runs `steps` steps."""
  sys.stdout.flush()
  os.write(1, f'{_MARK}\n'.encode())
  run(steps)
  sys.stdout.flush()
