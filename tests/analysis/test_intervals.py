"""Confidence intervals cover the truth at their nominal rate.

Each test repeats a small problem 200 times. For a calibrated 95% interval the number of
repetitions that cover the truth is Binomial(200, 0.95): mean 190, standard deviation 3.1.
Accepting 181–199 (±3 standard deviations) rejects a calibrated interval with probability
≈ 0.3%, and catches intervals that are clearly too narrow (< 90% coverage) or too wide.
"""

import math

import pytest
import torch

from boltzflow.analysis import delta_f, log_normalizer, log_normalizer_interval

from .cases import double_well, double_well_delta_f, exact_draws

REPS = 200
ACCEPTED = range(181, 200)


def test_delta_method_interval_of_log_z_covers_at_the_nominal_rate():
    s, n, log_z = 1.5, 500, 2.0  # q = N(0, s²), p̃ = Z · N(0, 1): finite-variance weights
    x = s * torch.randn(REPS, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    log_w = log_z - 0.5 * x**2 + 0.5 * (x / s) ** 2 + math.log(s)
    estimates = [log_normalizer_interval(row) for row in log_w]
    covered = sum(e.low <= log_z <= e.high for e in estimates)
    assert covered in ACCEPTED, covered
    # the standard error matches the analytic one, sqrt((s²/sqrt(2s² − 1) − 1) / n)
    analytic = math.sqrt((s**2 / math.sqrt(2 * s**2 - 1) - 1) / n)
    assert sum(e.error for e in estimates) / REPS == pytest.approx(analytic, rel=0.1)
    assert estimates[0].value == pytest.approx(log_normalizer(log_w[0]).item(), rel=1e-12)


def test_bootstrap_interval_of_delta_f_covers_at_the_nominal_rate():
    n = 400
    truth = double_well_delta_f()
    x = exact_draws(double_well, -4, 4, REPS * n, torch.Generator().manual_seed(1)).view(REPS, n)
    generator = torch.Generator().manual_seed(2)
    estimates = [delta_f(row < 0, row >= 0, n_boot=500, generator=generator) for row in x]
    covered = sum(e.low <= truth <= e.high for e in estimates)
    assert covered in ACCEPTED, covered


def test_interval_of_log_z_without_any_weight_is_unbounded_not_nan():
    estimate = log_normalizer_interval(torch.full((10,), -math.inf))
    assert estimate.value == -math.inf and (estimate.low, estimate.high) == (-math.inf, math.inf)
    excluded = log_normalizer_interval(torch.zeros(10), exclude=torch.arange(10) < 5)
    assert excluded.value == pytest.approx(math.log(0.5)) and excluded.n_excluded == 5
