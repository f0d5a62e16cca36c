"""Command-line parsing for the tools under tools/: every error is one line.

argparse reports a bad argument as its usage text plus `prog: error: ...`;
the project's tools (run_sweep, make_tables, make_figures) instead print one
line `error: <what is wrong>` on stderr and exit 2, before any work and
before anything is created on disk. Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


def fail(message: str, code: int = 2) -> NoReturn:
  """Exits with one line `error: <message>` on stderr (2 = bad input)."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
  """argparse.ArgumentParser whose errors are one `error: ...` line, exit 2."""

  def error(self, message: str) -> NoReturn:
    if message.startswith('unrecognized arguments'):
      flags = sorted(o for a in self._actions for o in a.option_strings
                     if a.help != argparse.SUPPRESS and o.startswith('--'))
      message += '; allowed: ' + ', '.join(flags)
    fail(message)


def writable_dir_error(flag: str, path: str) -> str | None:
  """Why `path` cannot be (made into) a writable directory; None if it can.

  Creates nothing: a missing directory is judged by its nearest existing
  ancestor.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path):
    if not os.path.isdir(path):
      return f'{flag}={path} exists and is not a directory'
    return None if os.access(path, os.W_OK | os.X_OK) else f'{flag}={path} is not writable'
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    return f'{flag}={path} cannot be created: {parent} is not a directory'
  if not os.access(parent, os.W_OK | os.X_OK):
    return f'{flag}={path} cannot be created: {parent} is not writable'
  return None
