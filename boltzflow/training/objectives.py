"""Training objectives: losses of a flow q against an unnormalised target p̃ = exp(log_p),
and the ``Objective`` entry through which the configuration names and builds each of them.

A target is a callable ``log_p(x) -> [batch]`` on the flow's domains (for molecules,
``-u(x(z)) + log|det ∂x/∂z|``; for toys, ``-u(x)``); ``-inf`` marks a point to exclude.
Each objective returns ``(loss, stats)``: a scalar to minimise and a dict of floats for
the metrics. Points whose log-weight is not finite are left out of the loss and counted.

The registry of objectives is ``settings.OBJECTIVES``; an objective is a module with its
loss and its ``Objective`` entry (``REVERSE_KL``, ``MAXIMUM_LIKELIHOOD`` here; ``snf.STOCHASTIC_FLOW``,
``fab.FLOW_AIS_BOOTSTRAP``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..analysis.weights import kish_ess
from ..errors import invalid_setting
from ..flows import Flow
from .trainer import LossFn

if TYPE_CHECKING:
    from .run import Run

LogDensity = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Objective:
    """A training objective as the configuration names it (``objective = name``).

    Attributes:
        name: the value of the ``objective`` setting.
        loss: ``loss(run, model, batch, data)``, one shard's ``LossFn`` on ``batch`` points
            per step: ``model`` is the shard's trained model (``wrap(flow)``, else the flow),
            ``data`` the ``data`` file's points z [frames, dim] or None.
        settings: the dataclass of its ``[name]`` table of settings, None without one.
        data: whether it trains on conformations of the ``data`` setting: "no", "optional"
            or "required".
        anneals: temperature annealing (``anneal.start``) applies to it.
        wrap: ``wrap(section, flow)``, the model trained around the flow (a stochastic flow);
            None: the flow itself.
    """

    name: str
    loss: Callable[["Run", nn.Module, int, Optional[Tensor]], LossFn]
    settings: Optional[type] = None
    data: str = "no"
    anneals: bool = False
    wrap: Optional[Callable[[Any, Flow], nn.Module]] = None


def finite_mean_loss(values: Tensor) -> tuple[Tensor, int]:
    """−mean of the finite entries of ``values`` [batch] (NaN when none is) and how many were left out."""
    finite = torch.isfinite(values)
    loss = -values[finite].mean() if finite.any() else values.new_tensor(float("nan"))
    return loss, int((~finite).sum())


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
    loss, excluded = finite_mean_loss(log_w)
    stats = {"ess": kish_ess(log_w.detach()).item(), "excluded": excluded}
    finite = torch.isfinite(log_w)
    if forward_weight and finite.any():
        weights = torch.softmax(torch.where(finite, log_w.detach(), -torch.inf), 0)
        chosen = torch.multinomial(weights, forward_samples, replacement=True)
        log_q_chosen = flow.log_prob(x.detach()[chosen])
        if torch.isfinite(log_q_chosen).any():
            loss = loss + forward_weight * finite_mean_loss(log_q_chosen)[0]
    return loss, stats


def forward_kl(flow: Flow, data: Tensor) -> tuple[Tensor, dict]:
    """KL(p ‖ q) up to a constant: −E_data[log q(x)], maximum likelihood on samples of p."""
    loss, excluded = finite_mean_loss(flow.log_prob(data))
    return loss, {"excluded": excluded}


def minibatch(data: Tensor, batch: int) -> Tensor:
    """``batch`` rows of ``data`` drawn uniformly with replacement (torch's RNG)."""
    return data[torch.randint(len(data), (batch,), device=data.device)]


@dataclass
class ReverseKLSettings:
    """``[rkl]``: λ of the mode-covering KL(p ‖ q) term and the points it is estimated on; with
    a ``data`` file, the weight of maximum likelihood on it (``data_weight``) and the fraction
    of the steps trained on the data alone before the energy enters (``data_first``)."""

    forward_weight: float = 0.0
    forward_samples: int = 32
    data_weight: float = 1.0
    data_first: float = 0.0

    def check(self) -> None:
        if not self.forward_weight >= 0:
            raise invalid_setting("rkl.forward_weight", self.forward_weight, "a weight >= 0")
        if self.forward_samples < 1:
            raise invalid_setting("rkl.forward_samples", self.forward_samples, "a positive integer")
        if not self.data_weight >= 0:
            raise invalid_setting("rkl.data_weight", self.data_weight, "a weight >= 0")
        if not 0 <= self.data_first < 1:
            raise invalid_setting("rkl.data_first", self.data_first, "a fraction of the steps in [0, 1)")


class DataAndReverseKL:
    """Reverse KL with maximum likelihood on conformations (Noé et al., Science 2019): the
    first ``first_steps`` steps −E_data[log q] alone (no target evaluation), then
    KL(q ‖ p) + ``weight`` · (−E_data[log q]), each on ``batch`` points per step."""

    def __init__(self, rkl: LossFn, flow: Flow, data: Tensor, batch: int, weight: float, first_steps: int):
        self.rkl, self.flow, self.data = rkl, flow, data
        self.batch, self.weight, self.first_steps = batch, weight, first_steps

    def __call__(self, step: int) -> tuple[Tensor, dict]:
        if step < self.first_steps or self.weight:
            nll, stats = forward_kl(self.flow, minibatch(self.data, self.batch))
            stats = {"nll": nll.item(), **stats}
        if step < self.first_steps:
            return nll, stats
        loss, rkl_stats = self.rkl(step)
        if not self.weight:  # data only in the first steps
            return loss, rkl_stats
        excluded = stats.pop("excluded") + rkl_stats.pop("excluded")
        return loss + self.weight * nll, {**rkl_stats, **stats, "excluded": excluded}


def _reverse_kl_loss(run: "Run", model: nn.Module, batch: int, data: Optional[Tensor]) -> LossFn:
    options = run.settings.sections["rkl"]
    rkl = lambda step: reverse_kl(model, run.target, batch, options.forward_weight, options.forward_samples)  # noqa: E731
    first_steps = round(options.data_first * run.settings.steps)
    if data is None or not (options.data_weight or first_steps):
        return rkl
    return DataAndReverseKL(rkl, model, data, batch, options.data_weight, first_steps)


def _maximum_likelihood_loss(run: "Run", model: nn.Module, batch: int, data: Optional[Tensor]) -> LossFn:
    return lambda step: forward_kl(model, minibatch(data, batch))


# reverse KL on samples of the flow, from the energy alone or with maximum likelihood on data
REVERSE_KL = Objective("rkl", _reverse_kl_loss, settings=ReverseKLSettings, data="optional", anneals=True)
# maximum likelihood on conformations (the data setting: a trajectory)
MAXIMUM_LIKELIHOOD = Objective("ml", _maximum_likelihood_loss, data="required")
