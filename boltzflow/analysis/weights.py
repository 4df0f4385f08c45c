"""Self-normalised importance weights w ∝ p/q from log-weights log w = log p̃ − log q.

Non-finite log-weights (a clash, a point outside the support, NaN) count as weight 0.
All functions take ``log_w`` [n] and reduce over it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..numerics import clean_log
from .estimate import ArrayLike, Estimate, as_tensor, sample_log_weights, z_score


def _clean(log_w: Tensor) -> Tensor:
    if log_w.dim() != 1 or len(log_w) == 0:
        raise ValueError(f"log-weights must have shape [n] with n >= 1, got {list(log_w.shape)}")
    return clean_log(log_w)


def normalized_log_weights(log_w: Tensor) -> Tensor:
    """log of the self-normalised weights (they sum to 1); -inf where the weight is 0."""
    log_w = _clean(log_w)
    return log_w - torch.logsumexp(log_w, 0)


def kish_ess(log_w: Tensor) -> Tensor:
    """Kish's effective sample size as a fraction of n: (Σw)² / (n Σw²) in [1/n, 1]; 0 if all w = 0."""
    log_w = _clean(log_w)
    if torch.isinf(log_w).all():
        return log_w.new_zeros(())
    return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / len(log_w)


def log_normalizer(log_w: Tensor) -> Tensor:
    """Importance-sampling estimate of log Z = log E_q[p̃/q] (log-mean-exp of log w)."""
    log_w = _clean(log_w)
    return torch.logsumexp(log_w, 0) - math.log(len(log_w))


def log_normalizer_interval(log_w: ArrayLike, level: float = 0.95, exclude: Optional[ArrayLike] = None) -> Estimate:
    """log Z with a delta-method confidence interval.

    ``log_w`` [n] (torch or numpy); ``exclude`` [n] bool marks samples given weight 0 (they
    still count in n, so the estimate is log Z of the target restricted to the rest). The
    standard error of log Ẑ is sd(w) / (√n · mean w) = sqrt((1/ESS_fraction − 1) / (n − 1));
    it is meaningful only when the weights have a finite variance (PSIS k̂ < 0.5), and log Ẑ
    itself is biased low by about error²/2 (Jensen).
    """
    log_w = as_tensor(log_w, "log_w")
    if log_w.dim() != 1 or len(log_w) == 0:
        raise ValueError(f"log-weights must have shape [n] with n >= 1, got {list(log_w.shape)}")
    clean, n_excluded = sample_log_weights(log_w, log_w, exclude)
    n = len(clean)
    value = log_normalizer(clean).item()
    ess = kish_ess(clean).item()
    error = math.sqrt((1 / ess - 1) / (n - 1)) if ess > 0 and n > 1 else math.inf
    half = z_score(level) * error
    low, high = (value - half, value + half) if math.isfinite(half) else (-math.inf, math.inf)
    return Estimate(value, error, low, high, level, "delta method", n, n_excluded)
