"""Self-normalised importance weights w ∝ p/q from log-weights log w = log p̃ − log q.

Non-finite log-weights (a clash, a point outside the support, NaN) count as weight 0.
All functions take ``log_w`` [n] and reduce over it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _clean(log_w: Tensor) -> Tensor:
    if log_w.dim() != 1 or len(log_w) == 0:
        raise ValueError(f"log-weights must have shape [n] with n >= 1, got {list(log_w.shape)}")
    return torch.where(torch.isnan(log_w) | (log_w == math.inf), torch.full_like(log_w, -math.inf), log_w)


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
