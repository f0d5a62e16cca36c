"""The sweep: one job per flagfile, run N at a time (see tools/run_sweep.py).

A finished run is skipped (a conflict if its flags differ), an identical
finished run elsewhere under --logdir is copied instead of trained again,
an unfinished one is resumed, a failed one retried unless asked not to.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import IO
from collections.abc import Sequence

from rethinking_tf.sweep.flagfiles import (COSMETIC_FLAGS, DEFAULTS, DIVERGED, RUNNER_FLAGS,
                                           SweepError, canonical_flags, parse_flag, read_flagfile,
                                           run_name, same_labels, same_value)
from rethinking_tf.sweep.lock import LOCK, try_lock
from rethinking_tf.training import rundir as rundir_lib

RESULTS, FAILED, METRICS, FLAGS_CFG = (rundir_lib.RESULTS, rundir_lib.FAILED, rundir_lib.METRICS,
                                       rundir_lib.FLAGS_CFG)
LOG, REUSED = 'train.log', 'reused_from.txt'


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
    want = same_labels({**DEFAULTS, **self.flags})
    config = same_labels(config)
    return [
        f'--{k}={v} (ran with {config[k]!r})' for k, v in want.items()
        if k in config and k not in COSMETIC_FLAGS and not same_value(k, v, config[k])
    ]


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
  return len(rundir_lib.read_metrics(os.path.join(rundir, METRICS)))


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
      if not try_lock(lock):
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
