"""Sampling-time correction of a trained flow: annealed importance sampling from q to the target.

``AISCorrection(levels=K, kernel="hmc")`` takes each flow sample z₀ ~ q through K
intermediate distributions π_β ∝ q^(1−β) p̃^β (``boltzflow.sampling.AIS``, HMC or MALA on
the run's target and the flow's domains) and returns the chain's end point with Neal's
weight, whose mean over chains is Z: the correction keeps the estimates unbiased while
moving samples towards p where the flow is off.

Step sizes: before the first production batch, ``warm_up(run)`` makes each level's step
size relative to a length per coordinate (the flow's spread, or the level's conditional
width from its gradient: ``precondition``) and tunes it towards the kernel's target
acceptance on ``warmup`` separate batches of ``warmup_size`` flow samples (their weights
are discarded); then the step sizes are frozen, so every production chain runs fixed
kernels. ``attributes()`` records K, the kernel, the frozen step sizes, the acceptance of
each level and the evaluations per sample.

Flow-only weights: each drawn batch also carries ``log_w_flow`` = log p̃(z₀) − log q(z₀) of
the flow sample the chain started from (not of the returned point), so that one run gives
the flow's ESS and the corrected ESS of the same draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import Tensor

from ..errors import BoltzflowError
from ..numerics import nan_to_neg_inf
from ..sampling import AIS, KERNELS, SPACINGS
from .settings import OBJECTIVES

if TYPE_CHECKING:
    from .run import Run

AIS_KERNELS = {name: kernel for name, kernel in KERNELS.items() if kernel.uses_grad}  # AIS moves by gradients
PRECONDITIONERS = ("spread", "curvature")
# More levels are refused before any work: the corrections measured use 16 (benchmarks/RESULTS.md);
# 10,000 already cost at least 20,000 gradient evaluations per sample (hours per thousand samples of
# alanine dipeptide), and the schedule [K + 2] and frozen step sizes [K, dim] are held in memory.
MAX_LEVELS = 10_000


@dataclass
class AISCorrection:
    """AIS from a run's flow to its target, with warm-up-then-frozen step sizes per level.

    Args:
        levels: K, the number of intermediate distributions (0: the flow's own weights).
        kernel: ``hmc`` or ``mala``.
        leapfrog: HMC leapfrog steps per move.
        steps: MCMC moves per level.
        step_size: initial step size relative to the width per coordinate (HMC:
            leapfrog step in units of the width; MALA: τ in units of the width squared).
        spacing: ``linear`` or ``geometric`` β schedule (``annealing_schedule``).
        warmup: warm-up batches (weights discarded) before the step sizes are frozen.
        warmup_size: flow samples per warm-up batch.
        precondition: ``curvature`` (step sizes relative to each level's conditional width
            per coordinate, from its gradient; default) or ``spread`` (relative to the
            flow's marginal spread); ``AIS.warm_up``. On alanine dipeptide curvature gave
            far larger corrections (benchmarks/RESULTS.md).
    """

    levels: int
    kernel: str = "hmc"
    leapfrog: int = 4
    steps: int = 1
    step_size: float = 0.5
    spacing: str = "linear"
    warmup: int = 20
    warmup_size: int = 128
    precondition: str = "curvature"
    ais: AIS | None = field(default=None, init=False, repr=False)
    warmup_acceptance: Tensor | None = field(default=None, init=False, repr=False)
    warmup_evaluations: int = field(default=0, init=False)
    warmup_seconds: float = field(default=0.0, init=False)
    drawn: int = field(default=0, init=False)
    evaluations: int = field(default=0, init=False)
    _acceptance_sum: Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.kernel = str(self.kernel).lower()
        checks = [
            (int(self.levels) == self.levels and self.levels >= 0, f"--ais must be >= 0 levels, got {self.levels}"),
            (self.levels <= MAX_LEVELS, f"--ais must be at most {MAX_LEVELS:,} levels, got {self.levels:,}"),
            (self.kernel in AIS_KERNELS, f"unknown --ais-kernel {self.kernel!r}; choose {' or '.join(AIS_KERNELS)}"),
            (int(self.leapfrog) == self.leapfrog and self.leapfrog >= 1,
             f"--ais-leapfrog must be >= 1, got {self.leapfrog}"),
            (int(self.steps) == self.steps and self.steps >= 1, f"--ais-steps must be >= 1, got {self.steps}"),
            (math.isfinite(self.step_size) and self.step_size > 0,
             f"--ais-step-size must be positive, got {self.step_size}"),
            (self.spacing in SPACINGS, f"unknown --ais-spacing {self.spacing!r}; choose {' or '.join(SPACINGS)}"),
            (int(self.warmup) == self.warmup and self.warmup >= 1, f"--ais-warmup must be >= 1 batch, got {self.warmup}"),
            (int(self.warmup_size) == self.warmup_size and self.warmup_size >= 2,
             f"--ais-warmup-size must be >= 2 samples, got {self.warmup_size}"),
            (self.precondition in PRECONDITIONERS,
             f"unknown --ais-precondition {self.precondition!r}; choose {' or '.join(PRECONDITIONERS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BoltzflowError(message)
        self.levels, self.leapfrog, self.steps = int(self.levels), int(self.leapfrog), int(self.steps)

    @staticmethod
    def check_objective(objective: str) -> None:
        """Raise ``BoltzflowError`` for runs of an objective the correction does not support:
        those whose model is not the flow itself (stochastic flows)."""
        kind = OBJECTIVES.get(objective)
        if kind is not None and kind.wrap is not None:
            raise BoltzflowError(f"AIS needs a flow with a density log q; this run is a stochastic normalizing flow "
                                 f"(objective {objective}), whose samples carry path weights only")

    def _kernel(self, run: "Run"):
        options = {"n_leapfrog": self.leapfrog} if self.kernel == "hmc" else {}
        return AIS_KERNELS[self.kernel](self.step_size, domains=run.flow.domains, **options)

    def warm_up(self, run: "Run", progress: Optional[Callable[[int, int], None]] = None) -> None:
        """Build the AIS, tune its step sizes on warm-up batches and freeze them (uses torch's RNG);
        ``progress(done, warmup)`` after each warm-up batch."""
        self.check_objective(run.settings.objective)
        param = next(run.flow.parameters())
        self.ais = AIS(self._kernel(run), self.levels, spacing=self.spacing, steps_per_level=self.steps,
                       adapt=False).to(param.device)

        def draw():
            with torch.no_grad():
                return run.flow.sample_and_log_prob(self.warmup_size)

        before, start = run.target.evaluations, time.perf_counter()
        with _frozen_parameters(run.flow):
            self.warmup_acceptance = self.ais.warm_up(draw, run.flow.log_prob, run.target, self.warmup,
                                                      precondition=self.precondition, progress=progress)
        self.warmup_evaluations = run.target.evaluations - before
        self.warmup_seconds = time.perf_counter() - start

    def draw(self, run: "Run", n: int) -> dict[str, Tensor]:
        """``n`` corrected samples: ``run.draw``'s keys at the chains' end points, AIS ``log_w``,
        and ``log_w_flow`` of the starting flow samples (warms up first if needed)."""
        if self.ais is None:
            self.warm_up(run)
        target, flow = run.target, run.flow
        before = target.evaluations
        with torch.no_grad():
            z0, log_q0 = flow.sample_and_log_prob(n)
            log_w_flow = target(z0) - log_q0
        with _frozen_parameters(flow):
            result = self.ais(z0, flow.log_prob, target, log_q=log_q0)
        with torch.no_grad():
            out = target.evaluate(result.x)
        self.evaluations += target.evaluations - before
        self.drawn += n
        acceptance = result.acceptance.detach().double().cpu() * n
        self._acceptance_sum = acceptance if self._acceptance_sum is None else self._acceptance_sum + acceptance
        log_w_flow = nan_to_neg_inf(log_w_flow)
        return {"z": result.x, **out, "log_q": result.log_q, "log_w": result.log_w, "log_w_flow": log_w_flow}

    @property
    def acceptance(self) -> Tensor:
        """Mean acceptance probability of each level over the production chains so far, [K]."""
        if self._acceptance_sum is None:
            return torch.zeros(self.levels, dtype=torch.float64)
        return self._acceptance_sum / self.drawn

    def attributes(self) -> dict:
        """What a samples file records about the correction (``ais_*`` attributes)."""
        import numpy as np

        if self.ais is None:
            raise RuntimeError("the correction has not been warmed up")
        steps = self.ais.step_sizes.double().cpu().numpy()
        return {"ais_levels": self.levels, "ais_kernel": self.kernel,
                "ais_leapfrog": self.leapfrog if self.kernel == "hmc" else 0, "ais_steps_per_level": self.steps,
                "ais_spacing": self.spacing, "ais_betas": np.asarray(self.ais.betas, dtype=np.float64),
                "ais_step_size_initial": self.step_size,
                "ais_step_sizes": steps.reshape(self.levels, -1) if self.levels else np.zeros((0, 1)),
                "ais_acceptance": self.acceptance.numpy(),
                "ais_warmup_batches": self.warmup, "ais_warmup_size": self.warmup_size,
                "ais_precondition": self.precondition,
                "ais_warmup_evaluations": self.warmup_evaluations, "ais_warmup_seconds": self.warmup_seconds,
                "ais_gradient_evaluations_per_sample": self.ais.gradient_evaluations,
                "ais_extra_evaluations_per_sample": self.evaluations / max(1, self.drawn) - 1.0}


class _frozen_parameters:
    """Within the block the module's parameters need no gradient (AIS differentiates in x only)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self):
        self.flags = [p.requires_grad for p in self.module.parameters()]
        self.module.requires_grad_(False)

    def __exit__(self, *exc):
        for p, flag in zip(self.module.parameters(), self.flags):
            p.requires_grad_(flag)
