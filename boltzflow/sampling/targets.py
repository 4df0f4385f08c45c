"""Targets of the samplers: unnormalised log-densities, evaluated with gradients, on domains.

A target is any callable ``log_p(x) -> [batch]`` of points ``x`` [batch, dim] (for a toy,
``lambda x: -toy(x)``; for a flow, ``flow.log_prob``). Row ``i`` of the result must depend
on ``x[i]`` only: gradients are taken of the sum over the batch. Values that are not
finite (NaN, ±inf) mean "not a valid point": they become ``-inf``, their gradient 0.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..numerics import clean_log

LogDensity = Callable[[Tensor], Tensor]


def _checked(log_p: Tensor, x: Tensor) -> Tensor:
    if log_p.shape != x.shape[:1]:
        raise ValueError(
            f"the target must return log-densities of shape [batch] = [{len(x)}], got {list(log_p.shape)}"
        )
    return clean_log(log_p)


def log_prob(log_p_fn: LogDensity, x: Tensor, keep_graph: bool = False) -> Tensor:
    """log p(x) [batch] with non-finite values set to ``-inf``; no graph unless ``keep_graph``."""
    if keep_graph:
        return _checked(log_p_fn(x), x)
    with torch.no_grad():
        return _checked(log_p_fn(x), x)


def log_prob_and_grad(log_p_fn: LogDensity, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """log p(x) [batch] and ∇ₓ log p(x) [batch, dim] in one autograd pass.

    Rows with a non-finite log p get ``-inf`` and a zero gradient; non-finite gradient
    entries become 0. Without ``create_graph`` both results are detached; with it they keep
    the graph to ``x`` (when ``x`` requires grad) and to the target's parameters, so that
    positions built from the gradient can be differentiated (second derivatives).
    """
    with torch.enable_grad():
        point = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        raw = log_p_fn(point)
        log_p = _checked(raw, x)
        grad = None
        if raw.requires_grad:
            (grad,) = torch.autograd.grad(raw.sum(), point, create_graph=create_graph, allow_unused=True)
    if grad is None:  # the target does not depend on x
        grad = torch.zeros_like(x)
    ok = torch.isfinite(log_p)[:, None] & torch.isfinite(grad)
    grad = torch.where(ok, grad, torch.zeros_like(grad))
    if not create_graph:
        log_p, grad = log_p.detach(), grad.detach()
    return log_p, grad
