"""How long a run took to start training, phase by phase (results.json's `startup`).

Written by `trainer.run` into results.json and, when the run is verbose,
printed as one line once the first training call has returned (before the
first epoch line). Seconds of each phase, in the order they run:

* `tensorflow_import_seconds`: importing TensorFlow and finding its devices
  (`cli.import_tensorflow`; only in the first run of a binary's process);
* `data_seconds`: checking and loading the data set (`data_from` says how:
  `image cache`, `decoded`, ...) and the label randomization;
* `preprocess_seconds`: the channel statistics, the input randomization and
  the in-memory tables the training pipelines gather from
  (`pipeline.make_pipelines`);
* `model_seconds`: the model, optimizer, loop, evaluation datasets and
  checkpoint (`Trainer.build`);
* `first_train_call_seconds`: from there to the end of the first training
  call: the checkpoint restore, the initial weights, the training iterator,
  tracing the train function and running its steps (up to the global step
  `first_train_call_step`);
* `run_seconds`: from the start of the run's set-up (once its logdir is
  claimed) to the end of the first training call: the sum of the phases
  above but the import;
* `process_seconds`: the process's age at the end of the first training call
  (with `tensorflow_import_seconds`, on Linux), which also counts the
  interpreter's start and the flag checks;
* `test_preprocess_seconds` (in-memory data sets): the test set's
  standardized copy, made at the run's first evaluation
  (`pipeline.DeferredTestPipelines`), so after the start-up and outside
  `run_seconds` and the line; except in a run resumed where an epoch is
  evaluated again before training, inside `first_train_call_seconds`.

A run resumed after its last epoch trains nothing and has no first call.
Nothing here imports TensorFlow: `cli` notes the import's time before it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from rethinking_tf.data import loaders

# Phases that happen after the first training call, read at the end of the run.
LATER = ('test_preprocess_seconds',)
_IMPORT: list[float] = []  # The import's seconds, until the first run takes them.


def note_tensorflow_import(seconds: float) -> None:
  """Called by the binaries once TensorFlow is imported (`cli.import_tensorflow`)."""
  _IMPORT[:] = [seconds]


def process_age() -> float | None:
  """Seconds since this process started (Linux /proc), None where unknown."""
  try:
    with open('/proc/self/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    ticks = int(fields[19])  # starttime, the 22nd field, in clock ticks since boot
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError, AttributeError):
    return None


class Clock:
  """The start-up phases of one run (see the module doc)."""

  def __init__(self, verbose: bool):
    self.verbose = verbose
    self.start = self.mark = time.perf_counter()
    self.record: dict[str, Any] = {}
    self._pipelines: dict[str, Any] = {}  # pipelines.startup, written to later too
    if _IMPORT:
      self.record['tensorflow_import_seconds'] = _IMPORT.pop()

  def phase(self, name: str) -> None:
    """Ends phase `name` (`<name>_seconds`), which began where the last ended."""
    now = time.perf_counter()
    self.record[f'{name}_seconds'] = now - self.mark
    self.mark = now

  def pipelines(self, pipelines: loaders.Pipelines) -> loaders.Pipelines:
    """Ends the data and preprocessing phases, which `pipelines` (the
    `loaders.Pipelines` just made) measured: what precedes preprocessing
    counts as data. Returns `pipelines`."""
    now = time.perf_counter()
    self._pipelines = pipelines.startup
    self.record.update(pipelines.startup)
    self.record['data_seconds'] = now - self.mark - pipelines.startup.get('preprocess_seconds', 0.0)
    self.mark = now
    return pipelines

  def final(self) -> dict[str, Any]:
    """The record, with the phases measured after the start-up (`LATER`)."""
    self.record.update({k: self._pipelines[k] for k in LATER if k in self._pipelines})
    return self.record

  def first_call(self, step: int) -> None:
    """Ends the start-up at the end of the first training call (at global `step`)."""
    if 'first_train_call_seconds' in self.record:
      return
    self.phase('first_train_call')
    self.record['first_train_call_step'] = step
    self.record['run_seconds'] = self.mark - self.start
    age = process_age() if 'tensorflow_import_seconds' in self.record else None
    if age is not None:
      self.record['process_seconds'] = max(age, self.record['run_seconds'])
    if self.verbose:
      print(line(self.record), flush=True)


def line(record: dict[str, Any]) -> str:
  """The one line a verbose run prints once its first training call returned."""
  r = record
  parts = [f'TensorFlow import {r["tensorflow_import_seconds"]:.1f} s'
          ] if 'tensorflow_import_seconds' in r else []
  data = f'data {r.get("data_seconds", 0.0):.1f} s'
  parts.append(f'{data} ({r["data_from"]})' if r.get('data_from') else data)
  parts += [
      f'preprocessing {r.get("preprocess_seconds", 0.0):.1f} s',
      f'model {r.get("model_seconds", 0.0):.1f} s',
      f'first training call {r["first_train_call_seconds"]:.1f} s '
      f'(tracing, then training to step {r["first_train_call_step"]})'
  ]
  total = r.get('process_seconds')
  when = (f'{total:.1f} s after the process started'
          if total is not None else f'{r["run_seconds"]:.1f} s after the run started')
  return f'start-up: {", ".join(parts)}; training since {when}'


class FirstCallHooks:
  """Epoch hooks (`trainer.EpochHooks`) that end the clock's start-up at the
  first training call, then pass every call on to `hooks`."""

  def __init__(self, hooks: Any, clock: Clock):
    self.hooks, self.clock = hooks, clock

  def steps_done(self, epoch: int, step: int) -> None:
    """Ends the start-up (at the first call), then calls `hooks.steps_done`."""
    self.clock.first_call(step)
    self.hooks.steps_done(epoch, step)

  def __getattr__(self, name: str) -> Any:
    """Every other hook is `hooks`' own."""
    return getattr(self.hooks, name)
