"""Stochastic normalizing flows (Wu, Köhler & Noé, NeurIPS 2020): flow layers interleaved with MCMC.

A ``StochasticFlow`` splits a ``Flow``'s bijections into blocks and puts an MCMC layer after
each block. Layer k targets the interpolation between the base density and the target,

    log π_k(y) = (1 − λ_k) log q₀(y) + λ_k log p̃(y),      λ_k = k / K  (the last one is p̃),

evaluated in the flow's own coordinates (every layer keeps the domains). A path
y₀ ~ q₀ → … → y_T has the log-weight

    log w = log p̃(y_T) − log q₀(y₀) + Σ log|det J_flow| + Σ ΔS_k,

with ΔS the kernels' increments (``boltzflow.sampling.kernels``), so that E[w] = Z and
self-normalised weights are exact importance weights for p̃.

Training:
- ``reverse_kl``: −E[log w] through reparameterised, differentiable kernels.
- ``forward_kl`` on data: the backward path (each Metropolis–Hastings kernel is its own
  backward kernel) from y_T = data to y₀; for MH kernels ΔS does not depend on the flow, so
  the loss is −E[log q₀(y₀) + Σ log|det J_flow⁻¹|] on that path (Wu et al.'s ML bound).
  Use Metropolis, MALA or HMC kernels (not unadjusted Langevin) for it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..analysis.weights import kish_ess
from ..errors import invalid_setting
from ..flows import Flow
from ..numerics import clean_log
from ..sampling import KERNELS, Kernel, LogDensity
from .objectives import Objective, finite_mean_loss, minibatch


class StochasticFlow(nn.Module):
    """A ``Flow`` with ``n_mcmc`` MCMC layers spread evenly over its bijections, the last one at the end.

    Args:
        flow: the deterministic part (its base and bijections are shared, not copied).
        kernel: template kernel on ``flow.domains``; each layer gets its own copy (own step size).
        n_mcmc: number K of MCMC layers.
        steps_per_layer: MCMC moves per layer.
    """

    def __init__(self, flow: Flow, kernel: Kernel, n_mcmc: int = 2, steps_per_layer: int = 1):
        super().__init__()
        if int(n_mcmc) != n_mcmc or n_mcmc < 1:
            raise ValueError(f"n_mcmc must be a positive integer, got {n_mcmc}")
        if int(steps_per_layer) != steps_per_layer or steps_per_layer < 1:
            raise ValueError(f"steps_per_layer must be a positive integer, got {steps_per_layer}")
        self.flow, self.steps_per_layer = flow, int(steps_per_layer)
        n_layers = len(flow.bijections)
        # MCMC layer k (1-based) follows flow layer ceil(k·L/K): blocks[k-1] = flow layers before it
        ends = [math.ceil(k * n_layers / n_mcmc) for k in range(1, n_mcmc + 1)]
        self.blocks = [range(start, end) for start, end in zip([0] + ends[:-1], ends)]
        self.lambdas = [k / n_mcmc for k in range(1, n_mcmc + 1)]
        self.kernels = nn.ModuleList(copy.deepcopy(kernel) for _ in range(n_mcmc))

    @property
    def domains(self):
        return self.flow.domains

    def _level(self, log_p_fn: LogDensity, lam: float) -> LogDensity:
        if lam == 1.0:
            return log_p_fn
        return lambda y: (1 - lam) * self.flow.base.log_prob(y) + lam * log_p_fn(y)

    def sample_with_log_weights(self, n: int, log_p_fn: LogDensity,
                                differentiable: bool = True) -> tuple[Tensor, Tensor, dict]:
        """Run ``n`` paths; returns y_T [n, dim], log w [n] (−inf for failed paths) and
        ``{"acceptance": [K] mean acceptance per layer, "log_p": log p̃(y_T) [n]}``.

        ``differentiable=False`` runs without a graph (for sampling)."""
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            y = self.flow.base.rsample(n)
            log_w = -self.flow.base.log_prob(y)
            acceptance = y.new_zeros(len(self.kernels))
            log_p = None
            for k, (block, kernel, lam) in enumerate(zip(self.blocks, self.kernels, self.lambdas)):
                for i in block:
                    y, log_det = self.flow.bijections[i](y)
                    log_w = log_w + log_det
                kernel.differentiable = differentiable
                level, log_pi, grad = self._level(log_p_fn, lam), None, None
                for _ in range(self.steps_per_layer):
                    y, info = kernel(y, level, log_pi, grad)
                    log_pi, grad = info.log_p, info.grad
                    log_w = log_w + info.log_weight_delta
                    acceptance[k] += info.acceptance.detach().mean() / self.steps_per_layer
                log_p = log_pi
            log_w = clean_log(log_w + log_p)
        return y, log_w, {"acceptance": acceptance, "log_p": log_p}

    def backward_path(self, data: Tensor, log_p_fn: LogDensity) -> tuple[Tensor, Tensor]:
        """Map data [n, dim] back to the base along a stochastic path; returns (y₀ [n, dim],
        log q₀(y₀) + Σ log|det J_flow⁻¹| [n]), differentiable in the flow's parameters."""
        y, log_q = data, data.new_zeros(len(data))
        for block, kernel, lam in reversed(list(zip(self.blocks, self.kernels, self.lambdas))):
            kernel.differentiable = False
            level = self._level(log_p_fn, lam)
            with torch.no_grad():
                for _ in range(self.steps_per_layer):
                    y, _ = kernel.step(y, level)
            for i in reversed(block):
                y, log_det = self.flow.bijections[i].inverse(y)
                log_q = log_q + log_det
        return y, log_q + self.flow.base.log_prob(y)


def snf_reverse_kl(snf: StochasticFlow, log_p: LogDensity, batch_size: int) -> tuple[Tensor, dict]:
    """−E[log w] over ``batch_size`` differentiable paths (failed paths left out and counted)."""
    _, log_w, info = snf.sample_with_log_weights(batch_size, log_p, differentiable=True)
    loss, excluded = finite_mean_loss(log_w)
    stats = {"ess": kish_ess(log_w.detach()).item(), "excluded": excluded}
    stats.update({f"acceptance_{k}": float(a) for k, a in enumerate(info["acceptance"])})
    return loss, stats


def snf_forward_kl(snf: StochasticFlow, log_p: LogDensity, data: Tensor) -> tuple[Tensor, dict]:
    """−E_data[log q₀(y₀) + Σ log|det J⁻¹|] along backward paths from the data."""
    _, log_q = snf.backward_path(data, log_p)
    loss, excluded = finite_mean_loss(log_q)
    return loss, {"excluded": excluded}


@dataclass
class StochasticFlowSettings:
    """``[snf]``: the MCMC ``kernel`` (``sampling.KERNELS``), its ``layers``, moves per layer
    and initial step size (adapted during training)."""

    kernel: str = "mala"
    layers: int = 2
    steps_per_layer: int = 1
    step_size: float = 0.001

    def check(self) -> None:
        if self.kernel not in KERNELS:
            raise invalid_setting("snf.kernel", self.kernel, " | ".join(KERNELS))
        for key in ("layers", "steps_per_layer"):
            if getattr(self, key) < 1:
                raise invalid_setting(f"snf.{key}", getattr(self, key), "a positive integer")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise invalid_setting("snf.step_size", self.step_size, "a positive step size")

    def stochastic_flow(self, flow: Flow) -> StochasticFlow:
        """The stochastic flow of these settings around ``flow`` (own kernels), on its device and dtype."""
        kernel = KERNELS[self.kernel](self.step_size, domains=flow.domains)
        return StochasticFlow(flow, kernel, n_mcmc=self.layers,
                              steps_per_layer=self.steps_per_layer).to(next(flow.parameters()))


class StochasticFlowLoss:
    """One shard's snf loss: reverse KL along its paths, or the ML bound along backward paths
    from minibatches of ``data``; its state is its kernels' adapted step sizes."""

    def __init__(self, snf: StochasticFlow, log_p: LogDensity, batch: int, data: Optional[Tensor] = None):
        self.snf, self.log_p, self.batch, self.data = snf, log_p, batch, data

    def __call__(self, step: int) -> tuple[Tensor, dict]:
        if self.data is None:
            return snf_reverse_kl(self.snf, self.log_p, self.batch)
        return snf_forward_kl(self.snf, self.log_p, minibatch(self.data, self.batch))

    def state_dict(self) -> dict[str, Any]:
        return {"kernels": self.snf.kernels.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snf.kernels.load_state_dict(state["kernels"])


def _stochastic_flow_loss(run, model: StochasticFlow, batch: int, data: Optional[Tensor]) -> StochasticFlowLoss:
    return StochasticFlowLoss(model, run.target, batch, data)


# MCMC layers between the flow's; from the energy, or on data when given
STOCHASTIC_FLOW = Objective("snf", _stochastic_flow_loss, settings=StochasticFlowSettings, data="optional",
                            wrap=StochasticFlowSettings.stochastic_flow)
