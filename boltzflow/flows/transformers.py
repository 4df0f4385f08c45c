"""Elementwise transformers: the per-dimension maps that conditioners parametrise.

A transformer holds no trainable parameters of its own. Given raw parameters
``params`` [batch, dim, n_params] from a conditioner, it maps ``x`` [batch, dim] to
``y`` and returns ``(y, log|det|)`` with the log-determinant summed to [batch].
All-zero raw parameters give the identity.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..domains import Domain, check_domains, domain_masks, wrap
from .splines import spline_bins_first


class Transformer(nn.Module):
    """The contract of a transformer: ``n_params`` raw parameters per dimension, and
    ``forward(x, params, inverse=False) -> (y, log|det| [batch])`` with ``params``
    [batch, dim, n_params]; all-zero parameters give the identity."""

    n_params: int

    def forward(self, x: torch.Tensor, params: torch.Tensor,
                inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class SplineTransformer(Transformer):
    """Rational-quadratic splines that treat each dimension by its domain.

    * ``Interval(a, b)``: maps [a, b] onto itself; both end derivatives are learned.
    * ``Circle()``: circular spline on [-π, π] with tied end derivatives (smooth on the
      circle, Rezende et al. 2020), followed by a learned rotation when ``rotation``.
    * ``Real()``: spline on [-tail_bound, tail_bound], identity (linear tails) outside.

    Raw parameters per dimension: K widths, K heights, K+1 derivatives, 1 rotation.
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        bins: int = 8,
        tail_bound: float = 5.0,
        rotation: bool = True,
        min_bin: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins}")
        if min_bin * bins >= 1:
            raise ValueError(f"min_bin * bins must be below 1, got {min_bin} * {bins}")
        self.domains = check_domains(domains)
        self.bins = bins
        self.n_params = 3 * bins + 2   # K widths, K heights, K+1 derivatives, 1 rotation
        self.rotation = rotation
        self.min_bin = min_bin
        self.min_derivative = min_derivative
        self.derivative_offset = math.log(math.expm1(1 - min_derivative))
        m = domain_masks(self.domains)
        left = torch.where(m["real"], torch.tensor(-tail_bound, dtype=torch.float64), m["low"])
        right = torch.where(m["real"], torch.tensor(tail_bound, dtype=torch.float64), m["high"])
        self.register_buffer("left", left, persistent=False)
        self.register_buffer("right", right, persistent=False)
        self.register_buffer("real", m["real"], persistent=False)
        self.register_buffer("circle", m["circle"], persistent=False)
        self.has_real = bool(m["real"].any())
        self.has_circle = bool(m["circle"].any())
        # inner knots are base + scale · cumsum(softmax) (the min_bin floor folded in)
        width = right - left
        self.register_buffer("knot_base", left + width * min_bin * torch.arange(1, bins)[:, None],
                             persistent=False)
        self.register_buffer("knot_scale", width * (1 - min_bin * bins), persistent=False)

    def _spline_args(self, params: torch.Tensor, dtype: torch.dtype):
        """x and y knots [..., 2, K+1, dim], knot derivatives [..., K+1, dim] and rotation
        [..., dim] from raw parameters [..., dim, n_params] (bins on dim -2, the layout of
        ``spline_bins_first``)."""
        K = self.bins
        uwh, ud, shift = params.transpose(-1, -2).contiguous().split([2 * K, K + 1, 1], dim=-2)
        # widths and heights in one softmax over the bins; bin i ends at
        # left + (right - left) · Σ_{j≤i} (min_bin + (1 - K·min_bin) · softmax_j)
        cum = torch.cumsum(torch.softmax(uwh.unflatten(-2, (2, K)), dim=-2)[..., :-1, :], dim=-2)
        inner = torch.addcmul(self.knot_base.to(dtype), self.knot_scale.to(dtype), cum)
        ends = inner.shape[:-2] + (1, inner.shape[-1])
        left, right = self.left.to(dtype).expand(ends), self.right.to(dtype).expand(ends)
        knots = torch.cat([left, inner, right], dim=-2)
        d = self.min_derivative + F.softplus(ud + self.derivative_offset)
        return knots, d, shift[..., 0, :]

    def forward(
        self, x: torch.Tensor, params: torch.Tensor, inverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        knots, d, shift = self._spline_args(params, x.dtype)
        left, right = self.left.to(x.dtype), self.right.to(x.dtype)
        rotate = self.rotation and self.has_circle
        if inverse and rotate:
            x = torch.where(self.circle, wrap(x - shift), x)
        y, log_d = spline_bins_first(
            x.clamp(left, right), knots, d, inverse,
            tied_ends=self.circle if self.has_circle else None,  # smooth on the circle
            unit_ends=self.real if self.has_real else None,  # matches the linear tails
        )
        if self.has_real:
            inside = (x >= left) & (x <= right)
            y = torch.where(inside, y, x)
            log_d = torch.where(inside, log_d, torch.zeros_like(log_d))
        if self.has_circle:
            y = torch.where(self.circle, wrap(y + shift) if (rotate and not inverse) else wrap(y), y)
        return y, log_d.sum(dim=-1)


class AffineTransformer(Transformer):
    """``y = x · exp(s) + t`` on real dimensions; other dimensions pass unchanged.

    The log-scale is softly bounded to (-max_log_scale, max_log_scale) for stability.
    """

    def __init__(self, domains: Sequence[Domain], max_log_scale: float = 5.0):
        super().__init__()
        self.n_params = 2
        self.domains = check_domains(domains)
        self.max_log_scale = max_log_scale
        self.register_buffer("real", domain_masks(self.domains)["real"], persistent=False)

    def forward(
        self, x: torch.Tensor, params: torch.Tensor, inverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.max_log_scale
        log_scale = b * torch.tanh(params[..., 0] / b)
        log_scale = torch.where(self.real, log_scale, torch.zeros_like(log_scale))
        shift = torch.where(self.real, params[..., 1], torch.zeros_like(log_scale))
        if inverse:
            return (x - shift) * torch.exp(-log_scale), -log_scale.sum(dim=-1)
        return x * torch.exp(log_scale) + shift, log_scale.sum(dim=-1)
