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

from .domains import Domain, check_domains, domain_masks, wrap
from .splines import rational_quadratic


class SplineTransformer(nn.Module):
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

    @property
    def n_params(self) -> int:
        return 3 * self.bins + 2

    def _spline_args(self, params: torch.Tensor):
        K = self.bins
        uw, uh, ud, shift = params.split([K, K, K + 1, 1], dim=-1)
        widths = self.min_bin + (1 - self.min_bin * K) * torch.softmax(uw, dim=-1)
        heights = self.min_bin + (1 - self.min_bin * K) * torch.softmax(uh, dim=-1)
        d = self.min_derivative + F.softplus(ud + self.derivative_offset)
        if self.has_real or self.has_circle:
            one = torch.ones_like(d[..., :1])
            first = torch.where(self.real[:, None], one, d[..., :1])
            last = torch.where(self.circle[:, None], first, d[..., -1:])
            last = torch.where(self.real[:, None], one, last)
            d = torch.cat([first, d[..., 1:-1], last], dim=-1)
        return widths, heights, d, shift[..., 0]

    def forward(
        self, x: torch.Tensor, params: torch.Tensor, inverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        widths, heights, d, shift = self._spline_args(params)
        left, right = self.left.to(x.dtype), self.right.to(x.dtype)
        rotate = self.rotation and self.has_circle
        if inverse and rotate:
            x = torch.where(self.circle, wrap(x - shift), x)
        inside = (x >= left) & (x <= right)
        y, log_d = rational_quadratic(
            x.clamp(left, right), widths, heights, d, left, right, inverse=inverse
        )
        if self.has_real:
            y = torch.where(inside, y, x)
            log_d = torch.where(inside, log_d, torch.zeros_like(log_d))
        if self.has_circle:
            y = torch.where(self.circle, wrap(y + shift) if (rotate and not inverse) else wrap(y), y)
        return y, log_d.sum(dim=-1)


class AffineTransformer(nn.Module):
    """``y = x · exp(s) + t`` on real dimensions; other dimensions pass unchanged.

    The log-scale is softly bounded to (-max_log_scale, max_log_scale) for stability.
    """

    n_params = 2

    def __init__(self, domains: Sequence[Domain], max_log_scale: float = 5.0):
        super().__init__()
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
