"""What native libraries write straight to file descriptor 2, filtered.

TensorFlow's C++ start-up logging and libjpeg's warnings bypass Python's
`sys.stderr` and every log-level setting (see `cli.import_tensorflow` and
`data.loaders._decode_files`), so the only way to keep a binary's stderr to the lines
a user needs is to capture the descriptor around the call and print back
what a filter keeps.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def filtered(keep: Callable[[str], str]) -> Iterator[None]:
  """Runs the block with fd 2 captured, then writes `keep(captured text)` to stderr.

  The text is written back even when the block raises, so nothing a native
  library said about a failure is lost unless `keep` drops it.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      sys.stderr.write(keep(capture.read().decode(errors='replace')))
      sys.stderr.flush()
