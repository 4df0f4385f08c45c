"""Toy targets with the same interface as molecular energies, for tests and tutorials.

Each maps points ``x`` [batch, dim] to a reduced energy ``u`` [batch] (the negative
unnormalised log-density), carries its ``domains``, and, where known in closed form,
its log-normaliser ``log_z`` (so that log p = -u - log_z).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..domains import Circle, Real


class ToyTarget(nn.Module):
    """Base of the toy targets: ``u = target(x)`` with ``x`` [batch, dim]."""

    domains: tuple
    log_z: Optional[float] = None

    @property
    def dim(self) -> int:
        return len(self.domains)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape [batch, {self.dim}], got {list(x.shape)}")


class DoubleWell(ToyTarget):
    """2-D double well u = a⁴ - 6a² - 0.5a + ½x₂², a = x₁/``separation`` (FAB's many-well factor).

    The minima lie near x₁ = ±1.7·separation, 9 kT apart by a barrier; the right one holds
    84.4% of the mass. A separation of 3 puts them far outside a standard normal base,
    where reverse KL drops a mode.
    """

    domains = (Real(), Real())

    def __init__(self, separation: float = 1.0):
        super().__init__()
        self.separation = separation

    def forward(self, x):
        self._check(x)
        a, b = x[:, 0] / self.separation, x[:, 1]
        return a**4 - 6 * a**2 - 0.5 * a + 0.5 * b**2


class ManyWell(ToyTarget):
    """``dim/2`` independent copies of ``DoubleWell`` (default 32-D: 2¹⁶ modes)."""

    def __init__(self, dim: int = 32):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"ManyWell needs an even dim >= 2, got {dim}")
        self.domains = (Real(),) * dim
        self.well = DoubleWell()

    def forward(self, x):
        self._check(x)
        return self.well(x.reshape(-1, 2)).reshape(len(x), -1).sum(-1)


class GaussianMixture2D(ToyTarget):
    """Equal-weight mixture of isotropic Gaussians (std ``scale``) on a circle of ``radius``."""

    domains = (Real(), Real())

    def __init__(self, modes: int = 8, radius: float = 4.0, scale: float = 0.5):
        super().__init__()
        angle = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
        self.register_buffer("means", radius * torch.stack([angle.cos(), angle.sin()], -1), persistent=False)
        self.scale = scale
        self.log_z = 0.0  # the energy below is the exact negative log-density

    def forward(self, x):
        self._check(x)
        d2 = ((x[:, None, :] - self.means.to(x)) ** 2).sum(-1) / self.scale**2
        comp = -0.5 * d2 - math.log(2 * math.pi * self.scale**2)
        return -(torch.logsumexp(comp, -1) - math.log(len(self.means)))


class ShiftedGaussian(ToyTarget):
    """N(μ=[5, 5], Σ=0.5·I): the target of FlowTorch's first-flow tutorial."""

    domains = (Real(), Real())

    def __init__(self, mean: float = 5.0, variance: float = 0.5):
        super().__init__()
        self.mean, self.variance = mean, variance
        self.log_z = math.log(2 * math.pi * variance)

    def forward(self, x):
        self._check(x)
        return ((x - self.mean) ** 2).sum(-1) / (2 * self.variance)


class Cylinder(ToyTarget):
    """x ~ N(0, 1) and φ | x ~ von Mises(3x, 1) on (Real, Circle) (the normflows paper's example)."""

    domains = (Real(), Circle())

    def __init__(self, concentration: float = 1.0, slope: float = 3.0):
        super().__init__()
        self.concentration, self.slope = concentration, slope
        k = torch.tensor(concentration, dtype=torch.float64)
        self.log_z = 0.5 * math.log(2 * math.pi) + math.log(2 * math.pi) + float(torch.log(torch.special.i0(k)))

    def forward(self, x):
        self._check(x)
        return 0.5 * x[:, 0] ** 2 - self.concentration * torch.cos(x[:, 1] - self.slope * x[:, 0])
