"""Training objectives: losses of a flow q against an unnormalised target p̃ = exp(log_p).

A target is a callable ``log_p(x) -> [batch]`` on the flow's domains (for molecules,
``-u(x(z)) + log|det ∂x/∂z|``; for toys, ``-u(x)``); ``-inf`` marks a point to exclude.
Each objective returns ``(loss, stats)``: a scalar to minimise and a dict of floats for
the metrics. Points whose log-weight is not finite are left out of the loss and counted.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..analysis.weights import kish_ess
from ..flows import Flow

LogDensity = Callable[[Tensor], Tensor]


def reverse_kl(flow: Flow, log_p: LogDensity, batch_size: int, forward_weight: float = 0.0,
               forward_samples: int = 32) -> tuple[Tensor, dict]:
    """KL(q ‖ p) up to log Z: E_q[log q(x) − log p̃(x)], by reparameterised samples of q.

    ``forward_weight`` λ > 0 adds λ · KL(p ‖ q) up to a constant, estimated on the same
    samples by self-normalised importance sampling, −Σᵢ w̄ᵢ log q(xᵢ) with xᵢ held fixed: a
    mode-covering term where reverse KL is mode-seeking, raising q wherever p/q is large (an
    under-weighted basin). The weighted sum is estimated without bias from
    ``forward_samples`` points drawn ∝ w̄ (the weight sits on few points), so it costs a
    density pass over those points and no target evaluation."""
    x, log_q = flow.rsample_and_log_prob(batch_size)
    log_w = log_p(x) - log_q
    finite = torch.isfinite(log_w)
    loss = -log_w[finite].mean() if finite.any() else log_w.new_tensor(float("nan"))
    stats = {"ess": kish_ess(log_w.detach()).item(), "excluded": int((~finite).sum())}
    if forward_weight and finite.any():
        weights = torch.softmax(torch.where(finite, log_w.detach(), -torch.inf), 0)
        chosen = torch.multinomial(weights, forward_samples, replacement=True)
        log_q_chosen = flow.log_prob(x.detach()[chosen])
        keep = torch.isfinite(log_q_chosen)
        if keep.any():
            loss = loss - forward_weight * log_q_chosen[keep].mean()
    return loss, stats


def forward_kl(flow: Flow, data: Tensor) -> tuple[Tensor, dict]:
    """KL(p ‖ q) up to a constant: −E_data[log q(x)], maximum likelihood on samples of p."""
    log_q = flow.log_prob(data)
    finite = torch.isfinite(log_q)
    loss = -log_q[finite].mean() if finite.any() else log_q.new_tensor(float("nan"))
    return loss, {"excluded": int((~finite).sum())}
