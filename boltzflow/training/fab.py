"""FAB: Flow Annealed importance sampling Bootstrap (Midgley et al., ICLR 2023).

FAB minimises the α = 2 divergence D₂(p ‖ q_θ) = log ∫ p²/q_θ. Its gradient is
−E_{p²/q_θ}[∇ log q_θ(x)] (up to a positive factor), estimated with annealed importance
sampling from q_θ towards p²/q_θ (``boltzflow.sampling.AIS`` with α = 2, HMC transitions):
AIS puts samples where p is large and q_θ small, which is where the flow needs mass, so
FAB covers modes that reverse KL drops, from the energy alone.

Two variants:
- without a buffer (``buffer_capacity=0``): every step runs AIS on a fresh batch and the
  loss is −Σᵢ w̄ᵢ log q_θ(xᵢ) with self-normalised AIS weights w̄;
- with a prioritised replay buffer (the paper's main variant): every ``updates_per_ais``
  steps one AIS batch enters the buffer; each step draws a batch from the buffer ∝ w and
  the loss is −mean log q_θ(x). After the step the drawn rows are re-weighted for the
  changed flow (``PrioritisedReplayBuffer.update_log_q``). This reuses each target
  evaluation several times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from ..analysis.weights import kish_ess, normalized_log_weights
from ..errors import invalid_setting
from ..flows import Flow
from ..sampling import AIS, HMC, SPACINGS, LogDensity, PrioritisedReplayBuffer
from .objectives import Objective, finite_mean_loss


class FAB:
    """The FAB objective: ``loss, stats = fab(step)``.

    Args:
        flow: the flow q_θ.
        log_p: the target log p̃ on ``flow.domains``.
        ais: an ``AIS`` (its kernels on ``flow.domains``).
        batch_size: points per AIS run and per gradient step.
        buffer_capacity: rows of the replay buffer; 0 for the variant without a buffer.
        updates_per_ais: gradient steps per AIS run (buffer variant).
    """

    def __init__(self, flow: Flow, log_p: LogDensity, ais: AIS, batch_size: int,
                 buffer_capacity: int = 0, updates_per_ais: int = 4):
        if int(updates_per_ais) != updates_per_ais or updates_per_ais < 1:
            raise ValueError(f"updates_per_ais must be a positive integer, got {updates_per_ais}")
        self.flow, self.log_p, self.ais, self.batch_size = flow, log_p, ais, int(batch_size)
        self.buffer = PrioritisedReplayBuffer(buffer_capacity) if buffer_capacity else None
        self.updates_per_ais = int(updates_per_ais)
        self._last_ais: dict = {}

    def _run_ais(self):
        with torch.no_grad():
            x, log_q = self.flow.sample_and_log_prob(self.batch_size)
        result = self.ais(x, self.flow.log_prob, self.log_p, log_q=log_q, alpha=2.0)
        # monitoring: Kish ESS of the AIS weights towards p²/q, mean HMC acceptance
        self._last_ais = {"ais_ess": kish_ess(result.log_w).item(),
                          "ais_acceptance": float(result.acceptance.mean()) if len(result.acceptance) else 1.0}
        return result

    def __call__(self, step: int) -> tuple[Tensor, dict]:
        if self.buffer is None:
            result = self._run_ais()
            log_q = self.flow.log_prob(result.x)
            weights = normalized_log_weights(result.log_w).exp()
            keep = weights > 0
            loss = -(weights[keep] * log_q[keep]).sum()
            return loss, dict(self._last_ais)
        if step % self.updates_per_ais == 0 or len(self.buffer) == 0:
            result = self._run_ais()
            self.buffer.add(result.x, result.log_w, result.log_q)
        x, _, _, indices = self.buffer.sample(self.batch_size)
        log_q = self.flow.log_prob(x)
        self.buffer.update_log_q(indices, log_q.detach())
        loss, excluded = finite_mean_loss(log_q)
        return loss, {**self._last_ais, "excluded": excluded}

    def state_dict(self) -> dict[str, Any]:
        """AIS step sizes and the replay buffer (tensors and ints only)."""
        state: dict[str, Any] = {"ais": self.ais.state_dict()}
        if self.buffer is not None:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ais.load_state_dict(state["ais"])
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])


@dataclass
class FABSettings:
    """``[fab]``: AIS with ``n_intermediate`` levels (``spacing`` of β), HMC with ``n_leapfrog``
    steps of initial ``step_size``; a replay buffer of ``buffer_batches`` AIS batches, each
    used for ``updates_per_ais`` gradient steps (``buffer_batches = 0``: no buffer)."""

    n_intermediate: int = 8
    spacing: str = "linear"
    n_leapfrog: int = 4
    step_size: float = 0.01
    buffer_batches: int = 64
    updates_per_ais: int = 4

    def check(self) -> None:
        if self.spacing not in SPACINGS:
            raise invalid_setting("fab.spacing", self.spacing, " | ".join(SPACINGS))
        for key, least in (("n_intermediate", 0), ("n_leapfrog", 1), ("buffer_batches", 0), ("updates_per_ais", 1)):
            if getattr(self, key) < least:
                raise invalid_setting(f"fab.{key}", getattr(self, key), f"an integer >= {least}")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise invalid_setting("fab.step_size", self.step_size, "a positive step size")

    def objective(self, flow: Flow, log_p: LogDensity, batch: int) -> FAB:
        """FAB with these settings for ``flow`` on ``batch`` points per AIS run and step."""
        kernel = HMC(self.step_size, n_leapfrog=self.n_leapfrog, domains=flow.domains)
        ais = AIS(kernel, self.n_intermediate, spacing=self.spacing).to(next(flow.parameters()).device)
        return FAB(flow, log_p, ais, batch, buffer_capacity=self.buffer_batches * batch,
                   updates_per_ais=self.updates_per_ais)


def _fab_loss(run, model: Flow, batch: int, data: Optional[Tensor]) -> FAB:
    return run.settings.sections["fab"].objective(model, run.target, batch)


# the α = 2 divergence by AIS towards p²/q, with a replay buffer; from the energy alone
FLOW_AIS_BOOTSTRAP = Objective("fab", _fab_loss, settings=FABSettings, anneals=True)
