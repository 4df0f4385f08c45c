"""Per-dimension domains of a flow: the real line, an interval, or the circle.

A flow carries one domain per dimension of its event. Layers read the domains to
treat each dimension by its nature; bases draw from them; ``Flow.log_prob`` is
``-inf`` for points outside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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
    """Membership tests for points [batch, dim] in per-dimension domains.

    Circles contain every finite angle (they wrap); intervals are closed; reals are finite.
    """

    def __init__(self, domains: Sequence[Domain]):
        super().__init__()
        m = domain_masks(domains)
        self.has_circle = bool(m["circle"].any())
        self.register_buffer("bounded", m["interval"], persistent=False)
        self.register_buffer("circle", m["circle"], persistent=False)
        self.register_buffer("low", torch.where(m["interval"], m["low"], -math.inf), persistent=False)
        self.register_buffer("high", torch.where(m["interval"], m["high"], math.inf), persistent=False)
        mid = torch.where(m["interval"], (m["low"] + m["high"]) / 2, 0.0)
        self.register_buffer("mid", mid, persistent=False)

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of ``x`` inside every domain: bool [batch]."""
        ok = torch.isfinite(x) & (x >= self.low.to(x)) & (x <= self.high.to(x))
        return ok.all(dim=-1)

    def wrap(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with circle dimensions wrapped onto [-π, π)."""
        return torch.where(self.circle, wrap(x), x) if self.has_circle else x

    def replace_outside(self, x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """``x`` with the rows where ``ok`` is False replaced by a point inside the domains."""
        return torch.where(ok[:, None], x, self.mid.to(x))


class Embedding(torch.nn.Module):
    """Network features of points in the domains: circles as (cos, sin), intervals scaled to [-1, 1].

    Maps [batch, dim] to [batch, features]; ``source[j]`` is the input dimension feature j
    came from (autoregressive masks need it).
    """

    def __init__(self, domains: Sequence[Domain]):
        super().__init__()
        domains = check_domains(domains)
        flat = [i for i, d in enumerate(domains) if d.kind != "circle"]
        circ = [i for i, d in enumerate(domains) if d.kind == "circle"]
        center = [0.0 if domains[i].kind == "real" else (domains[i].low + domains[i].high) / 2 for i in flat]
        half = [1.0 if domains[i].kind == "real" else (domains[i].high - domains[i].low) / 2 for i in flat]
        self.register_buffer("flat", torch.tensor(flat, dtype=torch.long), persistent=False)
        self.register_buffer("circ", torch.tensor(circ, dtype=torch.long), persistent=False)
        self.register_buffer("center", torch.tensor(center, dtype=torch.float64), persistent=False)
        self.register_buffer("half_width", torch.tensor(half, dtype=torch.float64), persistent=False)
        self.source = flat + circ + circ
        self.features = len(self.source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = (x[..., self.flat] - self.center.to(x.dtype)) / self.half_width.to(x.dtype)
        angles = x[..., self.circ]
        return torch.cat([flat, torch.cos(angles), torch.sin(angles)], dim=-1)
