"""A run's directory, written by the trainer and read by the tools (section 2).

One module for its files: `config.json` (the settings; a logdir holding one
is a run), `metrics.csv` (one row per epoch; with `eval_every_epochs` > 1 the
evaluated columns, EVAL_FIELDS, are empty in the rows of epochs without
evaluation: `evaluated` tells), `steps.csv` (one row per
`log_every_steps` steps), `initial.weights.h5` (the weights before the first
step), `results.json` (the final numbers, only for a finished run),
`failed.txt` (the error of a failed run), `flags.cfg` (the resolved
flagfile), `checkpoints/` and the event directories `train/`, `train_eval/`,
`test/`. `prepare_logdir`
claims a directory for a run, resuming an unfinished one with the same
settings.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import traceback
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
  from rethinking_tf.training.config import TrainConfig

CONFIG, METRICS, RESULTS, FAILED, FLAGS_CFG, CHECKPOINTS = ('config.json', 'metrics.csv',
                                                            'results.json', 'failed.txt',
                                                            'flags.cfg', 'checkpoints')
STEPS, INITIAL_WEIGHTS = 'steps.csv', 'initial.weights.h5'
STEPS_FIELDS = ('step', 'epoch', 'train_loss', 'train_accuracy')
_EVENT_DIRS = ('train', 'train_eval', 'test')
CSV_FIELDS = ('epoch', 'step', 'learning_rate', 'train_loss', 'train_accuracy', 'train_eval_loss',
              'train_eval_accuracy', 'test_loss', 'test_accuracy', 'seconds',
              'train_eval_top5_accuracy', 'test_top5_accuracy')
# The columns of the two evaluation passes (inference mode over the training
# set, the test set): empty in a row of an epoch that was not evaluated.
EVAL_FIELDS = ('train_eval_loss', 'train_eval_accuracy', 'test_loss', 'test_accuracy',
               'train_eval_top5_accuracy', 'test_top5_accuracy')


class RunExists(RuntimeError):
  """The logdir holds a finished run, or a run with other settings."""


def read_metrics(path: str) -> list[dict[str, Any]]:
  """metrics.csv rows with numeric values as floats (non-numbers kept as text:
  the empty cells of an epoch not evaluated are '', so readers keep floats).

  [] when the file is missing or unreadable. The tools read any metrics.csv
  so; the trainer resumes from `trainer_rows`.
  """
  rows = []
  try:
    with open(path, newline='') as f:
      for row in csv.DictReader(f):
        parsed = {}
        for key, value in row.items():
          try:
            parsed[key] = float(value)
          except (TypeError, ValueError):
            parsed[key] = value
        rows.append(parsed)
  except OSError:
    pass
  return rows


def evaluated(row: dict[str, Any]) -> bool:
  """Whether a metrics.csv row (from `read_metrics` or `trainer_rows`) holds the
  evaluation passes: its `test_accuracy` is a number."""
  return isinstance(row.get('test_accuracy'), float)


def trainer_rows(path: str) -> list[dict[str, float | None]]:
  """`read_metrics` as the trainer resumes from it: the CSV_FIELDS columns,
  epoch and step as ints, an empty cell (an epoch not evaluated) as None, a
  column the file lacks as NaN."""

  def number(key: str, value: Any) -> float | None:
    if key in ('epoch', 'step'):
      return int(value)
    if value == '':
      return None
    return value if isinstance(value, float) else float(value or 'nan')

  return [{k: number(k, row.get(k)) for k in CSV_FIELDS} for row in read_metrics(path)]


def write_metrics(path: str, rows: list[dict[str, float | None]]) -> None:
  """Writes metrics.csv atomically (a temporary file, then a rename); None as an
  empty cell."""
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


def append_steps(path: str, row: dict[str, float]) -> None:
  """Appends one steps.csv row (the header first, for a new file), in one write."""
  line = ','.join(str(row[k]) for k in STEPS_FIELDS) + '\n'
  if not os.path.exists(path):
    line = ','.join(STEPS_FIELDS) + '\n' + line
  with open(path, 'a') as f:
    f.write(line)


def read_steps(path: str) -> list[dict[str, float]]:
  """steps.csv rows with step and epoch as ints ([] when the file is missing)."""
  return [{
      k: int(r[k]) if k in ('step', 'epoch') else r[k] for k in STEPS_FIELDS
  } for r in read_metrics(path) if all(isinstance(r.get(k), float) for k in STEPS_FIELDS)]


def truncate_steps(path: str, last_step: int) -> None:
  """Drops the steps.csv rows after `last_step` (atomically; a run resuming from it)."""
  if not os.path.exists(path):
    return
  rows = [r for r in read_steps(path) if r['step'] <= last_step]
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, STEPS_FIELDS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  """Writes a JSON file (results.json, config.json) atomically."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def prepare_logdir(config: TrainConfig, flagfile: str | None) -> None:
  """Checks the logdir and claims it.

  A finished run (results.json) is never overwritten unless `overwrite`; an
  unfinished run is resumed when its recorded settings match, else refused.
  """
  os.makedirs(config.logdir, exist_ok=True)
  results = os.path.join(config.logdir, 'results.json')
  settings_path = os.path.join(config.logdir, 'config.json')
  settings = config.as_dict()
  ignore = ('overwrite', 'verbose', 'epochs', 'logdir', 'steps_per_execution', 'image_cache')
  if config.overwrite:
    for name in os.listdir(config.logdir):
      path = os.path.join(config.logdir, name)
      if name in (RESULTS, METRICS, CONFIG, FAILED, FLAGS_CFG, CHECKPOINTS, STEPS, INITIAL_WEIGHTS,
                  *_EVENT_DIRS) or name.startswith('events.out.tfevents'):
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
  elif os.path.exists(results):
    raise RunExists(f'--logdir={config.logdir} holds a finished run (results.json); '
                    'pass --overwrite to replace it or choose another --logdir')
  if os.path.exists(settings_path):
    with open(settings_path) as f:
      previous = json.load(f)
    current = json.loads(json.dumps(settings))  # As config.json stores it.
    # A setting added since the run started counts as its default.
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    previous = {
        **{
            k: v for k, v in defaults.items() if k in current and k not in previous
        },
        **previous
    }
    diff = sorted(k for k in set(previous) | set(current)
                  if k not in ignore and previous.get(k) != current.get(k))
    if diff:
      raise RunExists(f'--logdir={config.logdir} holds an unfinished run with other '
                      f'settings ({", ".join(diff)}); pass --overwrite or another --logdir')
  write_json(settings_path, settings)
  if flagfile is not None:
    with open(os.path.join(config.logdir, 'flags.cfg'), 'w') as f:
      f.write(flagfile)
  if os.path.exists(os.path.join(config.logdir, 'failed.txt')):
    os.remove(os.path.join(config.logdir, 'failed.txt'))


def write_failed(logdir: str, first: str) -> None:
  """failed.txt: `first` (the sweep runner reads this line), then the traceback of
  the exception being handled."""
  with open(os.path.join(logdir, FAILED), 'w') as f:
    f.write(f'{first}\n\n{traceback.format_exc()}')
