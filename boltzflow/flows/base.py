"""Base distributions of flows: products over domains, and a Gaussian mixture."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..domains import PI, Domain, Real, Support, check_domains, domain_masks, wrap

LOG_2PI = math.log(2 * PI)


class BaseDistribution(nn.Module):
    """A distribution over [batch, dim] points in ``domains``.

    ``rsample(n)`` draws with gradients (reparametrised where the family allows it);
    ``log_prob(x)`` returns [batch], ``-inf`` outside the domains. Both check their input
    and call the subclass's ``_rsample(n)`` and ``_log_prob(x)`` (points inside the domains).
    """

    def __init__(self, domains: Sequence[Domain]):
        super().__init__()
        self.domains = check_domains(domains)
        # moves with .to(device, dtype); tells where to draw samples
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self.support = Support(self.domains)

    @property
    def dim(self) -> int:
        return len(self.domains)

    def rsample(self, n: int) -> torch.Tensor:
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a number of samples >= 0, got {n!r}")
        return self._rsample(int(n))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        self.support.check(x)
        ok = self.support.contains(x)
        lp = self._log_prob(self.support.replace_outside(x, ok))
        return torch.where(ok, lp, torch.full_like(lp, -math.inf))

    def _rsample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(n)


class Marginal(nn.Module):
    """Independent marginals of the ``d`` coordinates ``index`` [d] of a base, all of one
    domain kind: ``rsample(n, like)`` draws [n, d] (dtype and device of ``like``),
    ``log_prob(x)`` of x [n, d] inside the domains returns [n]. ``low``, ``high`` [d]: the
    bounds (intervals only)."""

    def __init__(self, index: torch.Tensor, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)

    @property
    def d(self) -> int:
        return len(self.index)

    def rsample(self, n: int, like: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class StandardNormal(Marginal):
    """N(0, 1) per real coordinate."""

    def rsample(self, n, like):
        return like.new_empty(n, self.d).normal_()

    def log_prob(self, x):
        return -0.5 * (x * x + LOG_2PI).sum(-1)


class DiagonalNormal(Marginal):
    """N(loc, exp(log_scale)²) per real coordinate, trainable; starts as N(0, 1)."""

    def __init__(self, index, low, high):
        super().__init__(index, low, high)
        self.loc = nn.Parameter(torch.zeros(self.d))
        self.log_scale = nn.Parameter(torch.zeros(self.d))

    def rsample(self, n, like):
        return self.loc + torch.exp(self.log_scale) * like.new_empty(n, self.d).normal_()

    def log_prob(self, x):
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return (-0.5 * (z * z + LOG_2PI) - self.log_scale).sum(-1)


class UniformInterval(Marginal):
    """Uniform on each interval [low, high]."""

    def rsample(self, n, like):
        u = like.new_empty(n, self.d).uniform_()
        low, high = self.low.to(u), self.high.to(u)
        return low + (high - low) * u

    def log_prob(self, x):
        return -torch.log(self.high.to(x) - self.low.to(x)).sum().expand(len(x))


class TruncatedNormal(Marginal):
    """N(loc, exp(log_scale)²) truncated to each interval, trainable; starts centred with
    the half-width as scale. Drawn by inverting the CDF (reparametrised).
    ``trainable=False``: the fixed standard normal, N(0, 1), truncated."""

    def __init__(self, index, low, high, trainable: bool = True):
        super().__init__(index, low, high)
        if trainable:
            dtype = torch.get_default_dtype()
            self.loc = nn.Parameter(((low + high) / 2).to(dtype))
            self.log_scale = nn.Parameter(torch.log((high - low) / 2).to(dtype))
        else:  # buffers outside the state dict: a model file holds no base entries
            self.register_buffer("loc", torch.zeros(()), persistent=False)
            self.register_buffer("log_scale", torch.zeros(()), persistent=False)

    def rsample(self, n, like):
        u = like.new_empty(n, self.d).uniform_()
        low, high = self.low.to(u), self.high.to(u)
        scale = torch.exp(self.log_scale)
        a = torch.special.ndtr((low - self.loc) / scale)
        b = torch.special.ndtr((high - self.loc) / scale)
        p = (a + u * (b - a)).clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        return torch.minimum(torch.maximum(self.loc + scale * torch.special.ndtri(p), low), high)

    def log_prob(self, x):
        low, high = self.low.to(x), self.high.to(x)
        scale = torch.exp(self.log_scale)
        mass = torch.special.ndtr((high - self.loc) / scale) - torch.special.ndtr((low - self.loc) / scale)
        z = (x - self.loc) / scale
        return (-0.5 * (z * z + LOG_2PI) - self.log_scale - torch.log(mass)).sum(-1)


class TruncatedStandardNormal(TruncatedNormal):
    """N(0, 1) truncated to each interval, fixed: for coordinates already in units of their
    expected spread (bonds and angles scaled by their thermal widths)."""

    def __init__(self, index, low, high):
        super().__init__(index, low, high, trainable=False)


class UniformCircle(Marginal):
    """Uniform on each circle [-π, π)."""

    def rsample(self, n, like):
        return -PI + 2 * PI * like.new_empty(n, self.d).uniform_()

    def log_prob(self, x):
        return x.new_full((len(x),), -LOG_2PI * self.d)


class VonMises(Marginal):
    """Von Mises(loc, exp(log_concentration)) per circle, trainable; starts at loc 0,
    concentration 1. Its samples carry no gradient."""

    def __init__(self, index, low, high):
        super().__init__(index, low, high)
        self.loc = nn.Parameter(torch.zeros(self.d))
        self.log_concentration = nn.Parameter(torch.zeros(self.d))

    def rsample(self, n, like):
        return wrap(torch.distributions.VonMises(self.loc, torch.exp(self.log_concentration)).sample((n,)))

    def log_prob(self, x):
        kappa = torch.exp(self.log_concentration)
        log_norm = LOG_2PI + torch.log(torch.special.i0e(kappa)) + kappa
        return (kappa * torch.cos(x - self.loc) - log_norm).sum(-1)


# the marginal families by domain kind and name (ProductBase's real=, interval=, circle=)
MARGINALS: dict[str, dict[str, type[Marginal]]] = {
    "real": {"normal": StandardNormal, "diag_normal": DiagonalNormal},
    "interval": {"uniform": UniformInterval, "normal": TruncatedStandardNormal, "truncated_normal": TruncatedNormal},
    "circle": {"uniform": UniformCircle, "von_mises": VonMises},
}


class ProductBase(BaseDistribution):
    """Independent marginals, one family (``MARGINALS``) per domain kind.

    Args:
        domains: one domain per dimension.
        real: ``"normal"`` (standard normal) or ``"diag_normal"`` (trainable mean and scale).
        interval: ``"uniform"``, ``"normal"`` (the standard normal truncated to the interval:
            for coordinates already in units of their expected spread, such as bonds and
            angles scaled by their thermal widths) or ``"truncated_normal"`` (trainable,
            starts centred with the half-width as scale).
        circle: ``"uniform"`` or ``"von_mises"`` (trainable mean and concentration, starts
            at mean 0, concentration 1; its samples carry no gradient).

    Example:
        >>> from boltzflow.flows import Circle, Interval, ProductBase
        >>> base = ProductBase([Interval(-1.0, 1.0), Circle()], interval="normal")
        >>> base.sample(5).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        real: str = "normal",
        interval: str = "uniform",
        circle: str = "uniform",
    ):
        super().__init__(domains)
        self.families = {"real": real, "interval": interval, "circle": circle}
        for kind, family in self.families.items():
            if family not in MARGINALS[kind]:
                raise ValueError(f"{kind}={family!r} is not a known family; choose one of {tuple(MARGINALS[kind])}")
        masks = domain_masks(self.domains)
        self.marginals = nn.ModuleDict()  # kind → Marginal, for the kinds present
        for kind, family in self.families.items():
            index = masks[kind].nonzero()[:, 0]
            if len(index):
                self.marginals[kind] = MARGINALS[kind][family](index, masks["low"][index], masks["high"][index])

    def _rsample(self, n: int) -> torch.Tensor:
        x = self._anchor.new_empty(n, self.dim)
        for marginal in self.marginals.values():
            x = x.index_copy(1, marginal.index, marginal.rsample(n, self._anchor))
        return x

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lp = x.new_zeros(len(x))
        for marginal in self.marginals.values():
            lp = lp + marginal.log_prob(x[:, marginal.index])
        return lp


class GaussianMixture(BaseDistribution):
    """Trainable mixture of ``components`` diagonal Gaussians on R^dim.

    Samples are reparametrised in the means and scales; the component choice carries no
    gradient.
    """

    def __init__(self, dim: int, components: int = 8, spread: float = 1.0):
        super().__init__([Real()] * dim)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(spread * torch.randn(components, dim))
        self.log_scale = nn.Parameter(torch.zeros(components, dim))

    def _rsample(self, n: int) -> torch.Tensor:
        k = torch.multinomial(torch.softmax(self.logits.detach(), -1), n, replacement=True)
        eps = self._anchor.new_empty(n, self.dim).normal_()
        return self.loc[k] + torch.exp(self.log_scale[k]) * eps

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, None, :] - self.loc) * torch.exp(-self.log_scale)
        comp = (-0.5 * (z * z + LOG_2PI) - self.log_scale).sum(-1)
        return torch.logsumexp(comp + torch.log_softmax(self.logits, -1), dim=-1)
