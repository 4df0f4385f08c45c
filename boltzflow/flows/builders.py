"""Ready-made flows with sensible defaults: state the domains once."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .autoregressive import SplineAutoregressive
from .base import BaseDistribution, ProductBase
from .coupling import SplineCoupling, alternating_mask, random_mask
from ..domains import Domain, check_domains
from .flow import Flow
from .linear import CircularShift


def spline_flow(
    domains: Sequence[Domain],
    layers: int = 8,
    bins: int = 8,
    hidden: Sequence[int] = (128, 128),
    conditioner: str = "coupling",
    masks: str = "alternating",
    residual: bool = False,
    circular_shift: bool = True,
    tail_bound: float = 5.0,
    context_dim: int = 0,
    base: Optional[BaseDistribution] = None,
    activation: type[nn.Module] = nn.GELU,
    seed: Optional[int] = None,
) -> Flow:
    """A neural spline flow over mixed circle / interval / real dimensions.

    Args:
        domains: one ``Real()``, ``Interval(low, high)`` or ``Circle()`` per dimension.
        layers: number of spline layers.
        bins: spline bins per dimension.
        hidden: hidden layer sizes of each conditioner network.
        conditioner: ``"coupling"`` or ``"autoregressive"`` (IAF-style: one-pass sampling).
        masks: coupling masks, ``"alternating"`` (layer parity) or ``"random"``.
        residual: use residual MLP / MADE conditioners.
        circular_shift: put a learned rotation of the circle dimensions between layers.
        tail_bound: splines on real dimensions act on [-tail_bound, tail_bound].
        context_dim: size of an optional conditioning vector.
        base: base distribution (default: uniform on circles and intervals, standard
            normal on reals).
        seed: seeds the random masks and orders, so the architecture is reproducible.

    Returns:
        A ``Flow`` whose samples lie in ``domains``; it starts as the identity map.

    Example:
        >>> from boltzflow.flows import Circle, Interval, Real, spline_flow
        >>> flow = spline_flow([Circle(), Interval(0.1, 0.2), Real()], layers=2, hidden=(16,), seed=0)
        >>> x, log_q = flow.rsample_and_log_prob(5)
        >>> x.shape, log_q.shape
        (torch.Size([5, 3]), torch.Size([5]))
        >>> bool(((x[:, 1] >= 0.1) & (x[:, 1] <= 0.2)).all())
        True
    """
    domains = check_domains(domains)
    dim = len(domains)
    if conditioner not in ("coupling", "autoregressive"):
        raise ValueError(f"conditioner must be 'coupling' or 'autoregressive', got {conditioner!r}")
    if masks not in ("alternating", "random"):
        raise ValueError(f"masks must be 'alternating' or 'random', got {masks!r}")
    if conditioner == "coupling" and dim < 2:
        raise ValueError("a coupling flow needs at least 2 dimensions; use conditioner='autoregressive'")
    gen = torch.Generator().manual_seed(seed if seed is not None else 0)
    has_circle = any(d.kind == "circle" for d in domains)
    bijections = []
    for i in range(layers):
        if conditioner == "coupling":
            mask = alternating_mask(dim, i) if masks == "alternating" else random_mask(dim, gen)
            bijections.append(SplineCoupling(domains, mask, bins, hidden, residual, context_dim,
                                             tail_bound, activation=activation))
        else:
            order = range(dim) if i % 2 == 0 else reversed(range(dim))
            if masks == "random":
                order = torch.randperm(dim, generator=gen).tolist()
            bijections.append(SplineAutoregressive(domains, bins, hidden, residual, context_dim,
                                                   order=list(order), tail_bound=tail_bound,
                                                   activation=activation))
        if circular_shift and has_circle and i < layers - 1:
            bijections.append(CircularShift(domains))
    return Flow(base if base is not None else ProductBase(domains), bijections)
