"""Flags shared by the command-line binaries, and how every binary starts.

Only binaries import this module; the library never reads FLAGS. Nothing
here imports TensorFlow: a binary checks all its flags first, so that a bad
value costs a second, not a TensorFlow start-up. Each binary

* calls `define_data_flags()` (if it reads data) and `run(main)` instead of
  `app.run(main)`: absl's own flag errors (unknown flag, missing flagfile,
  a value out of bounds) become one line `error: ...` and exit 2, like the
  binary's own checks (`fail`), and --help lists the binary's flags
  including the data flags;
* in `main`, turns the data flags into plain values with `data_args()`
  (which checks that the data set exists, without reading it), checks an
  output directory with `check_logdir()` (without creating it), and only
  then calls `import_tensorflow()` and the library.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import tempfile
import time
import types
from typing import Any
from collections.abc import Callable

from absl import app
from absl import flags

from rethinking_tf import native_stderr
from rethinking_tf import registry
from rethinking_tf.data import sources
from rethinking_tf.training import startup


def define_data_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The data-set and randomization flags (paper section 2.1), onto `flag_values`."""
  flags.DEFINE_enum('dataset',
                    'cifar10',
                    list(registry.DATASET_INFO),
                    'Data set: ' +
                    '; '.join(f'{k}: {i.description}' for k, i in registry.DATASET_INFO.items()),
                    flag_values=flag_values)
  flags.DEFINE_string('data_dir',
                      None,
                      'tensorflow-datasets data_dir, or the root of an image_folder tree.',
                      flag_values=flag_values)
  flags.DEFINE_integer('train_size',
                       0, 'If > 0, a deterministic class-balanced '
                       'subset of this many training examples.',
                       lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_enum('labels',
                    'true',
                    list(registry.LABEL_MODES),
                    'Training labels: true, corrupted (with --corrupt_prob) or random.',
                    flag_values=flag_values)
  flags.DEFINE_float('corrupt_prob',
                     0.0, 'Probability that a training label is '
                     'replaced by a uniformly random class (--labels=corrupted).',
                     flag_values=flag_values)
  flags.DEFINE_enum('inputs',
                    'original',
                    list(registry.INPUT_MODES),
                    'Training inputs: original, shuffled_pixels, random_pixels, gaussian.',
                    flag_values=flag_values)
  flags.DEFINE_integer('seed',
                       0, 'Seed of every randomization, the shuffle order '
                       'and the initial weights.',
                       flag_values=flag_values)
  flags.DEFINE_bool('image_cache',
                    True, 'Cache the decoded arrays of an image_folder '
                    'data set under $XDG_CACHE_HOME/rethinking_tf (default '
                    '~/.cache/rethinking_tf); --noimage_cache decodes the images on '
                    'every run.',
                    flag_values=flag_values)


def fail(message: str, code: int = 2) -> None:
  """Exits with one line naming what is wrong and what is allowed."""
  print(f'error: {" ".join(message.split())}', file=sys.stderr)
  sys.exit(code)


# ---------------------------------------------------------------------------
# Starting a binary.


def _allowed(flag: flags.Flag) -> str:
  """What a flag accepts, in absl's words ('a positive integer', ...)."""
  if isinstance(flag, flags.BooleanFlag):
    return f'--{flag.name}, --no{flag.name} or --{flag.name}=true|false'
  values = getattr(flag.parser, 'enum_values', None)
  if values:
    return f'one of <{"|".join(values)}>'
  return flag.parser.syntactic_help


def flag_error_message(error: flags.Error) -> str:
  """absl's parse error as one line naming the flag and what it allows."""
  text = ' '.join(str(error).split())
  if isinstance(error, flags.UnrecognizedFlagError):
    hint = re.search(r'Did you mean: (.*) \?', text)
    hint = ('; did you mean ' + ' or '.join(f'--{s.strip()}' for s in hint[1].split(',')) +
            '?') if hint else ''
    return f'unknown flag --{error.flagname}{hint}; allowed: the flags that --help lists'
  if isinstance(error, flags.CantOpenFlagFileError):
    found = re.search(r"Unable to open flagfile: (?:\[Errno \d+\] )?(.*): '(.*)'$", text)
    if found:
      return (f'--flagfile={found[2]} cannot be read ({found[1]}); allowed: a '
              'readable file of --name=value lines')
    return re.sub(r'^ERROR:+\s*', '', text)
  text = re.sub(r'^(ERROR:+|Error:)\s*', '', text)
  found = re.match(r'^flag --(\w+)=(.*?): (.*)$', text)
  if found and found[1] in flags.FLAGS:
    flag = flags.FLAGS[found[1]]
    reason = 'not a boolean' if isinstance(flag, flags.BooleanFlag) else found[3]
    text = f'--{found[1]}={found[2]}: {reason}'
  else:
    named = re.search(r'--(\w+)', text)
    flag = flags.FLAGS[named[1]] if named and named[1] in flags.FLAGS else None
  allowed = _allowed(flag) if flag is not None else ''
  if allowed and allowed not in text:
    text += f'; allowed: {allowed}'
  return text


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every error as one `error:` line and exit 2."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(flag_error_message(e))
  if len(rest) > 1:
    fail(f'unexpected arguments {rest[1:]}; flags look like --name=value')
  return rest


def run(main: Callable[[list[str]], Any], module: Any = None) -> None:
  """`app.run(main)` with `parse_flags`; --help shows the flags key to `module`
  (the binary's, which adopts the data flags) whatever the program is called."""
  program = sys.argv[0]
  for source in (module, sys.modules[__name__]):
    if source is not None:
      for flag in flags.FLAGS.get_key_flags_for_module(source):
        flags.FLAGS.register_key_flag_for_module(program, flag)

  def main_then_freeze(argv: list[str]) -> Any:
    # Once main is done, move every object to the permanent generation: the
    # interpreter's collections at exit then skip TensorFlow's module graph,
    # which otherwise costs seconds after the last line is printed.
    try:
      return main(argv)
    finally:
      gc.freeze()

  app.run(main_then_freeze, flags_parser=parse_flags)


# ---------------------------------------------------------------------------
# Checks that touch no data and create nothing.


def data_args(FLAGS: flags.FlagValues) -> dict[str, Any]:  # noqa: N803  # pylint: disable=invalid-name
  """Validates the data flags (without reading data) and returns plain values."""
  if not 0.0 <= FLAGS.corrupt_prob <= 1.0:
    fail(f'--corrupt_prob={FLAGS.corrupt_prob} is outside [0, 1]; allowed: a '
         'probability in [0, 1]')
  if FLAGS.labels != 'corrupted' and FLAGS.corrupt_prob not in (0.0,):
    fail(f'--corrupt_prob={FLAGS.corrupt_prob} needs --labels=corrupted '
         f'(got --labels={FLAGS.labels}); allowed: --corrupt_prob=0 with '
         f'--labels={FLAGS.labels}')
  data_dir = os.path.expanduser(FLAGS.data_dir) if FLAGS.data_dir else None
  try:
    num_train, _ = sources.check_available(FLAGS.dataset, data_dir)
  except sources.DataError as e:
    fail(str(e))
  if FLAGS.train_size > num_train:
    fail(f'--train_size={FLAGS.train_size} exceeds the {num_train} training '
         f'examples of --dataset={FLAGS.dataset}; allowed: 0 (all) to {num_train}')
  return dict(dataset=FLAGS.dataset,
              data_dir=data_dir,
              train_size=FLAGS.train_size or None,
              randomization=registry.Randomization(labels=FLAGS.labels,
                                                   corrupt_prob=FLAGS.corrupt_prob,
                                                   inputs=FLAGS.inputs,
                                                   seed=FLAGS.seed),
              image_cache=FLAGS.image_cache)


def check_logdir(logdir: str | None, flag: str = '--logdir') -> str:
  """The absolute output directory, if it exists or can be made; creates nothing.

  Writability is tested on the directory itself or, when it does not exist
  yet, on its nearest existing ancestor (by an unnamed temporary file).
  Create it with `make_logdir` once every other check has passed.
  """
  if not logdir:
    fail(f'{flag} is required (a directory for this run\'s outputs)')
  path = os.path.abspath(os.path.expanduser(logdir))
  existing = path
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    fail(f'{flag}={path} is not writable ({existing} is not a directory); '
         'allowed: a directory you can write, or a new one under such a directory')
  try:
    tempfile.TemporaryFile(dir=existing).close()
  except OSError as e:
    fail(f'{flag}={path} is not writable (a file in {existing}: {e.strerror}); '
         'allowed: a directory you can write, or a new one under such a directory')
  return path


def make_logdir(path: str, flag: str = '--logdir') -> None:
  """Creates an output directory that `check_logdir` accepted."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    fail(f'{flag}={path} cannot be created ({e.strerror})')


def gpu_driver_loaded() -> bool:
  """Whether an NVIDIA kernel driver is loaded (else TensorFlow finds no GPU)."""
  return os.path.exists('/proc/driver/nvidia/version')


def replicas_without_tf(strategy: str, num_cpu_devices: int) -> int | None:
  """The replicas `training.distribute.make_strategy` will make, when known before
  TensorFlow starts: 1 for `default`, the logical CPUs for `mirrored` on a
  machine without a GPU driver; None (ask TensorFlow) otherwise."""
  if strategy == 'default':
    return 1
  if strategy == 'mirrored' and not gpu_driver_loaded():
    return num_cpu_devices
  return None


def check_batch_split(batch_size: int, replicas: int) -> None:
  """Fails unless the global batch splits evenly over the replicas."""
  if batch_size % replicas:
    fail(f'--batch_size={batch_size} is not divisible by the {replicas} replicas; the '
         f'global batch is split evenly over replicas; allowed: a multiple of {replicas}')


# ---------------------------------------------------------------------------
# TensorFlow, once the flags are good.

_GLOG_LINE = re.compile(r'^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.-]+):\d+\] (.*)$')
_BEFORE_INIT = ('WARNING: All log messages before absl::InitializeLog() is called '
                'are written to STDERR')


def _keep_line(line: str, min_level: int, previous_dropped: bool) -> bool:
  """Whether a line TensorFlow printed while starting should be shown."""
  if line.strip() == _BEFORE_INIT:
    return min_level < 1
  match = _GLOG_LINE.match(line)
  if match:
    level = 'IWEF'.index(match[1])
    if level < min_level:
      return False
    return not ('failed call to cuInit' in match[3] and min_level >= 1 and not gpu_driver_loaded())
  # The second line of cpu_feature_guard's notice ("To enable the following
  # instructions: AVX2 ... rebuild TensorFlow ...").
  return not (previous_dropped and line.startswith('To enable the following instructions'))


def filter_startup_lines(text: str, min_level: int) -> str:
  """`text` without the start-up lines that TF_CPP_MIN_LOG_LEVEL=`min_level`
  asks to hide (see `import_tensorflow`)."""
  kept, dropped = [], False
  for line in text.splitlines(keepends=True):
    keep = _keep_line(line.rstrip('\n'), min_level, dropped)
    dropped = not keep
    if keep:
      kept.append(line)
  return ''.join(kept)


def import_tensorflow() -> types.ModuleType:
  """Imports TensorFlow and finds its devices, without its CPU-only probe lines.

  On a machine without a GPU, the `tensorflow` wheel prints, at import,
  `Could not find cuda drivers on your machine, GPU will not be used` and
  `oneDNN custom operations are on` (twice, once per shared library, each
  after `WARNING: All log messages before absl::InitializeLog() ...`), and,
  when it first lists devices, `failed call to cuInit: ... UNKNOWN ERROR
  (303)`. The import-time lines come from absl's C++ logging before it is
  initialized, which ignores TF_CPP_MIN_LOG_LEVEL (set to 2 by
  rethinking_tf/__init__.py); CUDA_VISIBLE_DEVICES='' silences none of them
  (measured with TensorFlow 2.21). So the import and the device listing run
  with file descriptor 2 captured, and the captured lines are printed again
  except those TF_CPP_MIN_LOG_LEVEL hides once logging is initialized (1:
  info, 2: and warnings; `WARNING: All log messages ...` goes with them)
  and, on a machine without an NVIDIA driver (/proc/driver/nvidia), the
  cuInit error, which then only says that there is no GPU. Every other line
  (a real error, a Python warning) is shown. TF_CPP_MIN_LOG_LEVEL=0 shows
  all of them. The import's seconds go to the first run's start-up record
  (`training.startup`).
  """
  if 'tensorflow' in sys.modules:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf
  try:
    min_level = int(os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0'))
  except ValueError:
    min_level = 0
  start, collecting = time.perf_counter(), gc.isenabled()
  # TensorFlow's import makes some 700,000 objects and few cycles: the
  # collector's passes over them cost about half a second. Once imported,
  # they move to the permanent generation, which later passes skip.
  gc.disable()
  try:
    with native_stderr.filtered(lambda text: filter_startup_lines(text, min_level)):
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()
  finally:
    gc.freeze()
    if collecting:
      gc.enable()
  startup.note_tensorflow_import(time.perf_counter() - start)
  return tf
