"""Systematic resampling: turn weighted samples into unweighted ones.

One uniform offset U ~ U[0, 1) places K evenly spaced points (U + k) / K, k = 0…K−1, on the
cumulative normalised weights; sample i is drawn once for every point that falls in its
stretch [c_{i−1}, c_i) of length w_i. Each sample is drawn ⌊K w_i⌋ or ⌈K w_i⌉ times (the
least variance an unbiased scheme can have per sample) and E[count_i] = K w_i exactly
(Kitagawa 1996; Douc & Cappé 2005).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..errors import BoltzflowError
from .estimate import ArrayLike, as_tensor, normalized_weights, sample_log_weights


def systematic_resample(log_w: ArrayLike, k: int, exclude: Optional[ArrayLike] = None,
                        generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices [k] (long, ascending, on the input's device) of ``k`` draws ∝ exp(log_w).

    ``log_w`` [n]: log-weights, normalised or not (torch or numpy); non-finite ones and the
    samples where ``exclude`` [n] is True have weight 0 and are never drawn. ``generator``
    (on the input's device) draws the offset. Raises ``BoltzflowError`` when no weight is
    left.
    """
    log_w = as_tensor(log_w, "log_w")
    if log_w.dim() != 1 or len(log_w) == 0:
        raise ValueError(f"log-weights must have shape [n] with n >= 1, got {list(log_w.shape)}")
    if k < 1:
        raise ValueError(f"the number of draws k must be >= 1, got {k}")
    clean, _ = sample_log_weights(log_w, log_w, exclude)
    if clean.max() == -math.inf:
        raise BoltzflowError("no sample has non-zero weight: nothing to resample")
    cumulative = torch.cumsum(normalized_weights(clean), 0)
    cumulative = cumulative / cumulative[-1]  # ends at 1 exactly
    offset = torch.rand((), generator=generator, dtype=torch.float64, device=log_w.device)
    points = (offset + torch.arange(k, dtype=torch.float64, device=log_w.device)) / k
    last = int(torch.nonzero(clean > -math.inf).max())  # a point rounded up to 1 lands on a weighted sample
    return torch.searchsorted(cumulative, points, right=True).clamp_(max=last)
