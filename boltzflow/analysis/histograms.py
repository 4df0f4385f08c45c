"""Weighted histograms on any device: periodic angle bins over [-π, π) and interval bins.

Bin indices come from arithmetic and the counts from ``torch.bincount`` (no CPU-only
``torch.histogram``); bootstrap replicates are histogrammed in one call per chunk.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def wrap_angle(x: Tensor) -> Tensor:
    """Angles (radians) mapped into [-π, π)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def angle_bin_index(x: Tensor, bins: int) -> Tensor:
    """Index in [0, bins) of each angle [n] (radians, any period) on ``bins`` equal bins of [-π, π)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    index = torch.floor((wrap_angle(x.to(torch.float64)) + math.pi) / (2 * math.pi) * bins).long()
    return index.clamp(0, bins - 1)


def interval_bin_index(x: Tensor, low: float, high: float, bins: int) -> Tensor:
    """Index in [0, bins) of each value [n] on equal bins of [low, high] (``high`` in the last
    bin); -1 outside."""
    if not high > low or bins < 1:
        raise ValueError(f"need high > low and bins >= 1, got [{low}, {high}] and {bins} bins")
    x = x.to(torch.float64)
    index = torch.floor((x - low) / (high - low) * bins).long().clamp(max=bins - 1)
    return torch.where((x >= low) & (x <= high), index, torch.full_like(index, -1))


def plane_bin_index(first: Tensor, second: Tensor, bins: int) -> Tensor:
    """Flat index in [0, bins²) of angle pairs [n] on a periodic ``bins`` × ``bins`` grid
    (row: first angle, column: second)."""
    return angle_bin_index(first, bins) * bins + angle_bin_index(second, bins)


def angle_bin_centers(bins: int, device=None) -> Tensor:
    """Centres [bins] (radians, float64) of equal bins over [-π, π)."""
    return -math.pi + (torch.arange(bins, dtype=torch.float64, device=device) + 0.5) * (2 * math.pi / bins)


def histogram(index: Tensor, weights: Tensor, bins: int) -> Tensor:
    """Sum of ``weights`` [n] per bin [bins]; indices < 0 (outside) are dropped."""
    inside = index >= 0
    return torch.bincount(index[inside], weights=weights[inside], minlength=bins).to(weights.dtype)


def resampled_histograms(index: Tensor, weights: Tensor, bins: int, draws: Tensor) -> Tensor:
    """Histograms [chunk, bins] of the bootstrap resamples ``draws`` [chunk, n] (sample indices)."""
    rows = len(draws)
    idx, w = index[draws], weights[draws]
    inside = idx >= 0
    offset = torch.arange(rows, device=idx.device)[:, None] * bins
    flat = (idx + offset)[inside]
    return torch.bincount(flat, weights=w[inside], minlength=rows * bins).to(weights.dtype).view(rows, bins)
