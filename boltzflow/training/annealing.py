"""Temperature annealing (TA-BG: Schopmans & Friederich, "Temperature-Annealed Boltzmann
Generators", ICML 2025): train where the landscape is flat, then step the temperature down.

Stage 0 trains with the chosen objective (reverse KL or FAB) at the highest temperature,
where barriers are low and mode collapse is rare. Each later stage k lowers the
temperature to T_k and

1. draws ``samples`` points from the current flow, with log w = log p̃_{T_k}(x) − log q(x);
2. resamples them ∝ w (multinomial), a data set that follows p_{T_k} as far as the flow
   covers it;
3. trains by maximum likelihood on minibatches of that data set.

One target evaluation per drawn point per stage, so the later stages cost few evaluations.
With ``refit="objective"`` the later stages instead go on with the stage-0 objective at
T_k (for reverse KL: a temperature schedule of the target). That keeps what the hot stage
learnt of every basin without refitting to a resampled set, which repeats few distinct
points when the stage's ESS is low.
The temperature ladder is geometric, T_k = T_high (T / T_high)^{k/(S−1)}.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..numerics import clean_log
from ..analysis.weights import kish_ess
from ..flows import Flow
from ..sampling import LogDensity
from .objectives import forward_kl, minibatch
from .trainer import LossFn, load_objective_state, objective_state

REFITS = ("ml", "objective")


def temperature_ladder(high: float, low: float, stages: int) -> tuple[float, ...]:
    """``stages`` temperatures (K) from ``high`` down to ``low``, geometrically spaced."""
    if int(stages) != stages or stages < 2:
        raise ValueError(f"stages must be an integer >= 2, got {stages}")
    if not high > low > 0:
        raise ValueError(f"need high > low > 0 (K), got high={high}, low={low}")
    return tuple(high * (low / high) ** (k / (stages - 1)) for k in range(stages))


class TemperatureAnnealing:
    """Wraps a stage-0 objective; ``loss, stats = annealing(step)``.

    Args:
        first: the objective at the highest temperature (``reverse_kl`` or ``FAB`` closure).
        flow: the flow being trained.
        log_p: the target at the current temperature (reads what ``set_temperature`` set).
        set_temperature: sets the target's temperature (K).
        temperatures: the ladder, highest first (``temperature_ladder``).
        steps: total training steps; ``first_fraction`` of them at the highest temperature,
            the rest split evenly over the later stages.
        batch_size: minibatch of the maximum-likelihood stages.
        samples: points drawn from the flow at the start of each later stage.
        refit: ``"ml"`` (reweight, resample, maximum likelihood) or ``"objective"`` (the
            stage-0 objective at each lower temperature).
    """

    def __init__(self, first: LossFn, flow: Flow, log_p: LogDensity,
                 set_temperature: Callable[[float], None], temperatures: Sequence[float],
                 steps: int, batch_size: int, samples: int, first_fraction: float = 0.5, refit: str = "ml"):
        if not 0 < first_fraction < 1:
            raise ValueError(f"first_fraction must be in (0, 1), got {first_fraction}")
        if refit not in REFITS:
            raise ValueError(f"refit must be one of {REFITS}, got {refit!r}")
        self.refit = refit
        self.first, self.flow, self.log_p = first, flow, log_p
        self.set_temperature, self.temperatures = set_temperature, tuple(temperatures)
        self.batch_size, self.samples = int(batch_size), int(samples)
        first_steps = round(steps * first_fraction)
        per_stage = (steps - first_steps) / (len(self.temperatures) - 1)
        self.starts = [0] + [first_steps + round(k * per_stage) for k in range(len(self.temperatures) - 1)]
        self.stage, self.data, self.stage_stats = 0, None, {}
        set_temperature(self.temperatures[0])

    def stage_of(self, step: int) -> int:
        return max(k for k, start in enumerate(self.starts) if step >= start)

    def _enter(self, stage: int) -> None:
        """Lower the temperature and draw the stage's reweighted data set."""
        self.stage = stage
        self.set_temperature(self.temperatures[stage])
        with torch.no_grad():
            x, log_q = self.flow.sample_and_log_prob(self.samples)
            log_w = self.log_p(x) - log_q
            ess = kish_ess(log_w).item()
            weights = torch.softmax(clean_log(log_w).double(), 0)
            self.data = x[torch.multinomial(weights, self.samples, replacement=True)]
        self.stage_stats = {"stage_ess": ess}

    def __call__(self, step: int) -> tuple[Tensor, dict]:
        stage = self.stage_of(step)
        if stage == 0 or self.refit == "objective":
            if stage != self.stage:
                self.stage = stage
                self.set_temperature(self.temperatures[stage])
            loss, stats = self.first(step)
        else:
            if stage != self.stage or self.data is None:
                self._enter(stage)
            loss, stats = forward_kl(self.flow, minibatch(self.data, self.batch_size))
            stats.update(self.stage_stats)
        return loss, {**stats, "temperature": self.temperatures[stage]}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"stage": self.stage, "stage_stats": dict(self.stage_stats)}
        if self.data is not None:
            state["data"] = self.data.clone()
        state["first"] = objective_state(self.first)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage, self.stage_stats = int(state["stage"]), dict(state["stage_stats"])
        self.data = state.get("data")
        self.set_temperature(self.temperatures[self.stage])
        load_objective_state(self.first, state.get("first", {}))
