"""``Flow``: a base distribution pushed through a sequence of bijections."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .base import BaseDistribution
from .bijection import Bijection
from ..domains import Support


class Flow(nn.Module):
    """A normalising flow with the ``torch.distributions`` vocabulary.

    ``bijections[0]`` acts on base samples, ``bijections[-1]`` produces data. Each
    bijection's input domains must equal the previous one's output domains; the flow's
    ``domains`` are those of the data side.

    Shapes: samples and ``x`` are [batch, dim]; log-densities are [batch].
    ``context`` (optional) is [batch, context_dim] and reaches every bijection.

    Example:
        >>> from boltzflow.flows import AffineAutoregressive, Flow, ProductBase, Real
        >>> flow = Flow(ProductBase([Real(), Real()]), [AffineAutoregressive([Real(), Real()], hidden=(8,))])
        >>> flow.log_prob(torch.tensor([[0.0, 0.0], [float("nan"), 0.0]])).tolist()[1]
        -inf
    """

    def __init__(self, base: BaseDistribution, bijections: Sequence[Bijection]):
        super().__init__()
        self.base = base
        self.bijections = nn.ModuleList(bijections)
        domains = base.domains
        for i, b in enumerate(self.bijections):
            if not isinstance(b, Bijection):
                raise TypeError(f"layer {i} ({type(b).__name__}) is not a Bijection between flat [batch, dim] points; "
                                "a map to positions [batch, n_atoms, 3] (InternalCoordinates) is applied to the "
                                "flow's samples, not composed into the flow")
            if tuple(b.domains) != tuple(domains):
                raise ValueError(
                    f"bijection {i} ({type(b).__name__}) expects domains {list(b.domains)} "
                    f"but receives {list(domains)}"
                )
            domains = b.out_domains
        self.domains = tuple(domains)
        self.support = Support(self.domains)

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size([len(self.domains)])

    @property
    def dim(self) -> int:
        return len(self.domains)

    def rsample_and_log_prob(
        self, n: int, context: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples [n, dim] and their log-density [n] in one differentiable pass."""
        x = self.base.rsample(n)
        log_q = self.base.log_prob(x)
        for b in self.bijections:
            x, log_det = b(x, context)
            log_q = log_q - log_det
        return x, log_q

    def sample_and_log_prob(
        self, n: int, context: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as ``rsample_and_log_prob``: one pass, differentiable; wrap in
        ``torch.no_grad()`` when no gradients are wanted."""
        return self.rsample_and_log_prob(n, context)

    def rsample(self, n: int, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` samples [n, dim] that carry gradients with respect to the parameters."""
        return self.rsample_and_log_prob(n, context)[0]

    def sample(self, n: int, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` samples [n, dim] without gradients."""
        with torch.no_grad():
            return self.rsample(n, context)

    def inverse_and_log_prob(
        self, x: torch.Tensor, context: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map data [batch, dim] to the base; returns (base point, log q(x) [batch]).

        Points outside the domains get ``log q = -inf`` (never NaN); circle values are
        wrapped onto [-π, π) first.
        """
        self.support.check(x)
        ok = self.support.contains(x)
        z = self.support.replace_outside(self.support.wrap(x), ok)
        log_q = x.new_zeros(len(x))
        for b in reversed(self.bijections):
            z, log_det = b.inverse(z, context)
            log_q = log_q + log_det
        log_q = log_q + self.base.log_prob(z)
        return z, torch.where(ok, log_q, torch.full_like(log_q, -math.inf))

    def log_prob(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log q(x) [batch] of data points x [batch, dim]; ``-inf`` outside the domains."""
        return self.inverse_and_log_prob(x, context)[1]

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.log_prob(x, context)
