"""The training binary's flag contract and flagfiles (no TensorFlow).

The contract is read from the binary's own absl definitions
(`rethinking_tf.train.define_flags` onto a fresh `FlagValues`), so it is
declared once: `TRAIN_FLAGS` (name -> kind: bool, int, float, enum or str)
are the flags a flagfile may set, `EXTRA_FLAGS` those only `--set` and a
run's resolved flags.cfg carry, `BINARY_DEFAULTS` the binary's defaults. A
bool flag is written --name or --noname.
"""

from __future__ import annotations

import os

from absl import flags

from rethinking_tf import train

# Flags of the binary beyond the contract: fine for --set, not in flagfiles.
_EXTRA_NAMES = ('bn_momentum', 'momentum', 'num_cpu_devices', 'steps_per_execution', 'quiet',
                'test_size', 'precision')
# Flags a flagfile may leave out, to tell a finished run made with other values
# (e.g. an earlier --set train_size=5000) from a match.
_DEFAULT_NAMES = ('train_size', 'labels', 'corrupt_prob', 'inputs', 'seed', 'batch_norm',
                  'weight_decay', 'dropout', 'early_stopping_patience', 'lr_decay',
                  'lr_decay_steps', 'batch_size', 'fit_threshold', 'stop_on_fit', 'test_size',
                  'eval_every_epochs')
# Flags that do not change what a run computes (steps_per_execution: a test
# checks equal metrics; image_cache: tests check equal arrays and metrics).
COSMETIC_FLAGS = ('quiet', 'steps_per_execution', 'image_cache')
# Flags a flagfile or --set may not carry: the runner owns them.
RUNNER_FLAGS = ('logdir', 'overwrite')


def binary_flags() -> dict[str, flags.Flag]:
  """The training binary's flags by name, defined onto a fresh FlagValues."""
  values = flags.FlagValues()
  train.define_flags(values)
  return {name: values[name] for name in values}


def _kind(flag: flags.Flag) -> str:
  """'bool', 'enum', 'int', 'float' or 'str': how a flagfile value is checked."""
  if isinstance(flag, flags.BooleanFlag):
    return 'bool'
  if isinstance(flag, flags.EnumFlag):
    return 'enum'
  if isinstance(flag.parser, flags.IntegerParser):
    return 'int'
  if isinstance(flag.parser, flags.FloatParser):
    return 'float'
  return 'str'


def _text(value: object) -> str:
  """A default as a flagfile writes it (bools as true / false)."""
  return str(value).lower() if isinstance(value, bool) else str(value)


_BINARY = binary_flags()
TRAIN_FLAGS: dict[str, str] = {n: _kind(f) for n, f in _BINARY.items() if n not in _EXTRA_NAMES}
EXTRA_FLAGS: dict[str, str] = {n: _kind(_BINARY[n]) for n in _EXTRA_NAMES}
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    n: tuple(f.parser.enum_values) for n, f in _BINARY.items() if isinstance(f, flags.EnumFlag)
}
# The binary's default for every flag it writes to RUNDIR/flags.cfg, to
# resolve a job's flags fully.
BINARY_DEFAULTS: dict[str, str] = {
    n: _text(f.default)
    for n, f in _BINARY.items()
    if n not in RUNNER_FLAGS and f.default is not None
}
DEFAULTS: dict[str, str] = {n: BINARY_DEFAULTS[n] for n in _DEFAULT_NAMES}

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


def same_value(name: str, want: str, got: object) -> bool:
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


def same_labels(values: dict) -> dict:
  """`labels=corrupted` with p = 0 or 1 written as `labels=true` / `random`.

  randomize.label_tables redraws a label when u < p for u in [0, 1), so p = 0
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
  `--labels=true` or `--labels=random` (`same_labels`).
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
  return same_labels(out)
