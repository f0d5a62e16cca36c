"""The study's scores (Kendall tau, granulated Psi, conditional-MI K) and its tool."""

import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import REPO
from rethinking_tf.measures import MEASURES
from rethinking_tf.measures import study

TOOL = os.path.join(REPO, 'tools', 'generalization_study.py')


def _write_run(root, name, gap, values, predictions=None, **config):
  path = os.path.join(root, name)
  os.makedirs(path)
  base = dict(labels='true',
              corrupt_prob=0.0,
              inputs='original',
              weight_decay=0.0,
              random_crop=False,
              model='mlp_1x512',
              seed=0,
              learning_rate=0.01,
              dropout=0.0,
              batch_size=128,
              train_size=None,
              dataset='digits',
              logdir=path)
  base.update(config)
  json.dump(base, open(os.path.join(path, 'config.json'), 'w'))
  json.dump(
      {
          'train_accuracy': 1.0,
          'test_accuracy': 1.0 - gap,
          'fit_epoch': 3 if gap < 0.5 else None
      }, open(os.path.join(path, 'results.json'), 'w'))
  measures = {
      k: {
          'value': v
      } if v is not None else {
          'missing': 'too hard'
      } for k, v in values.items()
  }
  json.dump({'measures': measures}, open(os.path.join(path, 'measures.json'), 'w'))
  if predictions is not None:
    np.save(os.path.join(path, 'test_predictions.npy'), np.asarray(predictions, np.uint16))


def _runs(points, hparams=None):
  out = []
  for i, (gap, value) in enumerate(points):
    h = dict(study.hyperparameters({'labels': 'true', 'model': 'mlp_1x8', 'seed': 0}))
    h.update((hparams or [{}] * len(points))[i])
    out.append(study.StudyRun(str(i), h, gap, {'m': value}, {}, (), None))
  return out


def test_kendall_tau_is_scipys_without_ties():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=30), rng.normal(size=30)
  assert study.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y)[0])
  assert study.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
  assert study.kendall_tau([1], [1]) is None


def test_granulated_psi_by_hand():
  # p in {0, 1} x seed in {0, 1}; the measure follows the gap across p but not across seeds.
  hp = [dict(p=p, seed=s) for p, s in itertools.product((0.0, 1.0), (0, 1))]
  gaps = [0.1, 0.2, 0.8, 0.9]
  values = [1.0, 0.5, 3.0, 2.0]
  runs = _runs(list(zip(gaps, values)), hp)
  psi, per_h = study.granulated_psi(runs, 'm', ['p', 'seed'])
  assert per_h == {'p': 1.0, 'seed': -1.0}  # each group of two: concordant / discordant
  assert psi == 0.0


def test_conditional_mi_score_by_hand():
  runs = _runs([(0.1, 1.0), (0.2, 3.0), (0.3, 2.0)])
  # ordered pairs: table [[2, 1], [1, 2]] / 6; H(V_g) = 1 bit
  h = lambda *p: -sum(q * math.log2(q) for q in p)
  expect = (h(0.5, 0.5) * 2 - h(1 / 3, 1 / 3, 1 / 6, 1 / 6)) / 1.0
  k, s = study.conditional_mi_score(runs, 'm', [])
  assert k == pytest.approx(expect) and s == ()
  same = _runs([(g, g) for g in (0.1, 0.2, 0.3, 0.5)])
  assert study.conditional_mi_score(same, 'm', [])[0] == pytest.approx(1.0)
  flat = _runs([(g, 1.0) for g in (0.1, 0.2, 0.3, 0.5)])  # a tie carries no information
  assert study.conditional_mi_score(flat, 'm', [])[0] == pytest.approx(0.0)


def test_conditional_mi_score_sees_through_a_confounder():
  # The measure tracks p (which drives the gap) but, at fixed p, is unrelated to the gap.
  rng = np.random.default_rng(1)
  hp, points = [], []
  for p, seed in itertools.product((0.0, 0.5, 1.0), range(6)):
    hp.append(dict(p=p, seed=seed))
    points.append((p + 0.01 * rng.normal(), p + 0.01 * rng.normal()))
  runs = _runs(points, hp)
  tau = study.kendall_tau([r.values['m'] for r in runs], [r.gap for r in runs])
  k, s = study.conditional_mi_score(runs, 'm', ['p', 'seed'])
  assert tau > 0.5 and k < 0.1 and 'p' in s


def test_read_runs_pairs_seeds_for_disagreement(tmp_path):
  root = str(tmp_path)
  values = {'margin': 1.0}
  _write_run(root, 'a', 0.1, values, [0, 1, 2, 3], seed=0)
  _write_run(root, 'b', 0.2, values, [0, 1, 0, 0], seed=1)
  _write_run(root, 'c', 0.3, values, [3, 3, 3, 3], seed=1, labels='random')
  runs = {r.name: r for r in study.read_runs(root)}
  assert runs['a'].values['disagreement'] == 0.5 == runs['b'].values['disagreement']
  assert runs['c'].values['disagreement'] is None
  assert 'differs only in seed' in runs['c'].missing['disagreement']
  assert runs['c'].hparams['p'] == 1.0 and runs['a'].hparams['width'] == 512
  assert runs['a'].values['inverse_margin'] is None  # not in its measures.json


def test_seed_pairs_span_runs_recorded_before_a_setting_existed(tmp_path):
  # A config.json written before --eval_every_epochs existed pairs with a
  # newer one at its default (1), not with one evaluated every 5 epochs.
  root = str(tmp_path)
  values = {'margin': 1.0}
  _write_run(root, 'old', 0.1, values, [0, 1, 2, 3], seed=0)
  _write_run(root, 'new', 0.2, values, [0, 1, 2, 0], seed=1, eval_every_epochs=1)
  _write_run(root, 'k5', 0.2, values, [0, 0, 0, 0], seed=2, eval_every_epochs=5)
  runs = {r.name: r for r in study.read_runs(root)}
  assert runs['old'].values['disagreement'] == 0.25 == runs['new'].values['disagreement']
  assert runs['k5'].values['disagreement'] is None


def test_tool_writes_table_csv_and_figure(tmp_path):
  root = str(tmp_path / 'runs')
  for i, p in enumerate((0.0, 0.5, 1.0)):
    values = {k: None for k in MEASURES}
    values.update(margin=3.0 - p, sum_fro=10 + p)
    for seed in (0, 1):
      _write_run(root,
                 f'p{p}_s{seed}',
                 0.1 + 0.4 * p + 0.01 * seed,
                 values, [i, seed, 0],
                 labels='corrupted',
                 corrupt_prob=p,
                 seed=seed)
  out = str(tmp_path / 'out')
  proc = subprocess.run([sys.executable, TOOL, f'--logdir={root}', f'--out_dir={out}'],
                        capture_output=True,
                        text=True,
                        cwd=REPO,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  table = open(os.path.join(out, 'study.md')).read()
  assert 'varied: p, seed' in table
  assert '| margin | margin | 6 | -0.800 |' in table  # 12 of 15 pairs discordant, 3 tied
  assert '| norm | sum_fro | 6 | +0.800 |' in table
  assert '| norm | path_norm | 0 | missing: too hard |' in table
  assert 'did not reach their fit threshold (2): p1.0_s0, p1.0_s1.' in table
  rows = list(csv_rows(os.path.join(out, 'study.csv')))
  assert rows[0][:5] == ['measure', 'family', 'runs', 'tau', 'psi']
  assert os.path.getsize(os.path.join(out, 'study.png')) > 10_000


def csv_rows(path):
  import csv  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    yield from csv.reader(f)


def test_tool_errors(tmp_path):
  run = lambda *a: subprocess.run(
      [sys.executable, TOOL, *a], capture_output=True, text=True, cwd=REPO, timeout=60)
  proc = run(f'--logdir={tmp_path}/absent')
  assert proc.returncode == 2 and proc.stderr.startswith('error: ') and 'allowed:' in proc.stderr
  proc = run(f'--logdir={tmp_path}')
  assert proc.returncode == 1 and 'no finished run' in proc.stderr
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('name', ['study', 'study_cifar10'])
def test_committed_study_regenerates(tmp_path, name):
  """docs/results/<name>/study.{md,csv} come from the committed runs' measures."""
  committed = os.path.join(REPO, 'docs', 'results', name)
  proc = subprocess.run(
      [sys.executable, TOOL, f'--logdir={committed}/runs', f'--out_dir={tmp_path}', '--no_figure'],
      capture_output=True,
      text=True,
      cwd=REPO,
      timeout=120)
  assert proc.returncode == 0, proc.stderr
  for name in ('study.md', 'study.csv'):
    with open(os.path.join(committed, name)) as a, open(os.path.join(tmp_path, name)) as b:
      assert a.read() == b.read(), name
