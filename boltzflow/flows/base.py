"""Base distributions of flows: products over domains, and a Gaussian mixture."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .domains import PI, Domain, Real, Support, check_domains, domain_masks, wrap

LOG_2PI = math.log(2 * PI)


class BaseDistribution(nn.Module):
    """A distribution over [batch, dim] points in ``domains``.

    ``rsample(n)`` draws with gradients (reparametrised where the family allows it);
    ``log_prob(x)`` returns [batch], ``-inf`` outside the domains.
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
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(n)


class ProductBase(BaseDistribution):
    """Independent marginals chosen per domain kind.

    Args:
        domains: one domain per dimension.
        real: ``"normal"`` (standard normal) or ``"diag_normal"`` (trainable mean and scale).
        interval: ``"uniform"``, ``"normal"`` (the standard normal truncated to the interval:
            for coordinates already in units of their expected spread, such as bonds and
            angles scaled by their thermal widths) or ``"truncated_normal"`` (trainable,
            starts centred with the half-width as scale).
        circle: ``"uniform"`` or ``"von_mises"`` (trainable mean and concentration, starts
            at mean 0, concentration 1; its samples carry no gradient).
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        real: str = "normal",
        interval: str = "uniform",
        circle: str = "uniform",
    ):
        super().__init__(domains)
        for name, value, allowed in [
            ("real", real, ("normal", "diag_normal")),
            ("interval", interval, ("uniform", "normal", "truncated_normal")),
            ("circle", circle, ("uniform", "von_mises")),
        ]:
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not a known family; choose one of {allowed}")
        self.families = {"real": real, "interval": interval, "circle": circle}
        m = domain_masks(self.domains)
        for kind in ("real", "interval", "circle"):
            self.register_buffer(f"idx_{kind}", m[kind].nonzero()[:, 0], persistent=False)
        self.register_buffer("low", m["low"][m["interval"]], persistent=False)
        self.register_buffer("high", m["high"][m["interval"]], persistent=False)
        n_real, n_int, n_circ = (len(getattr(self, f"idx_{k}")) for k in ("real", "interval", "circle"))
        if real == "diag_normal":
            self.real_loc = nn.Parameter(torch.zeros(n_real))
            self.real_log_scale = nn.Parameter(torch.zeros(n_real))
        if interval == "truncated_normal":
            dtype = torch.get_default_dtype()
            self.interval_loc = nn.Parameter(((self.low + self.high) / 2).to(dtype))
            self.interval_log_scale = nn.Parameter(torch.log((self.high - self.low) / 2).to(dtype))
        if circle == "von_mises":
            self.circle_loc = nn.Parameter(torch.zeros(n_circ))
            self.circle_log_concentration = nn.Parameter(torch.zeros(n_circ))

    def _parts(self):
        return [(k, getattr(self, f"idx_{k}")) for k in ("real", "interval", "circle")
                if len(getattr(self, f"idx_{k}"))]

    def rsample(self, n: int) -> torch.Tensor:
        like = self._anchor
        x = like.new_empty(n, self.dim)
        for kind, idx in self._parts():
            x = x.index_copy(1, idx, getattr(self, f"_rsample_{kind}")(n, len(idx)))
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        ok = self.support.contains(x)
        safe = self.support.replace_outside(x, ok)
        lp = x.new_zeros(len(x))
        for kind, idx in self._parts():
            lp = lp + getattr(self, f"_log_prob_{kind}")(safe[:, idx])
        return torch.where(ok, lp, torch.full_like(lp, -math.inf))

    # --- real dimensions
    def _rsample_real(self, n, d):
        eps = self._anchor.new_empty(n, d).normal_()
        if self.families["real"] == "normal":
            return eps
        return self.real_loc + torch.exp(self.real_log_scale) * eps

    def _log_prob_real(self, x):
        if self.families["real"] == "normal":
            return -0.5 * (x * x + LOG_2PI).sum(-1)
        z = (x - self.real_loc) * torch.exp(-self.real_log_scale)
        return (-0.5 * (z * z + LOG_2PI) - self.real_log_scale).sum(-1)

    # --- interval dimensions
    def _interval_loc_log_scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.families["interval"] == "normal":
            return like.new_zeros(()), like.new_zeros(())
        return self.interval_loc, self.interval_log_scale

    def _rsample_interval(self, n, d):
        u = self._anchor.new_empty(n, d).uniform_()
        low, high = self.low.to(u), self.high.to(u)
        if self.families["interval"] == "uniform":
            return low + (high - low) * u
        loc, log_scale = self._interval_loc_log_scale(u)
        scale = torch.exp(log_scale)
        a = torch.special.ndtr((low - loc) / scale)
        b = torch.special.ndtr((high - loc) / scale)
        p = (a + u * (b - a)).clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        return torch.minimum(torch.maximum(loc + scale * torch.special.ndtri(p), low), high)

    def _log_prob_interval(self, x):
        low, high = self.low.to(x), self.high.to(x)
        if self.families["interval"] == "uniform":
            return -torch.log(high - low).sum().expand(len(x))
        loc, log_scale = self._interval_loc_log_scale(x)
        scale = torch.exp(log_scale)
        mass = torch.special.ndtr((high - loc) / scale) - torch.special.ndtr((low - loc) / scale)
        z = (x - loc) / scale
        return (-0.5 * (z * z + LOG_2PI) - log_scale - torch.log(mass)).sum(-1)

    # --- circle dimensions
    def _rsample_circle(self, n, d):
        if self.families["circle"] == "uniform":
            return -PI + 2 * PI * self._anchor.new_empty(n, d).uniform_()
        vm = torch.distributions.VonMises(self.circle_loc, torch.exp(self.circle_log_concentration))
        return wrap(vm.sample((n,)))

    def _log_prob_circle(self, x):
        if self.families["circle"] == "uniform":
            return x.new_full((len(x),), -LOG_2PI * x.shape[-1])
        kappa = torch.exp(self.circle_log_concentration)
        log_norm = LOG_2PI + torch.log(torch.special.i0e(kappa)) + kappa
        return (kappa * torch.cos(x - self.circle_loc) - log_norm).sum(-1)


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

    def rsample(self, n: int) -> torch.Tensor:
        k = torch.multinomial(torch.softmax(self.logits.detach(), -1), n, replacement=True)
        eps = self._anchor.new_empty(n, self.dim).normal_()
        return self.loc[k] + torch.exp(self.log_scale[k]) * eps

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, None, :] - self.loc) * torch.exp(-self.log_scale)
        comp = (-0.5 * (z * z + LOG_2PI) - self.log_scale).sum(-1)
        lp = torch.logsumexp(comp + torch.log_softmax(self.logits, -1), dim=-1)
        return torch.where(self.support.contains(x), lp, torch.full_like(lp, -math.inf))
