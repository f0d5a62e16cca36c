"""The lock a sweep holds on RUNDIR/.sweep_lock while the run is going.

Two sweeps over one --logdir never run the same directory twice, and the
tables tell a running run from an interrupted one (`lock_held`).
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import IO

LOCK = '.sweep_lock'


def lock_held(rundir: str) -> bool:
  """Whether some process (a sweep) holds RUNDIR/.sweep_lock now."""
  path = os.path.join(rundir, LOCK)
  if not os.path.exists(path):
    return False
  try:
    f = open(path)  # pylint: disable=consider-using-with
  except OSError:
    return False
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
  return False


def try_lock(f: IO[str], attempts: int = 10) -> bool:
  """Takes an exclusive lock on f, retrying briefly past a reader's probe."""
  for attempt in range(attempts):
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return True
    except OSError:
      if attempt + 1 < attempts:
        time.sleep(0.05)
  return False
