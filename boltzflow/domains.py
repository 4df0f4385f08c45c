"""Per-dimension domains of points [batch, dim]: the real line, an interval, or the circle.

The ground floor shared by flows (one domain per dimension of the event: layers treat
each dimension by its nature, bases draw from them, ``Flow.log_prob`` is ``-inf`` outside
them), the MCMC samplers (chains wrap on circles and stay inside intervals) and the
internal coordinates (which declare the domains of their flat vector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

PI = math.pi


class Domain:
    """Base class of the three domains; subclasses are immutable value objects."""

    kind: str = ""
    low: float
    high: float

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise membership of ``x`` (bool tensor of the same shape)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Real(Domain):
    """The real line (-inf, inf)."""

    kind = "real"
    low = -math.inf
    high = math.inf

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(x)


@dataclass(frozen=True)
class Interval(Domain):
    """The closed interval [low, high] with finite low < high."""

    low: float = 0.0
    high: float = 1.0
    kind = "interval"

    def __post_init__(self) -> None:
        low, high = float(self.low), float(self.high)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"Interval needs finite low < high, got ({self.low}, {self.high})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        return (x >= self.low) & (x <= self.high)


@dataclass(frozen=True)
class Circle(Domain):
    """The circle of period 2π; values are represented in [-π, π)."""

    kind = "circle"
    low = -PI
    high = PI

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(x)


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Map angles (radians) onto [-π, π)."""
    y = torch.remainder(x + PI, 2 * PI) - PI
    # remainder can round up to exactly 2π for tiny negative inputs
    return torch.where(y >= PI, y - 2 * PI, y)


def check_domains(domains: Sequence[Domain]) -> tuple[Domain, ...]:
    """Validate a sequence of domains and return it as a tuple."""
    domains = tuple(domains)
    if not domains:
        raise ValueError("a flow needs at least one dimension; got an empty list of domains")
    for i, d in enumerate(domains):
        if not isinstance(d, Domain) or type(d) is Domain:
            raise TypeError(
                f"domain {i} is {d!r}; expected Real(), Interval(low, high) or Circle()"
            )
    return domains


def domain_masks(domains: Sequence[Domain]) -> dict[str, torch.Tensor]:
    """Boolean masks ``real``, ``interval``, ``circle`` and bounds ``low``, ``high`` (shape [dim])."""
    domains = check_domains(domains)
    return {
        "real": torch.tensor([d.kind == "real" for d in domains]),
        "interval": torch.tensor([d.kind == "interval" for d in domains]),
        "circle": torch.tensor([d.kind == "circle" for d in domains]),
        "low": torch.tensor([d.low for d in domains], dtype=torch.float64),
        "high": torch.tensor([d.high for d in domains], dtype=torch.float64),
    }


class Support(torch.nn.Module):
    """Membership of points [batch, dim] in per-dimension domains (``None``: any number of
    reals), and wrapping onto them.

    Circles contain every finite angle (they wrap); intervals are closed; reals are finite.
    The masks move with ``.to(device)`` and, on the fly, to the device of the points.
    """

    def __init__(self, domains: Optional[Sequence[Domain]] = None):
        super().__init__()
        domains = None if domains is None else check_domains(domains)
        self.dim: Optional[int] = None if domains is None else len(domains)
        m = domain_masks((Real(),) if domains is None else domains)  # one real broadcasts to any number
        self.has_circle = bool(m["circle"].any())
        self.register_buffer("circle", m["circle"], persistent=False)
        self.register_buffer("low", torch.where(m["interval"], m["low"], -math.inf), persistent=False)
        self.register_buffer("high", torch.where(m["interval"], m["high"], math.inf), persistent=False)
        mid = torch.where(m["interval"], (m["low"] + m["high"]) / 2, 0.0)
        self.register_buffer("mid", mid, persistent=False)

    def check(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is [batch, dim]."""
        if x.dim() != 2 or (self.dim is not None and x.shape[1] != self.dim):
            raise ValueError(f"x must have shape [batch, {self.dim or 'dim'}], got {list(x.shape)}")

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of ``x`` inside every domain: bool [batch]."""
        ok = torch.isfinite(x) & (x >= self.low.to(x)) & (x <= self.high.to(x))
        return ok.all(dim=-1)

    def wrap(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with circle dimensions wrapped onto [-π, π)."""
        return torch.where(self.circle.to(x.device), wrap(x), x) if self.has_circle else x

    def replace_outside(self, x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """``x`` with the rows where ``ok`` is False replaced by a point inside the domains."""
        return torch.where(ok[:, None], x, self.mid.to(x))
