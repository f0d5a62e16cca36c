"""Tests of tools/run_sweep.py with a fake training binary, and of flags/**."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO, run_python

sys.path.insert(0, os.path.join(REPO, 'tools'))
import run_sweep  # noqa: E402  # pylint: disable=wrong-import-position
from rethinking_tf.sweep import flagfiles  # noqa: E402  # pylint: disable=wrong-import-position
from rethinking_tf.sweep import lock as sweep_lock  # noqa: E402  # pylint: disable=wrong-import-position

# A stand-in for `python -m rethinking_tf.train` that keeps the contract:
# --flagfile then overrides then --logdir; resumes from metrics.csv; writes
# results.json with the resolved config; exit 2 if already finished. Its
# --model picks a behaviour: fail_model exits 1, noresults exits 0 silently.
FAKE_TRAIN = textwrap.dedent('''\
    import json, os, sys, time
    flags = {}
    def take(arg):
      body = arg[2:]
      if "=" in body:
        k, v = body.split("=", 1)
      elif body.startswith("no"):
        k, v = body[2:], "false"
      else:
        k, v = body, "true"
      flags[k] = v
    for arg in sys.argv[1:]:
      if arg.startswith("--flagfile="):
        for line in open(arg.split("=", 1)[1]):
          if line.startswith("--"):
            take(line.strip())
      else:
        take(arg)
    rundir = flags["logdir"]
    os.makedirs(rundir, exist_ok=True)
    if os.path.exists(os.path.join(rundir, "results.json")):
      print("error: already finished", file=sys.stderr)
      sys.exit(2)
    metrics = os.path.join(rundir, "metrics.csv")
    done = max(0, len(open(metrics).readlines()) - 1) if os.path.exists(metrics) else 0
    t0 = time.time()
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    with open(os.path.join(rundir, "calls.jsonl"), "a") as f:
      f.write(json.dumps(dict(argv=sys.argv[1:], start_epoch=done, t0=t0,
                              t1=time.time())) + "\\n")
    print("training", rundir)
    if flags.get("model") == "fail_model":
      print("boom: out of memory", file=sys.stderr)
      sys.exit(1)
    if flags.get("model") == "noresults":
      sys.exit(0)
    if flags.get("model") == "diverge_model":  # as trainer.Diverged leaves a run
      open(metrics, "w").write("epoch,step,train_loss\\n1,10,nan\\n")
      open(os.path.join(rundir, "failed.txt"), "w").write(
          "diverged at epoch 1, step 10\\n\\nTraceback ...\\n")
      print("error: run diverged at epoch 1, step 10; metrics up to it are in x",
            file=sys.stderr)
      sys.exit(1)
    with open(metrics, "a") as f:
      if not done:
        f.write("epoch,step,learning_rate,train_loss,train_accuracy,train_eval_loss,"
                "train_eval_accuracy,test_loss,test_accuracy,seconds\\n")
      for e in range(done + 1, int(flags.get("epochs", 3)) + 1):
        f.write(f"{e},{e * 10},0.01,1.0,1.0,1.0,1.0,1.0,0.5,{e}\\n")
    config = {k: (v == "true" if v in ("true", "false") else
                  int(v) if v.isdigit() else v) for k, v in flags.items()}
    json.dump(dict(train_accuracy=1.0, test_accuracy=0.5, epochs_completed=int(
        flags.get("epochs", 3)), config=config), open(os.path.join(rundir, "results.json"), "w"))
''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
  """Installs the fake binary; returns a helper that writes flagfiles."""
  script = tmp_path / 'fake_train.py'
  script.write_text(FAKE_TRAIN)
  monkeypatch.setenv('RETHINKING_TRAIN_CMD', f'{sys.executable} {script}')
  monkeypatch.delenv('FAKE_SLEEP', raising=False)

  def flagfile(name: str, *lines: str) -> str:
    path = tmp_path / 'flags' / (name + '.cfg')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'# {name}: paper 1.0\n' + ''.join(l + '\n' for l in lines))
    return str(path)

  return flagfile


def calls(rundir: str) -> list[dict]:
  path = os.path.join(rundir, 'calls.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f]


def sweep(logdir, *args: str) -> int:
  return run_sweep.main([f'--logdir={logdir}', '--progress_seconds=0.2', *args])


def test_runs_then_skips_finished(fake, tmp_path, capsys):
  files = [
      fake('t/a', '--model=mlp_1x512', '--epochs=3'),
      fake('t/b', '--model=alexnet', '--epochs=2')
  ]
  logdir = tmp_path / 'runs'
  assert sweep(logdir, *files) == 0
  out = capsys.readouterr().out
  assert 'finished t/a' in out and 'finished t/b' in out
  for name in ('a', 'b'):
    rundir = str(logdir / 't' / name)
    assert os.path.exists(os.path.join(rundir, 'results.json'))
    assert len(calls(rundir)) == 1
    assert 'training' in open(os.path.join(rundir, 'train.log')).read()
  # A second sweep runs nothing: both are finished.
  assert sweep(logdir, *files) == 0
  out = capsys.readouterr().out
  assert '0 to run' in out and '2 already finished' in out
  assert all(len(calls(str(logdir / 't' / n))) == 1 for n in ('a', 'b'))


def test_resumes_interrupted_run(fake, tmp_path):
  f = fake('t/a', '--model=mlp_1x512', '--epochs=5')
  rundir = tmp_path / 'runs' / 't' / 'a'
  rundir.mkdir(parents=True)
  (rundir / 'metrics.csv').write_text('epoch,step\n1,10\n2,20\n')
  assert sweep(tmp_path / 'runs', f) == 0
  assert calls(str(rundir))[0]['start_epoch'] == 2
  assert len((rundir / 'metrics.csv').read_text().splitlines()) == 6


def test_failure_is_recorded_reported_and_retried(fake, tmp_path, capsys):
  bad = fake('t/bad', '--model=fail_model', '--epochs=2')
  silent = fake('t/silent', '--model=noresults', '--epochs=2')
  good = fake('t/good', '--model=mlp_1x512', '--epochs=2')
  logdir = tmp_path / 'runs'
  assert sweep(logdir, bad, silent, good) == 1
  out = capsys.readouterr().out
  assert 'FAILED   t/bad' in out and 'boom: out of memory' in out
  summary = out.split('Sweep: 3 runs:')[1]
  assert '1 finished now' in summary and '2 failed' in summary
  assert 'log: ' + str(logdir / 't' / 'bad' / 'train.log') in summary
  failed = (logdir / 't' / 'bad' / 'failed.txt').read_text()
  assert failed.startswith('exit code 1\n') and 'boom' in failed
  assert (logdir / 't' / 'silent' /
          'failed.txt').read_text().startswith('exit code 0 but no results.json')
  assert (logdir / 't' / 'good' / 'results.json').exists()
  # --skip_failed leaves failed runs alone; by default they are retried.
  assert sweep(logdir, '--skip_failed', bad, good) == 1
  assert len(calls(str(logdir / 't' / 'bad'))) == 1
  assert 'earlier failure, not retried' in capsys.readouterr().out
  assert sweep(logdir, bad, good) == 1
  assert len(calls(str(logdir / 't' / 'bad'))) == 2
  assert 'retry after failure' in capsys.readouterr().out


def test_diverged_run_is_listed_as_failed_with_where(fake, tmp_path, capsys):
  f = fake('t/nan', '--model=diverge_model', '--epochs=3')
  logdir = tmp_path / 'runs'
  assert sweep(logdir, f) == 1
  out = capsys.readouterr().out
  assert 'FAILED   t/nan after' in out and ': diverged at epoch 1, step 10 [' in out
  assert 'FAILED   t/nan: diverged at epoch 1, step 10' in out.split('Sweep: 1 runs:')[1]
  failed = (logdir / 't' / 'nan' / 'failed.txt').read_text().splitlines()
  assert failed[:2] == ['diverged at epoch 1, step 10', 'exit code 1']
  assert sweep(logdir, '--skip_failed', f) == 1
  assert 'not retried (--skip_failed): diverged at epoch 1, step 10' in capsys.readouterr().out


def test_set_overrides_every_run(fake, tmp_path):
  files = [
      fake('t/a', '--model=mlp_1x512', '--dataset=cifar10', '--batch_norm'),
      fake('t/b', '--model=inception', '--dataset=cifar10')
  ]
  logdir = tmp_path / 'runs'
  assert sweep(logdir, '--set', 'train_size=5000', '--set', 'dataset=image_folder', '--set',
               f'data_dir={tmp_path}', '--set', 'nobatch_norm', *files) == 0
  for name in ('a', 'b'):
    argv = calls(str(logdir / 't' / name))[0]['argv']
    assert argv[0].startswith('--flagfile=') and argv[-1].startswith('--logdir=')
    assert argv[1:-1] == [
        '--train_size=5000', '--dataset=image_folder', f'--data_dir={tmp_path}',
        '--batch_norm=false'
    ]
    with open(logdir / 't' / name / 'results.json') as f:
      config = json.load(f)['config']
    assert config['train_size'] == 5000 and config['dataset'] == 'image_folder'
    assert config['batch_norm'] is False


def test_finished_with_other_flags_is_a_conflict(fake, tmp_path, capsys):
  f = fake('t/a', '--model=mlp_1x512', '--epochs=2')
  logdir = tmp_path / 'runs'
  assert sweep(logdir, '--set', 'train_size=500', f) == 0
  capsys.readouterr()
  assert sweep(logdir, f) == 1  # now full size: the CPU-sized result must not count
  out = capsys.readouterr().out
  assert 'CONFLICT' in out and '--train_size=0 (ran with 500)' in out
  assert len(calls(str(logdir / 't' / 'a'))) == 1
  assert sweep(logdir, '--set', 'train_size=500', f) == 0


def test_cosmetic_flags_are_no_conflict(fake, tmp_path, capsys):
  f = fake('t/a', '--model=mlp_1x512', '--epochs=2')
  logdir = tmp_path / 'runs'
  assert sweep(logdir, '--set', 'steps_per_execution=1', f) == 0
  with open(logdir / 't' / 'a' / 'results.json') as fh:
    assert json.load(fh)['config']['steps_per_execution'] == 1
  capsys.readouterr()
  assert sweep(logdir, '--set', 'steps_per_execution=2', '--set', 'quiet=false', f) == 0
  assert 'already finished' in capsys.readouterr().out
  assert len(calls(str(logdir / 't' / 'a'))) == 1


def test_parallel_runs_overlap(fake, tmp_path, monkeypatch):
  monkeypatch.setenv('FAKE_SLEEP', '1.0')
  files = [fake(f't/r{i}', '--model=mlp_1x512', '--epochs=1') for i in range(3)]
  logdir = tmp_path / 'runs'
  assert sweep(logdir, '--parallel=3', *files) == 0
  spans = [calls(str(logdir / 't' / f'r{i}'))[0] for i in range(3)]
  assert max(s['t0'] for s in spans) < min(s['t1'] for s in spans)


def test_progress_lines(fake, tmp_path, monkeypatch, capsys):
  monkeypatch.setenv('FAKE_SLEEP', '0.8')
  f = fake('t/a', '--model=mlp_1x512', '--epochs=7')
  assert sweep(tmp_path / 'runs', f) == 0
  assert 'progress t/a: epoch 0/7' in capsys.readouterr().out


def test_sigterm_stops_runs_resumably(fake, tmp_path):
  f = fake('t/a', '--model=mlp_1x512')
  rundir = tmp_path / 'runs' / 't' / 'a'
  env = dict(os.environ, FAKE_SLEEP='60')
  proc = subprocess.Popen([
      sys.executable,
      os.path.join(REPO, 'tools', 'run_sweep.py'), f'--logdir={tmp_path / "runs"}', f
  ],
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True)
  deadline = time.time() + 10
  while not (rundir / 'train.log').exists() and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.3)
  start = time.time()
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=20)
  assert proc.returncode == 130 and time.time() - start < 10, out
  assert 'run the same command again to resume' in out
  assert not (rundir / 'failed.txt').exists() and not (rundir / 'results.json').exists()


def test_locked_run_is_skipped(fake, tmp_path, capsys):
  f = fake('t/a', '--model=mlp_1x512')
  rundir = tmp_path / 'runs' / 't' / 'a'
  rundir.mkdir(parents=True)
  with open(rundir / sweep_lock.LOCK, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    assert sweep(tmp_path / 'runs', f) == 0
  assert 'another sweep is running it' in capsys.readouterr().out
  assert calls(str(rundir)) == []


def test_dry_run_and_bad_arguments(fake, tmp_path, capsys):
  f = fake('t/a', '--model=mlp_1x512')
  assert sweep(tmp_path / 'runs', '--dry_run', '--set', 'seed=3', f) == 0
  out = capsys.readouterr().out
  assert '--seed=3 --logdir=' in out and not (tmp_path / 'runs').exists()
  assert sweep(tmp_path / 'runs', '--dry_run', '--set', 'steps_per_execution=16', '--set', 'quiet',
               f) == 0
  assert '--steps_per_execution=16 --quiet=true' in capsys.readouterr().out
  assert sweep(tmp_path / 'runs', '--set', 'no_such_flag=1', f) == 2
  assert 'unknown flag --no_such_flag' in capsys.readouterr().err
  assert sweep(tmp_path / 'runs', '--set', 'logdir=/x', f) == 2
  assert sweep(tmp_path / 'runs', '--set', 'labels=weird', f) == 2
  assert sweep(tmp_path / 'runs', str(tmp_path / 'nope.cfg')) == 2
  bad = fake('t/bad', '--logdir=/x')
  assert sweep(tmp_path / 'runs', bad) == 2
  assert 'flagfiles never set --logdir' in capsys.readouterr().err


def test_same_value():
  assert flagfiles.same_value('train_size', '0', None)  # the binary's 'all'
  assert not flagfiles.same_value('train_size', '0', 5000)
  assert flagfiles.same_value('weight_decay', '5e-4', 0.0005)
  assert flagfiles.same_value('random_crop', 'false', False)
  assert not flagfiles.same_value('dataset', 'cifar10', 'digits')


def test_run_name():
  assert flagfiles.run_name('flags/table1/mlp_1x512_wd.cfg') == 'table1/mlp_1x512_wd'
  assert flagfiles.run_name('/a/flags/b/flags/figure1/x.cfg') == 'figure1/x'
  assert flagfiles.run_name('/tmp/elsewhere/x.cfg') == 'x'
  assert flagfiles.run_name('/tmp/e/sub/x.cfg', flags_root='/tmp/e') == 'sub/x'


FLAGFILES = sorted(glob.glob(os.path.join(REPO, 'flags', '**', '*.cfg'), recursive=True))


def test_flagfile_layout():
  """52 flagfiles: 19 + 7 table rows, 5 + 18 Figure 1 and 3 Figure 2 conditions; and the
  60 + 3 of the generalization-measures study grid (MLPs, small Alexnet)."""
  by_dir = {}
  for path in FLAGFILES:
    by_dir.setdefault(os.path.basename(os.path.dirname(path)), []).append(path)
  assert {
      k: len(v) for k, v in by_dir.items()
  } == {
      'table1': 19,
      'table2': 7,
      'figure1': 23,
      'figure2': 3,
      'study': 60,
      'study_alexnet': 3
  }
  for model in ('inception', 'alexnet', 'mlp_1x512'):
    for p in ('0.0', '0.2', '0.4', '0.6', '0.8', '1.0'):
      assert os.path.join(REPO, 'flags', 'figure1', f'{model}_corrupt_{p}.cfg') in FLAGFILES


@pytest.mark.parametrize('path', FLAGFILES, ids=lambda p: os.path.relpath(p, REPO))
def test_flagfile_parses(path):
  """Comment, blank or --name=value / --[no]bool lines with contract names only."""
  with open(path) as f:
    first = f.readline()
  assert first.startswith('# ') and ('Table' in first or 'Figure' in first)
  assert 'paper' in first
  flags = dict(flagfiles.read_flagfile(path))
  assert flags['model'] and os.path.basename(path).startswith(flags['model'])
  assert flags['dataset'] in ('cifar10', 'imagenet2012')
  assert 'epochs' in flags
  if flags['labels'] == 'corrupted':
    assert f'_corrupt_{float(flags["corrupt_prob"]):.1f}.cfg' in path
  else:
    assert 'corrupt_prob' not in flags


def _finished_run(rundir, flags_cfg: str) -> None:
  """A finished run as the binary leaves it: resolved flags.cfg, results, checkpoints."""
  os.makedirs(os.path.join(rundir, 'checkpoints'))
  with open(os.path.join(rundir, 'flags.cfg'), 'w') as f:
    f.write('# Resolved flags of this run\n' + flags_cfg)
  with open(os.path.join(rundir, 'results.json'), 'w') as f:
    json.dump(
        dict(train_accuracy=1.0,
             test_accuracy=0.25,
             epochs_completed=7,
             config=dict(model='mlp_1x64', epochs=7)), f)
  with open(os.path.join(rundir, 'metrics.csv'), 'w') as f:
    f.write('epoch,test_accuracy\n1,0.25\n')
  with open(os.path.join(rundir, 'checkpoints', 'ckpt-1.index'), 'w') as f:
    f.write('weights')


RESOLVED = ('--model=mlp_1x64\n--epochs=7\n--labels=corrupted\n--corrupt_prob=1.0\n'
            '--batch_norm\n--noquiet\n--weight_decay=0.0\n--learning_rate=0.0\n')


def test_identical_finished_run_is_copied_not_trained(fake, tmp_path, capsys):
  logdir = tmp_path / 'runs'
  _finished_run(str(logdir / 'table1' / 'a'), RESOLVED)
  same = fake('figure1/b', '--model=mlp_1x64', '--epochs=7', '--labels=random')
  other = fake('figure1/c', '--model=mlp_1x64', '--epochs=8', '--labels=random')
  assert sweep(logdir, '--dry_run', same, other) == 0
  assert 'reuse    figure1/b: copy table1/a (same flags)' in capsys.readouterr().out
  assert sweep(logdir, same, other) == 0
  out = capsys.readouterr().out
  b, c = logdir / 'figure1' / 'b', logdir / 'figure1' / 'c'
  assert 'reused   figure1/b: same flags as table1/a: train 100.00%, test 25.00%' in out
  assert '1 copied from identical runs' in out
  assert calls(str(b)) == [] and len(calls(str(c))) == 1  # b was not trained
  assert (b / 'reused_from.txt').read_text() == 'table1/a\n'
  assert json.loads((b / 'results.json').read_text())['test_accuracy'] == 0.25
  assert (b / 'metrics.csv').exists() and not (b / 'checkpoints').exists()
  assert 'copied its outputs instead of training' in (b / 'train.log').read_text()
  # Finished now, so the next sweep skips it (no conflict though the copied
  # config says labels=corrupted, p = 1); --no_reuse trains a fresh copy.
  config = json.loads((b / 'results.json').read_text())
  config['config'].update(labels='corrupted', corrupt_prob=1.0)
  (b / 'results.json').write_text(json.dumps(config))
  assert sweep(logdir, same) == 0
  assert 'already finished' in capsys.readouterr().out
  d = fake('figure1/d', '--model=mlp_1x64', '--epochs=7', '--labels=random')
  assert sweep(logdir, '--no_reuse', d) == 0
  assert len(calls(str(logdir / 'figure1' / 'd'))) == 1


def test_canonical_flags():
  canon = flagfiles.canonical_flags
  assert canon({'labels': 'corrupted', 'corrupt_prob': '0.0'}) == canon({})
  assert canon({'labels': 'corrupted', 'corrupt_prob': '1'}) == canon({'labels': 'random'})
  assert canon({'labels': 'corrupted', 'corrupt_prob': '0.2'}) != canon({'labels': 'random'})
  assert canon({'weight_decay': '5e-4', 'quiet': 'true'}) == canon({'weight_decay': '0.0005'})
  assert canon({'precision': 'mixed_bfloat16'}) != canon({})
  assert canon({'data_dir': '/tmp/x/../y'}) == canon({'data_dir': '/tmp/y'})


_BINARY_FLAGS = textwrap.dedent('''\
    import json, sys
    from absl import flags
    import rethinking_tf.train as train
    from rethinking_tf import cli
    train.define_flags()  # as `python -m rethinking_tf.train` does
    found = {}
    for module in (train, cli):
      for f in flags.FLAGS.get_key_flags_for_module(module):
        kind = ('bool' if isinstance(f, flags.BooleanFlag) else
                'enum' if isinstance(f, flags.EnumFlag) else
                'int' if isinstance(f.parser, flags.IntegerParser) else
                'float' if isinstance(f.parser, flags.FloatParser) else 'str')
        found[f.name] = [f.default, kind, getattr(f.parser, 'enum_values', None)]
    print(json.dumps(found))''')


def _binary_flags() -> dict:
  """{name: [default, kind, enum values]} of the training binary's flags, read
  in a fresh interpreter from the binary's global FLAGS."""
  proc = run_python('-c', _BINARY_FLAGS, check=True, timeout=120)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_binary_defaults_match_the_training_binary():
  """BINARY_DEFAULTS must name every flag of the binary with its real default."""
  binary = {k: v[0] for k, v in _binary_flags().items()}
  known = {k for k in binary if k not in flagfiles.RUNNER_FLAGS and binary[k] is not None}
  assert known == set(flagfiles.BINARY_DEFAULTS)
  for name in known:
    default = flagfiles.canonical_flags({})
    assert flagfiles.canonical_flags({name: str(binary[name])}) == default, name


def test_sweep_contract_is_the_training_binarys_flags():
  """TRAIN_FLAGS and EXTRA_FLAGS are exactly the binary's flags, with their kinds
  and enum values: the contract is declared once, by the binary."""
  binary = _binary_flags()
  contract = {**flagfiles.TRAIN_FLAGS, **flagfiles.EXTRA_FLAGS}
  assert not set(flagfiles.TRAIN_FLAGS) & set(flagfiles.EXTRA_FLAGS)
  assert contract == {k: v[1] for k, v in binary.items()}
  assert flagfiles.ENUM_VALUES == {k: tuple(v[2]) for k, v in binary.items() if v[1] == 'enum'}
  assert set(flagfiles.RUNNER_FLAGS) <= set(flagfiles.TRAIN_FLAGS)
