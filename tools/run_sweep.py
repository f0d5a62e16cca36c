#!/usr/bin/env python
"""Runs a grid of flagfiles as ordinary training runs, N at a time.

    python tools/run_sweep.py --logdir=DIR [--parallel=N] [--set FLAG=VALUE]... FLAGFILE...

Each flagfile F runs as

    python -m rethinking_tf.train --flagfile=F [--FLAG=VALUE for each --set] --logdir=DIR/<F>

where <F> is F's path relative to its `flags/` directory without `.cfg`
(flags/table1/mlp_1x512_wd.cfg -> DIR/table1/mlp_1x512_wd). tools/make_tables.py
and tools/make_figures.py read any layout (they match runs to rows by their
settings) and, where several runs fit a row, prefer the one laid out so. The `--set` overrides
apply to every run (later flags override the flagfile's), so the same grid
runs CPU-sized or on a local data copy.

A run directory holding results.json is finished and skipped (reported as a
conflict if it was run with other flag values); an unfinished one is started
again and the training binary resumes it from its last completed epoch; a
failed one (failed.txt) is retried unless --skip_failed. A run whose
resolved flags equal those of a run already finished anywhere under --logdir
(say figure2/inception_bn and table1/inception, or labels=corrupted with
p = 1 and labels=random) is not trained again: the finished run's outputs
are copied (without checkpoints) and RUNDIR/reused_from.txt names the source;
--no_reuse trains it anyway. A run that exits
non-zero without results.json gets a failed.txt (first line: the binary's
`diverged at epoch E, step S` for a run whose loss became NaN, else the exit
code); the sweep keeps going, lists every failure at the end and then exits 1.
Each run's stdout and stderr are appended to RUNDIR/train.log. While a run
is going its directory holds a lock on RUNDIR/.sweep_lock, so two sweeps over
one --logdir never run the same directory twice and make_tables can tell
running from interrupted.

The training command defaults to `python -m rethinking_tf.train` with this
interpreter; the RETHINKING_TRAIN_CMD environment variable (or the hidden
--train_cmd flag) replaces it, e.g. for tests with a fake binary.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import IO
from collections.abc import Sequence

# The checkout's own package first (before an installed copy).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rethinking_tf import arguments  # pylint: disable=wrong-import-position

# The training binary's flags (the contract) and their kinds. A bool flag is
# written --name or --noname.
TRAIN_FLAGS: dict[str, str] = {
    'dataset': 'enum',
    'data_dir': 'str',
    'train_size': 'int',
    'labels': 'enum',
    'corrupt_prob': 'float',
    'inputs': 'enum',
    'seed': 'int',
    'random_crop': 'bool',
    'augment': 'bool',
    'model': 'str',
    'batch_norm': 'bool',
    'weight_decay': 'float',
    'dropout': 'float',
    'early_stopping_patience': 'int',
    'learning_rate': 'float',
    'lr_decay': 'float',
    'lr_decay_steps': 'int',
    'batch_size': 'int',
    'epochs': 'int',
    'fit_threshold': 'float',
    'stop_on_fit': 'bool',
    'strategy': 'str',
    'logdir': 'str',
    'overwrite': 'bool',
    'image_cache': 'bool',
}
# Flags of the binary beyond the contract: fine for --set, not in flagfiles.
EXTRA_FLAGS: dict[str, str] = {
    'bn_momentum': 'float',
    'momentum': 'float',
    'num_cpu_devices': 'int',
    'steps_per_execution': 'int',
    'quiet': 'bool',
    'test_size': 'int',
    'precision': 'str',
}
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    'dataset': ('cifar10', 'imagenet2012', 'digits', 'image_folder'),
    'labels': ('true', 'corrupted', 'random'),
    'inputs': ('original', 'shuffled_pixels', 'random_pixels', 'gaussian'),
}
# Defaults of the flags a flagfile may leave out, to tell a finished run made
# with other values (e.g. an earlier --set train_size=5000) from a match.
DEFAULTS: dict[str, str] = {
    'train_size': '0',
    'labels': 'true',
    'corrupt_prob': '0',
    'inputs': 'original',
    'seed': '0',
    'batch_norm': 'true',
    'weight_decay': '0',
    'dropout': '0',
    'early_stopping_patience': '0',
    'lr_decay': '0.95',
    'lr_decay_steps': '0',
    'batch_size': '128',
    'fit_threshold': '1.0',
    'stop_on_fit': 'false',
    'test_size': '0',
}
# The binary's default for every flag it writes to RUNDIR/flags.cfg (a test
# checks this against rethinking_tf.train), to resolve a job's flags fully.
BINARY_DEFAULTS: dict[str, str] = {
    **DEFAULTS,
    'augment': 'false',
    'bn_momentum': '0.9',
    'dataset': 'cifar10',
    'epochs': '100',
    'learning_rate': '0',
    'model': 'inception',
    'momentum': '0.9',
    'num_cpu_devices': '1',
    'precision': 'float32',
    'quiet': 'false',
    'random_crop': 'false',
    'steps_per_execution': '0',
    'strategy': 'default',
    'image_cache': 'true',
}
# Flags that do not change what a run computes (steps_per_execution: a test
# checks equal metrics; image_cache: tests check equal arrays and metrics).
COSMETIC_FLAGS = ('quiet', 'steps_per_execution', 'image_cache')
# Flags a flagfile or --set may not carry: the runner owns them.
RUNNER_FLAGS = ('logdir', 'overwrite')

RESULTS, FAILED, METRICS, LOG, LOCK, FLAGS_CFG, REUSED = ('results.json', 'failed.txt',
                                                          'metrics.csv', 'train.log', '.sweep_lock',
                                                          'flags.cfg', 'reused_from.txt')

# The first line of the training binary's failed.txt for a run whose loss
# became NaN or infinite: 'diverged at epoch E, step S'.
DIVERGED = 'diverged at epoch '


class SweepError(ValueError):
  """A bad flagfile or --set value; the message says which."""


def parse_flag(text: str, extra: bool = False) -> tuple[str, str]:
  """Parses `--name=value`, `--name` or `--noname` into (name, value).

  Bool flags come back as 'true' or 'false'. Raises SweepError for a name
  that is not a contract flag (or, with `extra`, an EXTRA_FLAGS one) or a
  value of the wrong kind.
  """
  known = {**TRAIN_FLAGS, **EXTRA_FLAGS} if extra else TRAIN_FLAGS
  if not text.startswith('--'):
    raise SweepError(f'{text!r} is not of the form --name=value')
  body = text[2:]
  if '=' in body:
    name, value = body.split('=', 1)
  elif known.get(body) == 'bool':
    name, value = body, 'true'
  elif body.startswith('no') and known.get(body[2:]) == 'bool':
    name, value = body[2:], 'false'
  else:
    raise SweepError(f'{text!r}: not a bool flag of the training binary, so it '
                     'needs =value')
  if name not in known:
    raise SweepError(f'{text!r}: unknown flag --{name}; known: {", ".join(known)}')
  kind = known[name]
  try:
    if kind == 'int':
      int(value)
    elif kind == 'float':
      float(value)
    elif kind == 'bool':
      value = {'true': 'true', '1': 'true', 'false': 'false', '0': 'false'}[value.lower()]
    elif kind == 'enum' and value not in ENUM_VALUES[name]:
      raise ValueError
  except (ValueError, KeyError):
    allowed = ', '.join(ENUM_VALUES.get(name, ())) or f'a {kind}'
    raise SweepError(f'{text!r}: bad value for --{name}; allowed: {allowed}') from None
  return name, value


def read_flagfile(path: str, extra: bool = False) -> list[tuple[str, str]]:
  """The (name, value) pairs of a flagfile: `--flag` lines, `#` comments, blanks.

  With `extra`, EXTRA_FLAGS are allowed too (a run's resolved flags.cfg).
  """
  pairs = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      line = line.strip()
      if not line or line.startswith('#'):
        continue
      try:
        pairs.append(parse_flag(line, extra=extra))
      except SweepError as e:
        raise SweepError(f'{path}:{number}: {e}') from None
      if pairs[-1][0] in RUNNER_FLAGS:
        raise SweepError(f'{path}:{number}: flagfiles never set --{pairs[-1][0]}')
  return pairs


def run_name(flagfile: str, flags_root: str | None = None) -> str:
  """DIR-relative run name: the flagfile's path under `flags/`, without .cfg."""
  path = os.path.abspath(flagfile)
  if flags_root:
    rel = os.path.relpath(path, os.path.abspath(flags_root))
  else:
    parts = path.split(os.sep)
    roots = [i for i, p in enumerate(parts[:-1]) if p == 'flags']
    rel = os.sep.join(parts[roots[-1] + 1:]) if roots else os.path.basename(path)
  if rel.startswith('..'):
    raise SweepError(f'{flagfile} is not under --flags_root={flags_root}')
  return rel[:-4] if rel.endswith('.cfg') else rel


def _same_value(name: str, want: str, got: object) -> bool:
  """Whether a flag value `want` (flagfile text) equals a results.json config value."""
  kind = {**TRAIN_FLAGS, **EXTRA_FLAGS}.get(name)
  if got is None and name in ('train_size', 'test_size'):
    got = 0  # the binary stores 'all' as None
  try:
    if kind == 'bool':
      return (want == 'true') == bool(got)
    if kind in ('int', 'float'):
      return abs(float(want) - float(got)) <= 1e-12 * max(1.0, abs(float(want)))
  except (TypeError, ValueError):
    return False
  if name == 'data_dir' and got is not None:
    return os.path.abspath(os.path.expanduser(want)) == os.path.abspath(os.path.expanduser(
        str(got)))
  return str(want) == str(got)


@dataclasses.dataclass
class Job:
  """One flagfile run."""
  flagfile: str
  name: str
  rundir: str
  flags: dict[str, str]  # flagfile values with the --set overrides applied
  command: list[str]
  state: str = 'pending'  # pending|done|conflict|skipped|running|finished|reused|failed
  detail: str = ''
  started: float = 0.0

  def conflicts(self) -> list[str]:
    """Flags whose value differs from the finished run's results.json config
    (cosmetic flags aside, as in `canonical_flags`)."""
    try:
      with open(os.path.join(self.rundir, RESULTS)) as f:
        config = json.load(f).get('config') or {}
    except (OSError, ValueError):
      return []
    want = _same_labels({**DEFAULTS, **self.flags})
    config = _same_labels(config)
    return [
        f'--{k}={v} (ran with {config[k]!r})' for k, v in want.items()
        if k in config and k not in COSMETIC_FLAGS and not _same_value(k, v, config[k])
    ]


def _same_labels(values: dict) -> dict:
  """`labels=corrupted` with p = 0 or 1 written as `labels=true` / `random`.

  data.label_tables redraws a label when u < p for u in [0, 1), so p = 0
  redraws none and p = 1 all, from the same tables: the same run
  (tests/test_data.py checks this).
  """
  try:
    p = float(values.get('corrupt_prob') or 0)
  except (TypeError, ValueError):
    return values
  if values.get('labels') == 'corrupted' and p in (0.0, 1.0):
    return {**values, 'labels': 'true' if p == 0.0 else 'random', 'corrupt_prob': 0.0}
  return values


def canonical_flags(values: dict[str, str]) -> dict[str, object]:
  """A run's complete flags (binary defaults filled in) in a comparable form.

  Two runs with equal canonical flags compute the same thing. Besides number
  and bool spelling, `--labels=corrupted` with p = 0 or 1 is the same run as
  `--labels=true` or `--labels=random` (`_same_labels`).
  """
  kinds = {**TRAIN_FLAGS, **EXTRA_FLAGS}
  out: dict[str, object] = {}
  for name, value in {**BINARY_DEFAULTS, **values}.items():
    if name in RUNNER_FLAGS or name in COSMETIC_FLAGS:
      continue
    kind = kinds.get(name)
    if kind in ('int', 'float'):
      out[name] = float(value)
    elif kind == 'bool':
      out[name] = str(value).lower() in ('true', '1')
    elif name == 'data_dir':
      out[name] = os.path.realpath(os.path.expanduser(value)) if value else None
    else:
      out[name] = value
  return _same_labels(out)


def finished_flags(rundir: str) -> dict[str, object] | None:
  """Canonical flags of a finished run from its RUNDIR/flags.cfg; None if unknown."""
  if not os.path.exists(os.path.join(rundir, RESULTS)):
    return None
  try:
    return canonical_flags(dict(read_flagfile(os.path.join(rundir, FLAGS_CFG), extra=True)))
  except (OSError, SweepError):
    return None


def find_same_run(job: Job, logdir: str) -> str | None:
  """A finished run under `logdir` with the same canonical flags as `job`, if any."""
  want = canonical_flags(job.flags)
  for root, dirs, files in os.walk(logdir):
    dirs[:] = sorted(d for d in dirs if d != 'checkpoints')
    if (RESULTS in files and os.path.abspath(root) != os.path.abspath(job.rundir) and
        REUSED not in files and finished_flags(root) == want):
      return root
  return None


def copy_run(source: str, rundir: str) -> None:
  """Copies a finished run's outputs (not checkpoints/, lock or log) into rundir."""
  for root, dirs, files in os.walk(source):
    dirs[:] = [d for d in dirs if d != 'checkpoints']
    target = os.path.join(rundir, os.path.relpath(root, source))
    os.makedirs(target, exist_ok=True)
    for name in files:
      if name not in (LOCK, LOG, FAILED):
        shutil.copy2(os.path.join(root, name), os.path.join(target, name))


def completed_epochs(rundir: str) -> int:
  """Rows of RUNDIR/metrics.csv (completed epochs), 0 if none."""
  try:
    with open(os.path.join(rundir, METRICS), newline='') as f:
      return sum(1 for _ in csv.DictReader(f))
  except OSError:
    return 0


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


def _try_lock(f: IO[str], attempts: int = 10) -> bool:
  """Takes an exclusive lock on f, retrying briefly past a reader's probe."""
  for attempt in range(attempts):
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return True
    except OSError:
      if attempt + 1 < attempts:
        time.sleep(0.05)
  return False


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError:
    return ''


def _diverged_line(rundir: str) -> str | None:
  """failed.txt's first line if it is the binary's `diverged at epoch E, step S`."""
  try:
    with open(os.path.join(rundir, FAILED), errors='replace') as f:
      first = f.readline().strip()
  except OSError:
    return None
  return first if first.startswith(DIVERGED) else None


def _last_line(text: str) -> str:
  lines = [l for l in text.splitlines() if l.strip()]
  return lines[-1].strip() if lines else ''


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  return f'{seconds // 60}m{seconds % 60:02d}s'


class Sweep:
  """Runs jobs N at a time and reports progress."""

  def __init__(self,
               jobs: list[Job],
               parallel: int,
               progress_seconds: float,
               out: IO[str] | None = None,
               reuse_root: str | None = None):
    self.jobs = jobs
    self.reuse_root = reuse_root  # where to look for finished identical runs
    self.parallel = parallel
    self.progress_seconds = progress_seconds
    self.out = out or sys.stdout
    self._print_lock = threading.Lock()
    self._procs: dict[str, subprocess.Popen] = {}
    self._stopping = False

  def say(self, message: str) -> None:
    stamp = datetime.datetime.now().strftime('%H:%M:%S')
    with self._print_lock:
      print(f'[{stamp}] {message}', file=self.out, flush=True)

  def _counts(self) -> str:
    states = [j.state for j in self.jobs]
    ended = sum(
        s in ('done', 'finished', 'reused', 'failed', 'conflict', 'skipped') for s in states)
    return (f'{ended}/{len(states)} ended, {states.count("running")} running, '
            f'{states.count("failed")} failed')

  def run_one(self, job: Job) -> None:
    """Runs one job to its end; records failure in RUNDIR/failed.txt."""
    if self._stopping:
      return
    os.makedirs(job.rundir, exist_ok=True)
    with open(os.path.join(job.rundir, LOCK), 'a') as lock:
      if not _try_lock(lock):
        job.state, job.detail = 'skipped', 'another sweep is running it'
        self.say(f'skip     {job.name}: {job.detail}')
        return
      if os.path.exists(os.path.join(job.rundir, RESULTS)):  # finished meanwhile
        job.state, job.detail = 'done', 'finished by another sweep'
        return
      source = find_same_run(job, self.reuse_root) if self.reuse_root else None
      if source:
        self._reuse(job, source)
        return
      epochs = completed_epochs(job.rundir)
      retry = os.path.exists(os.path.join(job.rundir, FAILED))
      if retry:
        os.remove(os.path.join(job.rundir, FAILED))
      how = ('retry after failure, ' if retry else '') + (f'resume after epoch {epochs}'
                                                          if epochs else 'new')
      job.state, job.started = 'running', time.time()
      self.say(f'start    {job.name} ({how}) [{self._counts()}]')
      log_path = os.path.join(job.rundir, LOG)
      with open(log_path, 'a') as log:
        log.write(f'\n=== run_sweep {datetime.datetime.now().isoformat(timespec="seconds")}: '
                  f'{shlex.join(job.command)}\n')
        log.flush()
        try:
          proc = subprocess.Popen(job.command,
                                  stdout=log,
                                  stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        except OSError as e:
          code, proc = None, None
          log.write(f'cannot start the training command: {e}\n')
        if proc is not None:
          self._procs[job.name] = proc
          code = proc.wait()
          self._procs.pop(job.name, None)
      took = _duration(time.time() - job.started)
      if self._stopping:
        job.state, job.detail = 'pending', 'interrupted'
        return
      if code == 0 and os.path.exists(os.path.join(job.rundir, RESULTS)):
        job.state, job.detail = 'finished', self._result_summary(job.rundir)
        self.say(f'finished {job.name} in {took}: {job.detail} [{self._counts()}]')
        return
      tail = _tail(log_path)
      why = (f'exit code {code}' if code != 0 else 'exit code 0 but no results.json'
            ) if code is not None else 'the training command could not start'
      diverged = _diverged_line(job.rundir)  # the binary's own failed.txt, if it says so
      if diverged:
        why = f'{diverged}\n{why}'
      with open(os.path.join(job.rundir, FAILED), 'w') as f:
        f.write(f'{why}\ncommand: {shlex.join(job.command)}\n'
                f'--- last lines of {LOG} ---\n{tail}')
      job.state, job.detail = 'failed', (diverged or f'{why}: {_last_line(tail)}')
      self.say(f'FAILED   {job.name} after {took}: {job.detail} [{self._counts()}]')

  def _reuse(self, job: Job, source: str) -> None:
    """Copies a finished run with the same canonical flags instead of training."""
    rel = os.path.relpath(source, self.reuse_root)
    for stale in (METRICS, FAILED):  # an interrupted or failed attempt of this run
      if os.path.exists(os.path.join(job.rundir, stale)):
        os.remove(os.path.join(job.rundir, stale))
    copy_run(source, job.rundir)
    with open(os.path.join(job.rundir, REUSED), 'w') as f:
      f.write(f'{rel}\n')
    with open(os.path.join(job.rundir, LOG), 'a') as log:
      log.write(f'\n=== run_sweep {datetime.datetime.now().isoformat(timespec="seconds")}: '
                f'same flags as the finished run {rel}: copied its outputs instead of '
                f'training again (--no_reuse trains anyway)\n')
    job.state = 'reused'
    job.detail = f'same flags as {rel}: {self._result_summary(job.rundir)}'
    self.say(f'reused   {job.name}: {job.detail} [{self._counts()}]')

  @staticmethod
  def _result_summary(rundir: str) -> str:
    try:
      with open(os.path.join(rundir, RESULTS)) as f:
        r = json.load(f)
      return (f'train {100 * r["train_accuracy"]:.2f}%, test {100 * r["test_accuracy"]:.2f}%, '
              f'{r.get("epochs_completed", "?")} epochs')
    except (OSError, ValueError, KeyError, TypeError):
      return 'results.json unreadable'

  def progress(self) -> None:
    """One line per running job: completed epochs of the target, time so far."""
    for job in self.jobs:
      if job.state == 'running':
        done = completed_epochs(job.rundir)
        self.say(f'progress {job.name}: epoch {done}/{job.flags.get("epochs", "?")}, '
                 f'{_duration(time.time() - job.started)}')

  def run(self) -> None:
    todo = [j for j in self.jobs if j.state == 'pending']
    with concurrent.futures.ThreadPoolExecutor(max_workers=self.parallel) as pool:
      futures = [pool.submit(self.run_one, j) for j in todo]
      try:
        pending = set(futures)
        while pending:
          _, pending = concurrent.futures.wait(pending, timeout=self.progress_seconds)
          if pending:
            self.progress()
        for f in futures:
          f.result()
      except KeyboardInterrupt:
        self._stopping = True
        for f in futures:
          f.cancel()
        for proc in list(self._procs.values()):
          proc.terminate()
        for proc in list(self._procs.values()):
          try:
            proc.wait(timeout=30)
          except subprocess.TimeoutExpired:
            proc.kill()
        raise


def train_command() -> list[str]:
  """The training command: $RETHINKING_TRAIN_CMD or this python -m rethinking_tf.train."""
  env = os.environ.get('RETHINKING_TRAIN_CMD')
  return shlex.split(env) if env else [sys.executable, '-m', 'rethinking_tf.train']


def build_jobs(flagfiles: Sequence[str],
               logdir: str,
               sets: Sequence[str],
               base_command: Sequence[str],
               flags_root: str | None = None) -> list[Job]:
  """One Job per distinct flagfile, with the --set overrides applied."""
  overrides = []
  for s in sets:
    pair = parse_flag('--' + s.lstrip('-'), extra=True)
    if pair[0] in RUNNER_FLAGS:
      raise SweepError(f'--set {s}: the runner sets --{pair[0]} itself')
    overrides.append(pair)
  jobs, seen = [], {}
  for flagfile in flagfiles:
    if not os.path.isfile(flagfile):
      raise SweepError(f'{flagfile}: no such flagfile')
    name = run_name(flagfile, flags_root)
    if name in seen:
      if os.path.abspath(seen[name]) != os.path.abspath(flagfile):
        raise SweepError(f'{flagfile} and {seen[name]} would share run directory {name}')
      continue
    seen[name] = flagfile
    values = dict(read_flagfile(flagfile))
    values.update(overrides)
    rundir = os.path.join(os.path.abspath(logdir), name)
    command = list(base_command) + [f'--flagfile={os.path.abspath(flagfile)}']
    command += [f'--{k}={v}' for k, v in overrides]
    command.append(f'--logdir={rundir}')
    jobs.append(Job(flagfile, name, rundir, values, command))
  return jobs


def classify(jobs: list[Job], skip_failed: bool) -> None:
  """Marks finished, conflicting and (optionally) failed runs before the sweep."""
  for job in jobs:
    if os.path.exists(os.path.join(job.rundir, RESULTS)):
      bad = job.conflicts()
      if bad:
        job.state = 'conflict'
        job.detail = ('finished with other flags: ' + '; '.join(bad) +
                      ' (use another --logdir, or delete the run directory)')
      else:
        job.state, job.detail = 'done', 'already finished'
    elif skip_failed and os.path.exists(os.path.join(job.rundir, FAILED)):
      job.state = 'failed'
      job.detail = 'earlier failure, not retried (--skip_failed): ' + (_diverged_line(
          job.rundir) or _last_line(_tail(os.path.join(job.rundir, FAILED), 100).split('---')[0]))


def report(jobs: list[Job], out: IO[str]) -> int:
  """Prints the end-of-sweep summary; returns the exit code (1 if any failed)."""
  count = lambda *states: sum(j.state in states for j in jobs)
  print(
      f'\nSweep: {len(jobs)} runs: {count("finished")} finished now, '
      f'{count("reused")} copied from identical runs, '
      f'{count("done")} already finished, {count("failed")} failed, '
      f'{count("conflict")} conflicting, {count("skipped", "pending")} not run.',
      file=out)
  for job in jobs:
    if job.state in ('failed', 'conflict', 'skipped', 'pending', 'reused'):
      log = os.path.join(job.rundir, LOG)
      print(f'  {job.state.upper():9s}{job.name}: {job.detail or "not started"}' +
            (f'\n           log: {log}' if job.state == 'failed' else ''),
            file=out)
  return 1 if count('failed', 'conflict') else 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """The tool's flags; a bad one is one `error:` line and exit 2."""
  parser = arguments.ArgumentParser(
      description='Run flagfiles as training runs under --logdir, N at a time.')
  parser.add_argument('flagfiles', nargs='+', metavar='FLAGFILE')
  parser.add_argument('--logdir',
                      required=True,
                      help='Root of the run directories (DIR/<flagfile under flags/>).')
  parser.add_argument('--parallel',
                      type=int,
                      default=1,
                      help='Runs at a time (default 1; each run uses all cores it gets).')
  parser.add_argument('--set',
                      action='append',
                      default=[],
                      metavar='FLAG=VALUE',
                      help='Override for every run, e.g. --set train_size=5000 '
                      '(bools: --set nobatch_norm or --set batch_norm=false). Repeatable.')
  parser.add_argument('--skip_failed',
                      action='store_true',
                      help='Do not retry runs that hold failed.txt.')
  parser.add_argument('--no_reuse',
                      action='store_true',
                      help='Train every run, even when a finished run under --logdir '
                      'has the same resolved flags (by default its outputs are copied).')
  parser.add_argument('--dry_run', action='store_true', help='Print what would run and exit.')
  parser.add_argument('--progress_seconds',
                      type=float,
                      default=60.0,
                      help='Seconds between progress lines (default 60).')
  parser.add_argument('--flags_root',
                      default=None,
                      help='Directory the run names are relative to (default: the '
                      'nearest enclosing directory named flags/).')
  parser.add_argument('--train_cmd', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.parallel < 1:
    arguments.fail(f'--parallel={args.parallel}; allowed: 1 or more')
  if args.progress_seconds <= 0:
    arguments.fail(f'--progress_seconds={args.progress_seconds:g}; allowed: more than 0')
  error = arguments.writable_dir_error('--logdir', args.logdir)
  if error:
    arguments.fail(error)
  return args


def _interrupt(signum: int, frame) -> None:  # pylint: disable=unused-argument
  raise KeyboardInterrupt(f'signal {signum}')


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the sweep; returns the exit code (1 if any run failed)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  base = shlex.split(args.train_cmd) if args.train_cmd else train_command()
  try:
    jobs = build_jobs(args.flagfiles, args.logdir, args.set, base, args.flags_root)
  except SweepError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  classify(jobs, args.skip_failed)
  todo = [j for j in jobs if j.state == 'pending']
  print(
      f'Sweep of {len(jobs)} runs under {os.path.abspath(args.logdir)}: {len(todo)} to run, '
      f'{len(jobs) - len(todo)} not ({sum(j.state == "done" for j in jobs)} already '
      f'finished), {args.parallel} at a time.',
      flush=True)
  if args.dry_run:
    root = None if args.no_reuse else os.path.abspath(args.logdir)
    for job in jobs:
      source = find_same_run(job, root) if root and job.state == 'pending' else None
      if source:
        print(f'  reuse    {job.name}: copy {os.path.relpath(source, root)} (same flags)')
      else:
        print(f'  {job.state:8s} {job.name}: ' +
              (shlex.join(job.command) if job.state == 'pending' else job.detail))
    return 0
  sweep = Sweep(jobs,
                args.parallel,
                args.progress_seconds,
                reuse_root=None if args.no_reuse else os.path.abspath(args.logdir))
  in_main = threading.current_thread() is threading.main_thread()
  previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
  try:
    sweep.run()
  except KeyboardInterrupt:
    print('\nInterrupted: run the same command again to resume the unfinished runs.',
          file=sys.stderr)
    report(jobs, sys.stdout)
    return 130
  finally:
    if in_main:
      signal.signal(signal.SIGTERM, previous)  # SIGTERM stops the runs as Ctrl-C does
  return report(jobs, sys.stdout)


if __name__ == '__main__':
  sys.exit(main())
