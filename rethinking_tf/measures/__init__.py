"""Complexity measures of a trained run (section 2.2 and PAPER.md sections 6 and 7).

What does and does not measure generalization: the norm-, margin-,
sharpness-, optimization-based measures of Jiang et al., "Fantastic
Generalization Measures and Where to Find Them" (ICLR 2020), and the
paper's own empirical Rademacher complexity, computed from a run's final
weights, its initial weights and its randomized training set.

Modules: `layers` (the linear layers, BatchNorm folded), `norms`, `margins`,
`sharpness`, `optimization`, `rademacher`, `agreement` (numpy/TensorFlow on
a keras.Model and numpy arrays); `run` (loading a finished run: the only
module that imports the rest of rethinking_tf); `compute` (all measures of
one run into measures.json); `study` (Kendall tau, granulated Psi and the
conditional-MI score K over many runs; needs no TensorFlow).

This file is the registry of measure names, importable without TensorFlow.
"""

from __future__ import annotations

# name -> (family, what it is). The order is the order of the study's tables.
MEASURES: dict[str, tuple[str, str]] = {
    'margin': ('margin', '10th percentile of the training margins (gamma)'),
    'inverse_margin': ('margin', '1 / gamma^2 (Jiang et al. eq. 22)'),
    'log_prod_fro': ('norm', 'sum_i log ||W_i||_F^2 (eq. 37)'),
    'log_prod_fro_over_margin': ('norm', 'log prod ||W_i||_F^2 / gamma^2 (eq. 36)'),
    'sum_fro': ('norm', 'sum_i ||W_i||_F^2 (eq. 42)'),
    'sum_fro_over_margin': ('norm', 'sum_i ||W_i||_F^2 / gamma^2'),
    'log_prod_spec': ('norm', 'sum_i log ||W_i||_2^2 (eq. 32)'),
    'log_prod_spec_over_margin': ('norm', 'log prod ||W_i||_2^2 / gamma^2 (eq. 31)'),
    'sum_spec': ('norm', 'sum_i ||W_i||_2^2'),
    'sum_spec_over_margin': ('norm', 'sum_i ||W_i||_2^2 / gamma^2'),
    'path_norm': ('norm', 'path-l2 norm (eq. 44)'),
    'path_norm_over_margin': ('norm', 'path-l2 norm / gamma^2 (eq. 43)'),
    'dist_fro': ('norm', 'sum_i ||W_i - W_i^0||_F^2 (eq. 40)'),
    'dist_fro_over_margin': ('norm', 'sum_i ||W_i - W_i^0||_F^2 / gamma^2'),
    'dist_spec': ('norm', 'sum_i ||W_i - W_i^0||_2^2 (eq. 41)'),
    'dist_spec_over_margin': ('norm', 'sum_i ||W_i - W_i^0||_2^2 / gamma^2'),
    'log_spectral_complexity_over_margin': ('norm', 'log of Bartlett et al. 2017 R_A / gamma'),
    'pacbayes_sigma': ('sharpness', 'largest isotropic noise sigma, accuracy drop <= 0.1'),
    'pacbayes_flatness': ('sharpness', '1 / sigma^2 (eq. 53)'),
    'pacbayes_init': ('sharpness', '||w - w0||^2 / (4 sigma^2) + log(m / sigma) + 10 (eq. 48)'),
    'pacbayes_orig': ('sharpness', '||w||^2 / (4 sigma^2) + log(m / sigma) + 10 (eq. 49)'),
    'pacbayes_mag_sigma': ('sharpness', 'largest magnitude-aware sigma\''),
    'pacbayes_mag_flatness': ('sharpness', '1 / sigma\'^2 (eq. 61)'),
    'pacbayes_mag_init': ('sharpness', 'magnitude-aware bound term, w - w0 (eq. 56)'),
    'pacbayes_mag_orig': ('sharpness', 'magnitude-aware bound term, w (eq. 57)'),
    'worst_case_alpha': ('sharpness', 'largest box alpha, gradient ascent, drop <= 0.1'),
    'worst_case_flatness': ('sharpness', '1 / alpha^2'),
    'steps_to_loss_0.1': ('optimization', 'steps until the training loss reached 0.1'),
    'steps_to_fit': ('optimization', 'steps until the training set was fitted'),
    'final_train_loss': ('optimization', 'the final evaluated training cross-entropy'),
    'rademacher': ('rademacher', '(1/m) sum sigma_i f(z_i), f = tanh of the logit difference'),
    'rademacher_sign': ('rademacher', '(1/m) sum sigma_i sign f(z_i) = 2 acc - 1'),
    'disagreement': ('agreement', 'test disagreement with the run that differs only in seed'),
}

FAMILIES = ('margin', 'norm', 'sharpness', 'optimization', 'rademacher', 'agreement')
# Families `python -m rethinking_tf.measure` computes by default; rademacher trains (opt-in),
# agreement needs a second run (the study computes it from saved test predictions).
DEFAULT_FAMILIES = ('margin', 'norm', 'sharpness', 'optimization')

MEASURES_FILE = 'measures.json'
PREDICTIONS_FILE = 'test_predictions.npy'


def run_problem(logdir: str) -> str | None:
  """Why `logdir` is not a finished run that the measures can read, or None."""
  import os  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(logdir):
    return f'{logdir} is not a directory'
  for name in ('config.json', 'results.json', 'metrics.csv'):
    if not os.path.exists(os.path.join(logdir, name)):
      return f'{logdir} has no {name} (not a finished training run)'
  if not os.path.exists(os.path.join(logdir, 'checkpoints', 'checkpoint')):
    return f'{logdir} has no checkpoints/ (its final weights)'
  return None
