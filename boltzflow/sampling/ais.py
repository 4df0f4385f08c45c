"""Annealed importance sampling (Neal 2001) from a base q to a target along a geometric path.

Intermediate log-densities, for β₀ = 0 < β₁ < … < β_M < β_{M+1} = 1:

    log π_β(x) = (1 − β) log q(x) + β log π(x),    log π = α log p̃ + (1 − α) log q.

With α = 1 the target is p̃ itself (and ``log_p`` may be any log-density); with α = 2 it is
p̃²/q, the distribution FAB anneals to (Midgley et al., "Flow Annealed Importance Sampling
Bootstrap", ICLR 2023): the importance-sampling estimate of the α = 2 divergence
∫ p²/q has minimum variance under p²/q, and the path is then (1 − 2β) log q + 2β log p̃ —
one evaluation of q and one of p̃ per point. (The FAB loss itself belongs to training.)

Chains start at samples x₀ ~ q; at each intermediate level k = 1 … M, ``steps_per_level``
MCMC moves leave π_{β_k} invariant. The log-weight is Neal's

    log w = Σ_{k=1}^{M+1} [log π_{β_k}(x_{k−1}) − log π_{β_{k−1}}(x_{k−1})],

accumulated in its telescoped, stochastic-flow form (Wu et al. 2020, see ``kernels``):
log w = log π(x_M) − log q(x₀) + Σ ΔS, so that E_q[w] = Z_π = ∫ π. Chains that fail (a
non-finite value anywhere) get log w = −inf, never NaN.

Each level has its own copy of the kernel, hence its own step size; after every call (not
during it, so each run uses fixed kernels and stays exact) the step sizes move towards
the kernels' target acceptance by their Robbins–Monro rule, unless ``adapt`` is False.

Adapt, then freeze (``warm_up``): for an estimate that must stay unbiased, tune the step
sizes on warm-up batches whose weights are thrown away, then freeze them (``adapt`` =
False) for the production runs. A step size tuned on the same chains it is then used on
would make the kernels depend on those chains; tuned on separate batches, every
production chain runs fixed kernels and E_q[w] = Z_π holds exactly. The warm-up first
makes each kernel's step size relative to the spread of q along each coordinate (standard
deviation; circular standard deviation on circles), then runs Robbins–Monro with a
decreasing gain γ₀/√(t+1) per level. ``precondition="curvature"`` takes the length per
coordinate from the gradient of each level's density instead (``gradient_scale``): the
conditional width, which is what limits a step when coordinates are stiff or correlated.

Cost of one chain (``gradient_evaluations``): at each level one evaluation of ∇log π_β at
the chain's point (the level's density differs from the previous one's), then
``steps_per_level`` moves of ``kernel.evaluations_per_step`` evaluations each; every one
evaluates log q and log p̃ with their gradients. At the end, one evaluation of each
without gradient.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..numerics import clean_log
from .kernels import Kernel
from .targets import LogDensity, log_prob, log_prob_and_grad

SPACINGS = ("linear", "geometric")  # of the β schedule (annealing_schedule)


def annealing_schedule(n_intermediate: int, spacing: str = "linear",
                       min_beta: float = 1e-3) -> tuple[float, ...]:
    """β₀ = 0, β₁ … β_M, β_{M+1} = 1 for M = ``n_intermediate`` intermediate distributions.

    ``linear``: β_k = k/(M+1). ``geometric``: β₁ = ``min_beta`` … β_M with a constant ratio
    β_{k+1}/β_k, including β_{M+1} = 1 (finer steps near the base, where π_β changes fastest
    when q is broader than the target).
    """
    if int(n_intermediate) != n_intermediate or n_intermediate < 0:
        raise ValueError(f"n_intermediate must be a non-negative integer, got {n_intermediate}")
    m = int(n_intermediate)
    if spacing == "linear":
        inner = [k / (m + 1) for k in range(1, m + 1)]
    elif spacing == "geometric":
        if not 0.0 < min_beta < 1.0:
            raise ValueError(f"min_beta must be in (0, 1), got {min_beta}")
        inner = [math.exp(math.log(min_beta) * (m - k) / m) for k in range(m)]
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    return (0.0, *inner, 1.0)


@dataclass
class AISResult:
    """Output of one AIS run.

    x: [batch, dim] final samples; log_w: [batch] log-weights (−inf for failed chains);
    log_p: [batch] log p̃ at x; log_q: [batch] log q at x; acceptance: [M] mean acceptance
    probability at each intermediate level.
    """

    x: Tensor
    log_w: Tensor
    log_p: Tensor
    log_q: Tensor
    acceptance: Tensor


class AIS(nn.Module):
    """Annealed importance sampling with one MCMC kernel per intermediate distribution.

    Args:
        kernel: template kernel (``HMC``, ``MALA`` or ``Metropolis``, with its domains);
            each level gets a non-differentiable copy.
        n_intermediate: number M of intermediate distributions (0: plain importance sampling).
        spacing, min_beta: the schedule of β (``annealing_schedule``).
        steps_per_level: MCMC moves at each intermediate distribution.
        adapt: adapt each level's step size after every call.
    """

    def __init__(self, kernel: Kernel, n_intermediate: int, spacing: str = "linear",
                 steps_per_level: int = 1, adapt: bool = True, min_beta: float = 1e-3):
        super().__init__()
        self.betas = annealing_schedule(n_intermediate, spacing, min_beta)
        if int(steps_per_level) != steps_per_level or steps_per_level < 1:
            raise ValueError(f"steps_per_level must be a positive integer, got {steps_per_level}")
        self.steps_per_level, self.adapt = int(steps_per_level), bool(adapt)
        self.kernels = nn.ModuleList(copy.deepcopy(kernel) for _ in range(int(n_intermediate)))
        for k in self.kernels:
            k.differentiable = False

    @property
    def gradient_evaluations(self) -> int:
        """Evaluations of log q and log p̃ with their gradients per chain and call (module docstring)."""
        if not self.kernels:
            return 0
        kernel = self.kernels[0]
        return len(self.kernels) * (1 + self.steps_per_level * kernel.evaluations_per_step) if kernel.uses_grad else 0

    @property
    def step_sizes(self) -> Tensor:
        """Step size of each level's kernel: [M] or [M, dim] (per-dimension step sizes)."""
        if not self.kernels:
            return torch.zeros(0)
        return torch.stack([k.step_size for k in self.kernels])

    def warm_up(self, draw: Callable[[], tuple[Tensor, Tensor]], log_q_fn: LogDensity, log_p_fn: LogDensity,
                iterations: int, gain: float = 1.0, precondition: Optional[str] = "spread",
                progress: Optional[Callable[[int, int], None]] = None) -> Tensor:
        """Tune each level's step size on ``iterations`` warm-up batches, then freeze them.

        ``draw()`` returns a fresh batch (x [batch, dim], log q(x) [batch]) of q; the weights
        of these runs are discarded. ``precondition`` (None: off) first makes the step sizes
        relative to a length per coordinate, measured on the first batch: ``"spread"``, q's
        spread (``spread``); ``"curvature"``, per level the conditional scale of π_β from its
        gradient (``gradient_scale``). Robbins–Monro gain ``gain``/√(t+1) at warm-up batch t.
        Afterwards ``adapt`` is False. ``progress(done, iterations)`` is called after each
        batch. Returns the acceptance of each level at each warm-up batch, [iterations, M].
        """
        if int(iterations) != iterations or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations}")
        if not gain > 0:
            raise ValueError(f"gain must be positive, got {gain}")
        if precondition not in (None, "spread", "curvature"):
            raise ValueError(f"precondition must be None, 'spread' or 'curvature', got {precondition!r}")
        self.adapt = False
        history = []
        for t in range(int(iterations)):
            x, log_q = draw()
            if precondition is not None and t == 0 and self.kernels:
                self._precondition(precondition, x[torch.isfinite(log_q)], log_q_fn, log_p_fn)
            result = self(x, log_q_fn, log_p_fn, log_q=log_q)
            for kernel, rate in zip(self.kernels, result.acceptance):
                kernel.update_step_size(rate, gain / math.sqrt(t + 1))
            history.append(result.acceptance)
            if progress is not None:
                progress(t + 1, int(iterations))
        return torch.stack(history) if history else torch.zeros(0, len(self.kernels))

    def _precondition(self, how: str, x: Tensor, log_q_fn: LogDensity, log_p_fn: LogDensity) -> None:
        if how == "spread":
            scale = spread(x, self.kernels[0].space)
            for kernel in self.kernels:
                kernel.precondition(scale)
            return
        log_q, grad_q = log_prob_and_grad(log_q_fn, x)
        log_p, grad_p = log_prob_and_grad(log_p_fn, x)
        ok = torch.isfinite(log_q) & torch.isfinite(log_p)
        for kernel, beta in zip(self.kernels, self.betas[1:-1]):
            kernel.precondition(gradient_scale(((1 - beta) * grad_q + beta * grad_p)[ok]))

    def forward(self, x: Tensor, log_q_fn: LogDensity, log_p_fn: LogDensity,
                log_q: Optional[Tensor] = None, alpha: float = 1.0) -> AISResult:
        """Anneal samples ``x`` [batch, dim] of q towards π = p̃^α q^(1−α).

        ``log_q_fn`` and ``log_p_fn`` map [batch, dim] to [batch]; ``log_q`` [batch] is
        log q(x), computed when not given (e.g. from ``flow.sample_and_log_prob``).
        """
        if x.dim() != 2:
            raise ValueError(f"x must have shape [batch, dim], got {list(x.shape)}")
        if log_q is not None and log_q.shape != x.shape[:1]:
            raise ValueError(f"log_q must have shape [batch] = [{len(x)}], got {list(log_q.shape)}")
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha}")
        x = x.detach()
        log_q0 = log_prob(log_q_fn, x) if log_q is None else log_q.detach()
        log_w = -log_q0
        acceptance = x.new_zeros(len(self.kernels))
        for level, (kernel, beta) in enumerate(zip(self.kernels, self.betas[1:-1])):
            a = alpha * beta
            level_fn = lambda y, a=a: (1 - a) * log_q_fn(y) + a * log_p_fn(y)  # noqa: E731
            log_pi, grad = None, None
            for _ in range(self.steps_per_level):
                x, info = kernel.step(x, level_fn, log_pi, grad)
                log_pi, grad = info.log_p, info.grad
                log_w = log_w + info.log_weight_delta
                acceptance[level] += info.acceptance.mean() / self.steps_per_level
        log_p, log_q_end = log_prob(log_p_fn, x), log_prob(log_q_fn, x)
        log_w = clean_log(log_w + alpha * log_p + (1 - alpha) * log_q_end)
        if self.adapt:
            for kernel, rate in zip(self.kernels, acceptance):
                kernel.update_step_size(rate)
        return AISResult(x, log_w, log_p, log_q_end, acceptance)


def spread(x: Tensor, space=None) -> Tensor:
    """A length scale per coordinate of points x [n, dim], n ≥ 2: the standard deviation, and
    on circle dimensions of ``space`` (a ``domains.Support``) the circular standard deviation
    √(−2 log R), R the mean resultant length, at most π. Floored at 1e-6 of the largest."""
    if x.dim() != 2 or len(x) < 2:
        raise ValueError(f"x must have shape [n >= 2, dim], got {list(x.shape)}")
    x = x.double()
    scale = x.std(0)
    if space is not None and space.has_circle:
        r = torch.sqrt(torch.cos(x).mean(0) ** 2 + torch.sin(x).mean(0) ** 2).clamp(1e-12, 1.0)
        circular = torch.sqrt(-2 * torch.log(r)).clamp(max=math.pi)
        scale = torch.where(space.circle.to(x.device), circular, scale)
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
    return scale.clamp_min(1e-6 * float(scale.max()) if float(scale.max()) > 0 else 1.0)


def gradient_scale(grad: Tensor) -> Tensor:
    """A length per coordinate from gradients ∇log π [n, dim] at n ≥ 1 points: 0.6745 / median |∂ᵢ log π|.

    For a Gaussian of standard deviation σᵢ along coordinate i (given the others),
    ∂ᵢ log π = −(xᵢ − μᵢ)/σᵢ² has median |·| = 0.6745/σᵢ, so this is σᵢ: the conditional width
    that limits HMC and MALA steps (a marginal spread overstates it for correlated or
    stiff coordinates). The median ignores a few clashes with huge forces. Coordinates
    with no gradient get the largest scale of the others."""
    if grad.dim() != 2 or len(grad) < 1:
        raise ValueError(f"grad must have shape [n >= 1, dim], got {list(grad.shape)}")
    median = grad.double().abs().median(0).values
    scale = 0.6745 / median
    finite = torch.isfinite(scale) & (median > 0)
    fill = float(scale[finite].max()) if finite.any() else 1.0
    return torch.where(finite, scale, torch.full_like(scale, fill))
