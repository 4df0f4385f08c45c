"""Planar and radial flows (Rezende & Mohamed 2015) on the real dimensions.

Both have closed-form log-determinants; their inverses have no closed form in the
literature's presentation, so ``Planar.inverse`` solves a monotone scalar equation by
bisection (to machine precision, gradients by one implicit Newton step) and
``Radial.inverse`` solves a quadratic.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..domains import Domain
from .bijection import RealBijection


class Planar(RealBijection):
    """``y = x + û · tanh(wᵀx + b)`` with ``û`` constrained so that ``wᵀû ≥ -1`` (invertible)."""

    def __init__(self, domains: Sequence[Domain], bisection_steps: int = 100):
        super().__init__(domains)
        bound = math.sqrt(1.0 / self.n)
        self.u = nn.Parameter(torch.empty(self.n).uniform_(-bound, bound))
        self.w = nn.Parameter(torch.empty(self.n).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.zeros(()))
        self.bisection_steps = bisection_steps

    def _u_hat(self):
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w)

    def _log_det(self, a, u_hat):
        h_prime = 1 - torch.tanh(a + self.b) ** 2
        return torch.log(torch.abs(1 + h_prime * (self.w @ u_hat)))

    def _map(self, v, inverse):
        u_hat = self._u_hat()
        if not inverse:
            a = v @ self.w
            return v + u_hat * torch.tanh(a + self.b)[..., None], self._log_det(a, u_hat)
        # wᵀy = a + c·tanh(a + b) is increasing in a = wᵀx; a lies within |c| of wᵀy
        t, c = v @ self.w, self.w @ u_hat
        with torch.no_grad():
            lo, hi = t - c.abs(), t + c.abs()
            for _ in range(self.bisection_steps):
                mid = (lo + hi) / 2
                above = mid + c * torch.tanh(mid + self.b) > t
                lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
            a0 = (lo + hi) / 2
        # one Newton step from the converged root carries the implicit-function gradients
        th = torch.tanh(a0 + self.b)
        a = a0 - (a0 + c * th - t) / (1 + c * (1 - th * th))
        return v - u_hat * torch.tanh(a + self.b)[..., None], -self._log_det(a, u_hat)


class Radial(RealBijection):
    """``y = x + β (x - x₀) / (α + |x - x₀|)`` with ``α > 0`` and ``β ≥ -α`` (invertible)."""

    def __init__(self, domains: Sequence[Domain]):
        super().__init__(domains)
        self.x0 = nn.Parameter(torch.randn(self.n) / math.sqrt(self.n))
        self.raw_alpha = nn.Parameter(torch.zeros(()))
        self.raw_beta = nn.Parameter(torch.zeros(()))

    def _alpha_beta(self):
        alpha = F.softplus(self.raw_alpha)
        return alpha, -alpha + F.softplus(self.raw_beta)

    def _log_det(self, r, alpha, beta):
        h = 1 / (alpha + r)
        return (self.n - 1) * torch.log1p(beta * h) + torch.log1p(beta * h - beta * r * h * h)

    def _map(self, v, inverse):
        alpha, beta = self._alpha_beta()
        d = v - self.x0
        rd = torch.linalg.vector_norm(d, dim=-1)
        if not inverse:
            return v + beta * d / (alpha + rd)[..., None], self._log_det(rd, alpha, beta)
        # r solves r² + p·r - rd·α = 0 with p = α + β - rd; the stable root
        p = alpha + beta - rd
        root = torch.sqrt(p * p + 4 * rd * alpha)
        r = torch.where(p > 0, 2 * rd * alpha / (p + root), (root - p) / 2)
        scale = torch.where(rd > 0, r / rd.clamp_min(torch.finfo(v.dtype).tiny), torch.ones_like(rd))
        return self.x0 + d * scale[..., None], -self._log_det(r, alpha, beta)
