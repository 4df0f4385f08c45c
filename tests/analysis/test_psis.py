"""Pareto k̂ on weights whose tail index is known.

Generalized-Pareto weights w = σ (U^(−ξ) − 1)/ξ have tail shape ξ exactly (their excesses over
any threshold are again GPD(ξ)), so k̂ must recover ξ. The maximum-likelihood shape from M
tail draws has standard deviation ≈ (1 + ξ)/√M; the prior moves k̂ towards 0.5 by
10/(M + 10) of the gap. For q = N(0, s²) and p = N(0, 1), w ∝ exp(x²(1/s² − 1)/2) has
tail index 1 − s² when s < 1 and is bounded when s > 1.
"""

import math

import numpy as np
import pytest
import torch

from boltzflow.analysis import ParetoDiagnostic, khat_threshold, pareto_diagnostic, pareto_khat
from boltzflow.analysis.psis import PRIOR_OBSERVATIONS, fit_generalized_pareto, tail_length


def gpd_draws(n, xi, scale=2.0, generator=None):
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    return scale * torch.expm1(-xi * torch.log(u)) / xi


@pytest.mark.parametrize("xi", [0.2, 0.5, 0.8, 1.2])
def test_khat_recovers_the_tail_index_of_pareto_weights(xi):
    n = 100_000
    w = gpd_draws(n, xi, generator=torch.Generator().manual_seed(int(100 * xi)))
    m = tail_length(n)
    expected = (m * xi + PRIOR_OBSERVATIONS * 0.5) / (m + PRIOR_OBSERVATIONS)
    assert pareto_khat(torch.log(w)) == pytest.approx(expected, abs=4 * (1 + xi) / math.sqrt(m))


def test_fit_recovers_shape_and_scale_of_a_whole_sample():
    x = gpd_draws(20_000, 0.4, scale=3.0, generator=torch.Generator().manual_seed(3))
    xi, sigma = fit_generalized_pareto(x)
    assert xi == pytest.approx(0.4, abs=4 * 1.4 / math.sqrt(20_000))
    assert sigma == pytest.approx(3.0, rel=4 * math.sqrt(2 * 1.4) / math.sqrt(20_000))


def test_khat_of_gaussian_proposals_separates_good_from_unreliable():
    x = torch.randn(50_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    wide, narrow = 2.0 * x, 0.3 * x  # q = N(0, s²) for p = N(0, 1)
    log_w = lambda y, s: -0.5 * y**2 + 0.5 * (y / s) ** 2
    assert pareto_diagnostic(log_w(wide, 2.0)).verdict == "good"
    narrow_diagnostic = pareto_diagnostic(log_w(narrow, 0.3))  # tail index 1 − 0.09 = 0.91
    assert narrow_diagnostic.khat > 0.7 and narrow_diagnostic.verdict == "unreliable"


def test_thresholds_and_verdicts():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(1000) == pytest.approx(1 - 1 / 3)
    assert khat_threshold(10_000) == 0.7  # capped at 0.7 from n ≈ 2154 on
    assert ParetoDiagnostic(0.3, 0.7, 10_000).verdict == "good"
    assert ParetoDiagnostic(0.6, 0.7, 10_000).verdict == "ok"
    assert ParetoDiagnostic(0.75, 0.7, 10_000).verdict == "unreliable"
    assert ParetoDiagnostic(0.6, khat_threshold(200), 200).verdict == "unreliable"  # 0.6 > 0.565 at n = 200
    assert "unreliable" in str(ParetoDiagnostic(math.inf, 0.7, 10))


def test_degenerate_inputs_do_not_give_nan():
    assert pareto_khat(torch.zeros(1000)) == -math.inf  # equal weights: no tail
    assert pareto_khat(torch.randn(20)) == math.inf  # too few draws for a tail of 5
    assert pareto_khat(torch.full((100,), -math.inf)) == math.inf
    log_w = np.log(gpd_draws(5000, 0.5, generator=torch.Generator().manual_seed(1)).numpy())
    with_nan = np.concatenate([log_w, [np.nan, np.inf]])  # non-finite: weight 0
    assert math.isfinite(pareto_khat(log_w)) and math.isfinite(pareto_khat(with_nan))


def test_khat_is_the_same_on_any_device_and_dtype(device, dtype):
    log_w = torch.log(gpd_draws(10_000, 0.6, generator=torch.Generator().manual_seed(5)))
    reference = pareto_khat(log_w)
    tolerance = 1e-3 if dtype == torch.float32 else 1e-12
    assert pareto_khat(log_w.to(device, dtype)) == pytest.approx(reference, abs=tolerance)
