"""Plain-text tables for the benchmark's reports, the peer's and the per-epoch costs' among them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(x: float) -> str:
  """A rate or a time: thousands separated from 100 up, else 3 significant digits."""
  return f'{x:,.0f}' if abs(x) >= 100 else f'{x:.3g}'


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Columns padded to their widest cell, a rule under the header."""
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  line = lambda row: '  '.join(str(x).ljust(w) for x, w in zip(row, widths))
  return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])


def peer_table(measured: Sequence[dict[str, Any]]) -> list[str]:
  """Ours against the peer, per case (no lines when no peer ran)."""
  rows = [
      (r['model'], r['precision'], fmt(r['images_per_second']), fmt(r['peer_images_per_second']),
       f"{r['peer_ratio']:.2f}", '{:.2f}-{:.2f}'.format(*r['peer_ratio_range']),
       f"{r['peer_ratio_best']:.2f}", f"{r['peer_ratio_cpu']:.2f}", f"{r['peer_ratio_bare']:.2f}",
       f"{r['peer']['library']} {r['peer']['version']}, "
       f"{r['peer']['threads']} threads, {r['peer']['layout']}, "
       f"{r['peer'].get('precision', 'float32')}, "
       f"OMP_WAIT_POLICY {r['peer'].get('omp_wait_policy', '-')}") for r in measured if 'peer' in r
  ]
  if not rows:
    return []
  return [
      '',
      table(('model', 'precision', 'ours img/s', 'peer img/s', 'ratio', 'epochs', 'best', '(CPU)',
             'bare/peer', 'peer'), rows),
      '(ratio = median over the timed epochs of ours (binary) / the peer, each epoch followed '
      'by one epoch\'s steps of the peer, so both see the same load; epochs = the least and '
      'greatest epoch\'s ratio; best = our best epoch / the peer\'s best; (CPU) per process '
      'CPU-second; bare/peer = the bare loop against the peer)'
  ]


def epoch_cost_table(measured: Sequence[dict[str, Any]]) -> list[str]:
  """The per-epoch work outside the training steps, per case (`models.epoch_costs`)."""
  rows = []
  for r in measured:
    c = r['epoch_costs']
    rows.append((r['model'], r['precision'], str(r['num_train']), str(r['num_test']),
                 f"{c['train_seconds']:.3f}", f"{c['train_eval_seconds']:.3f}",
                 f"{c['test_seconds']:.3f}", f"{c['checkpoint_seconds']:.3f}",
                 f"{c['evaluation_share']:.3f}", f"{c['checkpoint_share']:.3f}"))
  return [
      '',
      table(('model', 'precision', 'train imgs', 'test imgs', 'train s', 'train-eval s', 'test s',
             'checkpoint s', 'eval share', 'ckpt share'), rows),
      '(one epoch: training steps at the binary\'s rate, then each part alone, best of 2: the '
      'inference pass over the training set, the test pass, one checkpoint; shares of the sum)'
  ]
