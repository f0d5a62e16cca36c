"""The whole benchmark: `run` measures, `checks` holds it to the targets, then the reports.

`summary` is the binary's last-line JSON object, `format_table` the printed
report (models, with the peer ratio when a peer ran; the per-epoch costs; the
input pipeline; targets with PASS/FAIL).
"""

from __future__ import annotations

import statistics
from typing import Any
from collections.abc import Sequence

import tensorflow as tf

from rethinking_tf import cpu
from rethinking_tf.benchmark import layers
from rethinking_tf.benchmark import machine
from rethinking_tf.benchmark import models as models_lib
from rethinking_tf.benchmark import onednn
from rethinking_tf.benchmark import ops
from rethinking_tf.benchmark import pipeline
from rethinking_tf.benchmark import tables

CIFAR_MODELS = ('inception', 'alexnet', 'mlp_1x512', 'mlp_3x512')

# Throughput targets (docs/performance.md).
TARGET_BINARY_VS_BARE = 0.95
TARGET_RANDOMIZATION_OVERHEAD = 0.03
TARGET_PIPELINE_MULTIPLE = 10.0
# Each model at least this many times the peer's images/s, in the same run.
TARGET_PEER_RATIO = 1.2


def run(cases: Sequence[models_lib.ModelCase],
        strategy: tf.distribute.Strategy | None = None,
        pipeline_batches: int = 200,
        pipeline_train_size: int | None = 1280,
        matmul_n: int = 2048,
        accuracy_epochs: int = 0,
        pipeline_modes: Sequence[str] | None = None,
        breakdown: bool = False,
        peer: models_lib.PeerFactory | None = None,
        op_profile: bool = False,
        onednn_sides: Sequence[str] = ()) -> dict[str, Any]:
  """Measures every case, the pipeline per randomization and the matmul peak.

  With `breakdown`, also `step_breakdown` of each model (first case's batch
  size and precision); with `peer`, each case's peer model trained in the
  same run, interleaved epoch by epoch (`models.measure_model`); with
  `op_profile`, each model's step (and its peer's) per op type; with
  `onednn_sides` ('ours', 'pytorch'), each float32 model's oneDNN primitives
  in those libraries (`onednn.profile`). Returns the JSON-ready result;
  `checks` holds each target with PASS/FAIL.
  """
  results: dict[str, Any] = {'machine': machine.machine_info(), 'models': {}, 'variants': []}
  peaks: dict[str, list[float]] = {'float32': []}
  cpu_peaks: dict[str, list[float]] = {'float32': []}

  def sample(dtype: str) -> None:
    m = machine.matmul_peak(matmul_n, dtype, seconds=0.5)
    peaks.setdefault(dtype, []).append(m['best_flops_per_second'])
    cpu_peaks.setdefault(dtype, []).append(m['flops_per_cpu_second'])

  half = lambda p: 'bfloat16' if 'bfloat16' in p else 'float16'
  first = cases[0]
  # The pipeline first, in a fresh process (later, the models' graphs and
  # buffers made its timings noisier).
  modes = [
      m for m in pipeline.PIPELINE_MODES
      if pipeline_modes is None or m[0] == 'baseline' or m[0] in pipeline_modes
  ]
  pipe = pipeline.measure_pipeline(first.dataset,
                                   first.data_dir,
                                   first.batch_size,
                                   pipeline_train_size,
                                   pipeline_batches,
                                   modes=modes)
  measured = []
  for case in cases:
    sample('float32')
    if case.precision != 'float32':
      sample(half(case.precision))
    measured.append((case, models_lib.measure_model(case,
                                                    strategy,
                                                    peer=peer,
                                                    op_profile=op_profile)))
    if onednn_sides and case.precision == 'float32':
      threads = tf.config.threading.get_intra_op_parallelism_threads()  # the parent's
      measured[-1][1]['onednn_profile'] = {
          side: onednn.profile(case.model, side, batch_size=case.batch_size, threads=threads)
          for side in onednn_sides
      }
    if breakdown and case.model not in results.setdefault('breakdown', {}):
      results['breakdown'][case.model] = layers.step_breakdown(case.model, case.batch_size,
                                                               case.precision)
  sample('float32')
  # The peak is the best matmul rate seen in this run (the machine may be shared).
  peak = {k: max(v) for k, v in peaks.items()}
  # Per CPU-second (median): insensitive to other processes' load.
  cpu_peak = {k: statistics.median(v) for k, v in cpu_peaks.items()}
  for case, r in measured:
    ref = peak['float32' if case.precision == 'float32' else half(case.precision)]
    r['matmul_flops_per_second'] = ref
    r['achieved_flops_per_second'] = r['images_per_second'] * r['flops_per_image']
    r['peak_fraction'] = r['achieved_flops_per_second'] / ref
    r['bare_peak_fraction'] = r['bare_images_per_second'] * r['flops_per_image'] / ref
    r['peak_fraction_of_float32_peak'] = r['achieved_flops_per_second'] / peak['float32']
    r['peak_fraction_cpu'] = (
        r['images_per_cpu_second'] * r['flops_per_image'] /
        cpu_peak['float32' if case.precision == 'float32' else half(case.precision)])
    if (case.precision == 'float32' and not case.random_crop and
        case.model not in results['models']):
      results['models'][case.model] = r
    else:
      results['variants'].append(r)
  for name, b in results.get('breakdown', {}).items():
    r = next(r for c, r in measured if c.model == name)
    # The binary's train function (bare loop), per step, beside the minimal step.
    # (The keys keep their names: results files compare across versions.)
    b['keras_step_seconds'] = r['batch_size'] / r['bare_images_per_second']
    b['keras_steps_per_execution'] = r['steps_per_execution']
    ref = peak['float32' if b['precision'] == 'float32' else half(b['precision'])]
    b['conv_dense_peak_fraction'] = b['conv_dense_flops_per_second'] / ref
    b['step_peak_fraction'] = b['step_flops_per_second'] / ref
  results['matmul_flops_per_second'] = peak['float32']
  results['matmul_flops_per_second_samples'] = peaks['float32']
  results['matmul_flops_per_cpu_second'] = cpu_peak['float32']
  for k in ('bfloat16', 'float16'):
    if k in peak:
      results[f'matmul_{k}_flops_per_second'] = peak[k]

  results['pipeline'] = pipe
  results['pipeline_images_per_second'] = min(m['images_per_second'] for m in pipe.values())
  models = results['models'] or {r['model']: r for r in results['variants']}
  fastest = max(models.values(), key=lambda r: r['images_per_second'])
  step = first.batch_size / fastest['bare_images_per_second']
  base = pipe['baseline']['seconds_per_batch']
  for m in pipe.values():
    m['share_of_fastest_step'] = m['seconds_per_batch'] / step
    m['added_share_of_fastest_step'] = (m['seconds_per_batch'] - base) / step
  step_cpu = first.batch_size / fastest['bare_images_per_cpu_second']
  base_cpu = pipe['baseline']['cpu_seconds_per_batch']
  for m in pipe.values():
    m['added_cpu_share_of_fastest_step'] = (m['cpu_seconds_per_batch'] - base_cpu) / step_cpu
  worst_cpu = max(pipe, key=lambda k: pipe[k]['added_cpu_share_of_fastest_step'])
  results['randomization_overhead_cpu'] = pipe[worst_cpu]['added_cpu_share_of_fastest_step']
  results['randomization_overhead_cpu_mode'] = worst_cpu
  worst = max(pipe, key=lambda k: pipe[k]['added_share_of_fastest_step'])
  results['randomization_overhead'] = pipe[worst]['added_share_of_fastest_step']
  results['randomization_overhead_mode'] = worst
  results['pipeline_share_of_fastest_step'] = max(m['share_of_fastest_step'] for m in pipe.values())
  results['fastest_model'] = fastest['model']
  for r in list(results['models'].values()) + results['variants']:
    r['pipeline_share_of_step'] = base / (r['batch_size'] / r['bare_images_per_second'])
    crop = pipe['random_crop']['seconds_per_batch'] - base if 'random_crop' in pipe else 0
    r['crop_share_of_step'] = crop / (r['batch_size'] / r['bare_images_per_second'])

  if accuracy_epochs:
    results['precision_accuracy'] = [
        models_lib.precision_accuracy(name, p, accuracy_epochs, first.dataset, first.data_dir)
        for name in dict.fromkeys(c.model
                                  for c in cases)
        for p in ('float32', 'mixed_bfloat16')
    ]
  results['checks'] = checks(results)
  results['peak_memory_mib'] = machine.peak_memory_mib()
  return results


def _check(target: str, value: float, required: float, at_most: bool = False) -> dict[str, Any]:
  return {
      'target': target,
      'value': value,
      'required': required,
      'pass': value <= required if at_most else value >= required
  }


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
  """Every throughput target as {target, value, required, pass}."""
  models = results['models'] or {r['model']: r for r in results['variants']}
  out = []
  for name, r in models.items():
    for key, how in (('binary_vs_bare', 'wall clock'), ('binary_vs_bare_cpu', 'per CPU-second')):
      out.append(
          _check(f'{name}: binary >= 95% of bare step loop ({how})', r[key], TARGET_BINARY_VS_BARE))
  out.append(
      _check(
          f'every randomization adds <= 3% to a step '
          f'(worst: {results["randomization_overhead_mode"]}, '
          f'vs {results["fastest_model"]})',
          results['randomization_overhead'],
          TARGET_RANDOMIZATION_OVERHEAD,
          at_most=True))
  out.append(
      _check(
          f'every randomization adds <= 3% to a step, per CPU-second '
          f'(worst: {results["randomization_overhead_cpu_mode"]})',
          results['randomization_overhead_cpu'],
          TARGET_RANDOMIZATION_OVERHEAD,
          at_most=True))
  fastest = models[results['fastest_model']]['images_per_second']
  out.append(
      _check(f'pipeline alone >= 10x the fastest model ({results["fastest_model"]})',
             results['pipeline_images_per_second'] / fastest, TARGET_PIPELINE_MULTIPLE))
  for name, r in models.items():
    if 'peer_ratio' in r:
      out.append(
          _check(f"{name}: >= {TARGET_PEER_RATIO}x {r['peer']['library']} in the same run",
                 r['peer_ratio'], TARGET_PEER_RATIO))
  return out


def summary(results: dict[str, Any]) -> dict[str, Any]:
  """The last-line JSON object: per-model keys and the top-level numbers."""
  keep = ('images_per_second', 'bare_images_per_second', 'flops_per_image', 'peak_fraction',
          'peak_fraction_cpu', 'binary_vs_bare', 'binary_vs_bare_cpu', 'evaluation_seconds',
          'epoch_end_seconds', 'peak_memory_mib', 'precision', 'steps_per_execution', 'batch_size',
          'random_crop')
  # Present only in runs that measured them (--peer, --op_profile, --onednn_profile).
  keep += ('peer_images_per_second', 'peer_ratio', 'peer_ratio_range', 'peer_ratio_best',
           'peer_ratio_cpu', 'epoch_costs', 'op_profile', 'peer_op_profile', 'onednn_profile')
  out = {
      'machine': results['machine'],  # the CPU beside its numbers, and whether oneDNN ran
      'models': {
          name: {
              k: r[k] for k in keep if k in r
          } for name, r in results['models'].items()
      },
      'variants': [{
          'model': r['model'],
          **{
              k: r[k] for k in keep if k in r
          }
      } for r in results['variants']],
      'matmul_flops_per_second': results['matmul_flops_per_second'],
      'pipeline_images_per_second': results['pipeline_images_per_second'],
      'randomization_overhead': results['randomization_overhead'],
      'randomization_overhead_mode': results['randomization_overhead_mode'],
      'randomization_overhead_cpu': results['randomization_overhead_cpu'],
      'peak_memory_mib': results['peak_memory_mib'],
      'checks_passed': sum(c['pass'] for c in results['checks']),
      'checks_failed': [c['target'] for c in results['checks'] if not c['pass']],
  }
  if results.get('breakdown'):
    out['breakdown'] = {
        name: {
            'step_seconds': b['phases_seconds']['step'],
            'phases_seconds': b['phases_seconds'],
            'keras_step_seconds': b['keras_step_seconds'],
            'seconds_by_type': b['seconds_by_type'],
            'step_peak_fraction': b['step_peak_fraction'],
            'conv_dense_peak_fraction': b['conv_dense_peak_fraction']
        } for name, b in results['breakdown'].items()
    }
  for key in ('matmul_bfloat16_flops_per_second', 'matmul_float16_flops_per_second',
              'precision_accuracy'):
    if key in results:
      out[key] = results[key]
  return out


def _onednn(m: dict[str, Any]) -> str:
  """'on', 'off' or 'unknown', with the ISA oneDNN is held to, if any."""
  state = {True: 'on', False: 'off'}.get(m.get('onednn'), 'unknown')
  return f"{state} (ONEDNN_MAX_CPU_ISA={m['onednn_max_cpu_isa']})" if m.get(
      'onednn_max_cpu_isa') else state


def format_table(results: dict[str, Any]) -> str:
  """A readable report: models, pipeline, targets."""
  m = results['machine']
  lines = [
      f"machine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, "
      f"{m.get('memory_gib', '?')} GiB, features {','.join(m.get('cpu_features', []))}, "
      f"load average at start {m.get('load_average')}, TF {m['tensorflow']}, "
      f"oneDNN {_onednn(m)}",
      f"matmul peak (float32, best of {len(results['matmul_flops_per_second_samples'])} "
      f"samples of 0.5 s): {results['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s"
  ]
  for k in ('bfloat16', 'float16'):
    if f'matmul_{k}_flops_per_second' in results:
      lines.append(f'matmul peak ({k}, best sample): '
                   f"{results[f'matmul_{k}_flops_per_second'] / 1e9:.1f} GFLOP/s")
  measured = list(results['models'].values()) + results['variants']
  for precision in dict.fromkeys(r['precision'] for r in measured):
    if cpu.precision_warning(precision) and not m.get('gpus'):
      lines.append(f'note: {cpu.precision_warning(precision)}')
  header = ('model', 'precision', 'crop', 'spe', 'binary img/s', 'bare img/s', 'binary/bare',
            '(best)', '(CPU)', 'MFLOP/img', 'GFLOP/s', 'peak frac', '(of fp32)', 'pipe share',
            'crop share', 'epoch-end s', 'peak MiB')
  rows = []
  for r in list(results['models'].values()) + results['variants']:
    rows.append((r['model'], r['precision'], 'yes' if r['random_crop'] else 'no',
                 str(r['steps_per_execution']), tables.fmt(r['images_per_second']),
                 tables.fmt(r['bare_images_per_second']), f"{r['binary_vs_bare']:.3f}",
                 f"{r['binary_vs_bare_best']:.3f}", f"{r['binary_vs_bare_cpu']:.3f}",
                 f"{r['flops_per_image'] / 1e6:.2f}", f"{r['achieved_flops_per_second'] / 1e9:.1f}",
                 f"{r['peak_fraction']:.3f}", f"{r['peak_fraction_cpu']:.3f}",
                 f"{r['peak_fraction_of_float32_peak']:.3f}", f"{r['pipeline_share_of_step']:.4f}",
                 f"{r['crop_share_of_step']:.4f}", f"{r['epoch_end_seconds']:.2f}",
                 f"{r['peak_memory_mib']:.0f}"))
  lines += [
      '',
      tables.table(header, rows),
      '(binary = trainer.Trainer.train() steady-state epochs, epoch-end '
      'evaluation/checkpoint excluded and shown as epoch-end s; bare = the '
      'same compiled train function on one in-memory batch; medians, '
      '(best) = best epoch / best bare block; (CPU) = the same ratio in '
      'images per process CPU-second; peak frac against the best matmul '
      'sample of the same precision, (CPU) per CPU-second against the median '
      'matmul per CPU-second; (of fp32) against the float32 peak; pipe/crop share = '
      'pipeline seconds per '
      'batch (baseline / added by random crop) over the bare step)'
  ]
  lines += tables.peer_table(measured) + tables.epoch_cost_table(measured)
  rows = [(name, tables.fmt(p['images_per_second']), f"{p['seconds_per_batch'] * 1e3:.3f}",
           f"{p['cpu_seconds_per_batch'] * 1e3:.3f}", f"{p['share_of_fastest_step']:.4f}",
           f"{p['added_share_of_fastest_step']:+.4f}",
           f"{p['added_cpu_share_of_fastest_step']:+.4f}", f"{p['setup_seconds']:.2f}")
          for name, p in results['pipeline'].items()]
  lines += [
      '',
      tables.table(
          ('pipeline mode', 'img/s', 'ms/batch', 'CPU ms/batch',
           f"share of {results['fastest_model']} step", 'added vs baseline', '(CPU)', 'setup s'),
          rows)
  ]
  for b in results.get('breakdown', {}).values():
    lines += ['', layers.format_breakdown(b)]
  for name, r in results['models'].items():
    if 'op_profile' in r:
      profiles = {'ours': r['op_profile']}
      if 'peer_op_profile' in r:
        profiles[r['peer']['library']] = r['peer_op_profile']
      lines += ['', ops.format_ops(name, profiles)]
    if 'onednn_profile' in r:
      p = r['onednn_profile']
      versions = ', '.join(f"{side} oneDNN {v.get('version', '?')}, {v.get('threads', '?')} "
                           'threads' for side, v in p.items())
      isa = next(iter(p.values())).get('isa', '?')
      lines += [
          '',
          ops.format_ops(name,
                         p,
                         top=16,
                         title=f'oneDNN primitives per step ({versions}; ISA: {isa})')
      ]
  if 'precision_accuracy' in results:
    rows = [(a['model'], a['precision'], str(a['epochs']), f"{a['train_accuracy']:.4f}",
             f"{a['test_accuracy']:.4f}", f"{a['seconds']:.1f}")
            for a in results['precision_accuracy']]
    lines += [
        '',
        tables.table(('model', 'precision', 'epochs', 'train acc', 'test acc', 'seconds'), rows)
    ]
  rows = [(c['target'], f"{c['value']:.3f}", f"{c['required']:g}", 'PASS' if c['pass'] else 'FAIL')
          for c in results['checks']]
  lines += ['', tables.table(('target', 'measured', 'required', 'result'), rows)]
  return '\n'.join(lines)
