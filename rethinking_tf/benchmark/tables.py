"""Plain-text tables for the benchmark's reports."""

from __future__ import annotations

from collections.abc import Sequence


def fmt(x: float) -> str:
  """A rate or a time: thousands separated from 100 up, else 3 significant digits."""
  return f'{x:,.0f}' if abs(x) >= 100 else f'{x:.3g}'


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Columns padded to their widest cell, a rule under the header."""
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  line = lambda row: '  '.join(str(x).ljust(w) for x, w in zip(row, widths))
  return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])
