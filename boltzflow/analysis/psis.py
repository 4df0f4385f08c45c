"""Pareto k̂: how heavy the upper tail of the importance weights is (Vehtari et al. 2024,
"Pareto smoothed importance sampling", JMLR 25(72)).

A generalized Pareto distribution (GPD), F(x) = 1 − (1 + ξ x / σ)^(−1/ξ), is fitted to the
exceedances of the M = ⌈min(n/5, 3√n)⌉ largest weights over the (M+1)-th largest, with
the empirical-Bayes estimator of Zhang & Stephens (2009, Technometrics 51:316); k̂ is the
fitted shape ξ, pulled towards 0.5 by a weakly informative prior worth 10 observations:
k̂ = (M ξ̂ + 10 · 0.5) / (M + 10).

Reading k̂: the weights have 1/k̂ finite moments. k̂ < 0.5: finite variance, estimates
reliable ("good"); 0.5 ≤ k̂ ≤ 0.7: infinite variance, still usable with care ("ok");
k̂ > 0.7, or above the sample-size threshold min(1 − 1/log10 n, 0.7) that is stricter for
n < 2154: unreliable, whatever the ESS says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..numerics import clean_log
from .estimate import ArrayLike, as_tensor

PRIOR_OBSERVATIONS = 10  # weight of the prior that pulls k̂ towards 0.5
MIN_TAIL = 5


def fit_generalized_pareto(x: Tensor) -> tuple[float, float]:
    """Zhang & Stephens (2009) estimate (ξ, σ) of a GPD from exceedances ``x`` [M] > 0.

    With θ = −ξ/σ, the profile log-likelihood is ℓ(θ) = M (log(−θ/ξ(θ)) − ξ(θ) − 1) where
    ξ(θ) = mean log(1 − θx) is the likelihood's maximiser for that θ. θ̂ is the posterior
    mean of θ over the grid θ_j = 1/x_(M) + (1 − √(m/(j − ½))) / (3 x_(⌊M/4 + ½⌋)),
    j = 1…m, m = 30 + ⌊√M⌋, each point weighted ∝ exp ℓ(θ_j); then ξ̂ = ξ(θ̂), σ̂ = −ξ̂/θ̂.
    """
    x = torch.sort(x.to(torch.float64)).values
    size = len(x)
    m = 30 + int(math.sqrt(size))
    j = torch.arange(1, m + 1, dtype=x.dtype, device=x.device)
    quartile = x[int(size / 4 + 0.5) - 1]
    theta = 1 / x[-1] + (1 - torch.sqrt(m / (j - 0.5))) / (3 * quartile)
    xi = torch.log1p(-theta[:, None] * x).mean(1)
    profile = size * (torch.log(-theta / xi) - xi - 1)
    theta_hat = (torch.softmax(profile, 0) * theta).sum()
    xi_hat = torch.log1p(-theta_hat * x).mean()
    return xi_hat.item(), (-xi_hat / theta_hat).item()


def tail_length(n: int) -> int:
    """M = ⌈min(n/5, 3√n)⌉ largest weights enter the fit."""
    return math.ceil(min(0.2 * n, 3 * math.sqrt(n)))


def pareto_khat(log_w: ArrayLike) -> float:
    """k̂ of log-weights [n] (torch or numpy); non-finite log-weights count as weight 0.

    Returns ``inf`` when n is too small for a tail of 5 weights (n < 25) or fewer than 5
    tail weights exceed the threshold while some do, and ``-inf`` when the largest weights
    are all equal (no tail at all, e.g. unweighted samples).
    """
    log_w = as_tensor(log_w, "log_w").to(torch.float64)
    if log_w.dim() != 1:
        raise ValueError(f"log-weights must have shape [n], got {list(log_w.shape)}")
    log_w = clean_log(log_w)
    size = tail_length(len(log_w))
    if size < MIN_TAIL or len(log_w) <= size:
        return math.inf
    top = torch.topk(log_w, size + 1).values
    if top[0] == -math.inf:
        return math.inf
    scaled = torch.exp(top - top[0])  # GPD shape is scale invariant: weights over the largest
    x = scaled[:size] - scaled[size]
    x = x[x > 0]
    if len(x) < MIN_TAIL:
        return -math.inf if len(x) == 0 else math.inf
    xi, _ = fit_generalized_pareto(x)
    return (len(x) * xi + PRIOR_OBSERVATIONS * 0.5) / (len(x) + PRIOR_OBSERVATIONS)


def khat_threshold(n: int) -> float:
    """Sample-size dependent reliability threshold min(1 − 1/log10 n, 0.7) (Vehtari et al. 2024)."""
    if n < 2:
        return -math.inf
    return min(1 - 1 / math.log10(n), 0.7)


@dataclass(frozen=True)
class ParetoDiagnostic:
    """k̂ of n weights, the threshold for that n, and the verdict ("good", "ok", "unreliable")."""

    khat: float
    threshold: float
    n: int

    @property
    def verdict(self) -> str:
        if not self.khat <= self.threshold:
            return "unreliable"
        return "good" if self.khat < 0.5 else "ok"

    def __str__(self) -> str:
        return f"k̂ = {self.khat:.3f} ({self.verdict}; threshold {self.threshold:.3f} for n = {self.n})"


def pareto_diagnostic(log_w: ArrayLike) -> ParetoDiagnostic:
    """k̂ of log-weights [n] with its verdict: good (< 0.5), ok (≤ 0.7 and ≤ the threshold
    for n), unreliable (above either)."""
    n = len(log_w)
    return ParetoDiagnostic(pareto_khat(log_w), khat_threshold(n), n)
