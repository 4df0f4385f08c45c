"""Importance weights on a case with a known answer: a Gaussian proposal for a Gaussian target.

For q = N(0, s²) and p̃ = Z · N(0, 1): E_q[w] = Z and E_q[w²]/E_q[w]² = s²/sqrt(2s² − 1),
so Kish's ESS fraction tends to sqrt(2s² − 1)/s² (for s² > 1/2).
"""

import math

import pytest
import torch

from boltzflow.analysis import kish_ess, log_normalizer, normalized_log_weights


def gaussian_log_weights(n, s, log_z, dtype=torch.float64):
    x = s * torch.randn(n, dtype=dtype)
    log_q = -0.5 * (x / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    log_p = log_z - 0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    return log_p - log_q


@pytest.mark.parametrize("s", [1.0, 1.5, 2.0])
def test_ess_and_log_z_match_the_analytic_values(s, dtype):
    log_w = gaussian_log_weights(200_000, s, log_z=3.0, dtype=dtype)
    assert kish_ess(log_w).item() == pytest.approx(math.sqrt(2 * s * s - 1) / s**2, rel=0.02)
    # standard error of log Z-hat is about sqrt((1/ESS - 1) / n)
    assert log_normalizer(log_w).item() == pytest.approx(3.0, abs=0.02)


def test_non_finite_weights_count_as_zero():
    log_w = torch.tensor([0.0, 0.0, float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    assert kish_ess(log_w).item() == pytest.approx(2 / 5)
    assert torch.exp(normalized_log_weights(log_w)).tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]
    assert kish_ess(torch.full((3,), float("nan"))).item() == 0.0
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        kish_ess(torch.zeros(2, 2))
