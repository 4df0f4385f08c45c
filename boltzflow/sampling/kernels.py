"""MCMC kernels, batched over chains: random-walk Metropolis, MALA / unadjusted Langevin, HMC.

Every kernel is called as ``x_new, info = kernel(x, log_p)`` with points ``x`` [batch, dim]
(one chain per row, one accept/reject per chain) and a target ``log_p(x) -> [batch]``
(unnormalised; see ``targets``). ``info`` (an ``MCMCInfo``) holds the acceptance, log p and
its gradient at the returned points (pass them back in to save an evaluation) and the
stochastic-flow log-weight increment ``log_weight_delta``.

Log-weights (Wu, Köhler & Noé, "Stochastic Normalizing Flows", NeurIPS 2020): a
path y₀ → y₁ → … → y_T through stochastic layers with forward transition densities q_t and
backward ones q̃_t has the importance weight

    log w = log p̃(y_T) − log q₀(y₀) + Σ_t ΔS_t,
    ΔS_t = log q̃_t(y_t → y_{t−1}) − log q_t(y_{t−1} → y_t).

A Metropolis–Hastings kernel K is in detailed balance with its target p_t,
p_t(a) K(a → b) = p_t(b) K(b → a); taking K itself as the backward kernel gives

    ΔS_t = log p_t(y_{t−1}) − log p_t(y_t)        (0 for a rejected move).

The unadjusted Langevin move (``MALA(metropolis=False)``) is not in detailed balance; with
the Langevin move from y_t as backward kernel,

    ΔS_t = log N(y_{t−1}; y_t + τ∇log p_t(y_t), 2τ) − log N(y_t; y_{t−1} + τ∇log p_t(y_{t−1}), 2τ)
         = ½|ξ|² − ½|ξ̃|²    (ξ, ξ̃ the standard normal noise of the forward and backward moves).

A flow made of MCMC layers only, at targets p₁ … p_T between q₀ and p, telescopes to Neal's
annealed importance sampling (see ``ais``).

Domains: after every position update circle dimensions are wrapped onto [-π, π); a proposal
outside an interval has log p = -inf and is rejected, and the target is never evaluated
there; an HMC trajectory with any leapfrog position outside the intervals is rejected
(rejection, not reflection; exact, because the reversed trajectory visits the same
positions, so the rejection rule is symmetric). A proposal whose log p is NaN or ±inf is
rejected too; the chain stays where it is, and nothing non-finite reaches the returned points.

Step size (``step_size``: a float or one per dimension, [dim]): RWM's proposal standard
deviation, MALA's Langevin time step τ (x' = x + τ∇log p(x) + √(2τ) ξ), HMC's leapfrog step.
Adaptation (``adapt=True``) is a Robbins–Monro update of the log step size after each call,
log h ← log h + γ (ᾱ − α*), with ᾱ the batch mean of the acceptance probabilities
min(1, MH ratio), γ = ``adapt_rate`` and α* = ``target_acceptance`` (defaults: 0.234 for
RWM, Roberts, Gelman & Gilks 1997; 0.574 for MALA, Roberts & Rosenthal 1998; 0.65 for HMC,
Beskos et al. 2013). It rescales per-dimension step sizes together. Set ``kernel.adapt =
False`` to freeze the step size (after burn-in, for exact sampling). ``precondition(scale)``
sets per-dimension step sizes from a length scale per coordinate (e.g. the spread of a
flow's samples): RWM and HMC steps are lengths (∝ scale), MALA's τ is a time (∝ scale²),
``step_size_power`` of the kernel.

Cost: ``evaluations_per_step`` target evaluations per move (RWM and MALA 1, HMC
``n_leapfrog``), with the gradient for MALA and HMC (``uses_grad``), plus one with the
gradient at the start when the caller passes no ``log_p``/``grad``.

``differentiable=True`` keeps the graph through the moves for training stochastic flows by
reverse KL: proposals are reparameterised by their noise (gradients of the target are
taken with ``create_graph``), and the accept/reject is a stop-gradient selection between
the proposal and the current point, as in Wu et al. Otherwise inputs and outputs are
detached. A target that returns NaN inside the domains may still leave NaN in parameter
gradients (through ``torch.where``'s backward); trainers skip such steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..domains import Domain, Support, wrap
from ..numerics import nan_to_neg_inf
from .targets import LogDensity, log_prob, log_prob_and_grad

StepSize = Union[float, Sequence[float], Tensor]
_LOG_STEP_RANGE = (-20.0, 5.0)  # adaptation keeps the step size in [2e-9, 148]


@dataclass
class MCMCInfo:
    """What one kernel call did, per chain.

    accepted: bool [batch], the chain moved.
    acceptance: [batch], the acceptance probability min(1, MH ratio) (0 for invalid proposals).
    log_p: [batch], log p at the returned points (``-inf`` where invalid).
    grad: [batch, dim], ∇ log p at the returned points (gradient kernels), else ``None``.
    log_weight_delta: [batch], the stochastic-flow increment ΔS (module docstring).
    """

    accepted: Tensor
    acceptance: Tensor
    log_p: Tensor
    grad: Optional[Tensor]
    log_weight_delta: Tensor

    @property
    def acceptance_rate(self) -> float:
        """Mean acceptance probability over the chains."""
        return float(self.acceptance.mean())


def _as_step_size(value: StepSize, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if t.dim() > 1 or t.numel() == 0 or not (torch.isfinite(t) & (t > 0)).all():
        raise ValueError(f"{name} must be a positive float or a [dim] tensor of them, got {value!r}")
    return t


class Kernel(nn.Module):
    """Base of the kernels: validation, evaluation on the domains, Metropolis selection, adaptation.

    Args:
        step_size: a positive float, or one per dimension ([dim]); see the module docstring.
        domains: one per dimension (default: any number of ``Real()``).
        adapt: update the step size after every call (set the attribute to False to freeze).
        target_acceptance: the acceptance adaptation aims at (default: the kernel's).
        adapt_rate: γ of the Robbins–Monro update of the log step size.
        differentiable: keep the graph through the moves (module docstring).

    Subclasses implement ``_move(x, log_p_fn, log_p, grad) -> (x_new, info)``.
    """

    target_acceptance_default: float = 0.5
    uses_grad: bool = True
    step_size_power: int = 1  # the step size scales as length ** step_size_power

    def __init__(
        self,
        step_size: StepSize,
        domains: Optional[Sequence[Domain]] = None,
        *,
        adapt: bool = True,
        target_acceptance: Optional[float] = None,
        adapt_rate: float = 0.1,
        differentiable: bool = False,
    ):
        super().__init__()
        self.space = Support(domains)
        step = _as_step_size(step_size, "step_size")
        if step.dim() == 1 and self.space.dim is not None and len(step) != self.space.dim:
            raise ValueError(
                f"step_size must be a float or have shape [{self.space.dim}], got {list(step.shape)}")
        self.register_buffer("log_step_size", step.log())
        target = self.target_acceptance_default if target_acceptance is None else float(target_acceptance)
        if not 0.0 < target < 1.0:
            raise ValueError(f"target_acceptance must be in (0, 1), got {target}")
        if adapt_rate <= 0:
            raise ValueError(f"adapt_rate must be positive, got {adapt_rate}")
        self.target_acceptance, self.adapt_rate = target, float(adapt_rate)
        self.adapt, self.differentiable = bool(adapt), bool(differentiable)

    @property
    def step_size(self) -> Tensor:
        """The current step size: a scalar or [dim] tensor."""
        return self.log_step_size.exp()

    @property
    def evaluations_per_step(self) -> int:
        """Target evaluations of one move (each with its gradient when ``uses_grad``)."""
        return 1

    def update_step_size(self, acceptance: Union[float, Tensor], rate: Optional[float] = None) -> None:
        """One Robbins–Monro step: log h += rate · (acceptance − target_acceptance); rate
        defaults to ``adapt_rate``."""
        acceptance = torch.as_tensor(acceptance).to(self.log_step_size)
        rate = self.adapt_rate if rate is None else float(rate)
        self.log_step_size.add_(rate * (acceptance - self.target_acceptance))
        self.log_step_size.clamp_(*_LOG_STEP_RANGE)

    def precondition(self, scale: Tensor) -> None:
        """Per-dimension step sizes h·scale^power, with h the current (mean log) step size:
        the step size becomes relative to ``scale`` [dim], a length per coordinate."""
        scale = torch.as_tensor(scale).to(self.log_step_size)
        if scale.dim() != 1 or not (torch.isfinite(scale) & (scale > 0)).all():
            raise ValueError(f"scale must be a [dim] tensor of positive lengths, got {scale!r}")
        if self.space.dim is not None and len(scale) != self.space.dim:
            raise ValueError(f"scale must have shape [{self.space.dim}], got {list(scale.shape)}")
        log_h = self.log_step_size.mean() + self.step_size_power * scale.log()
        self.log_step_size = log_h.clamp(*_LOG_STEP_RANGE)

    def forward(
        self, x: Tensor, log_p_fn: LogDensity, log_p: Optional[Tensor] = None, grad: Optional[Tensor] = None
    ) -> tuple[Tensor, MCMCInfo]:
        """One move of every chain, then (if ``adapt``) one step-size update.

        ``log_p`` [batch] and ``grad`` [batch, dim], when given, must be ``log_p_fn``'s
        values at ``x`` (e.g. ``info.log_p``, ``info.grad`` of the previous call).
        """
        x_new, info = self.step(x, log_p_fn, log_p, grad)
        if self.adapt:
            self.update_step_size(info.acceptance.detach().mean())
        return x_new, info

    def step(
        self, x: Tensor, log_p_fn: LogDensity, log_p: Optional[Tensor] = None, grad: Optional[Tensor] = None
    ) -> tuple[Tensor, MCMCInfo]:
        """One move of every chain without adaptation (same arguments as ``forward``)."""
        self.space.check(x)
        if self.log_step_size.dim() == 1 and len(self.log_step_size) != x.shape[1]:
            raise ValueError(f"x must have shape [batch, {len(self.log_step_size)}] (the step sizes), "
                             f"got {list(x.shape)}")
        if log_p is not None and log_p.shape != x.shape[:1]:
            raise ValueError(f"log_p must have shape [batch] = [{len(x)}], got {list(log_p.shape)}")
        if grad is not None and grad.shape != x.shape:
            raise ValueError(f"grad must have the shape of x, {list(x.shape)}, got {list(grad.shape)}")
        if not self.differentiable:
            x = x.detach()
            log_p = None if log_p is None else log_p.detach()
            grad = None if grad is None else grad.detach()
        if log_p is None or (self.uses_grad and grad is None):
            log_p, grad = self._evaluate(log_p_fn, x)
        return self._move(x, log_p_fn, log_p, grad)

    def _move(self, x: Tensor, log_p_fn: LogDensity, log_p: Tensor,
              grad: Optional[Tensor]) -> tuple[Tensor, MCMCInfo]:
        raise NotImplementedError

    def _evaluate(self, log_p_fn: LogDensity, x: Tensor, fallback: Optional[Tensor] = None):
        """log p [batch] (and ∇ log p) at ``x``, ``-inf`` outside the domains.

        Rows outside the domains (or not finite) are evaluated at ``fallback`` instead, so
        that the target only ever sees valid points.
        """
        inside = self.space.contains(x)
        if fallback is not None:
            x = torch.where(inside[:, None], x, fallback)
        if self.uses_grad:
            lp, grad = log_prob_and_grad(log_p_fn, x, create_graph=self.differentiable)
            grad = torch.where(inside[:, None], grad, torch.zeros_like(grad))
        else:
            lp, grad = log_prob(log_p_fn, x, keep_graph=self.differentiable), None
        return torch.where(inside, lp, torch.full_like(lp, -math.inf)), grad

    def _select(self, x, x_prop, log_p, log_p_prop, grad, grad_prop, log_ratio) -> tuple[Tensor, MCMCInfo]:
        """Metropolis–Hastings: accept each chain's proposal with probability min(1, exp(log_ratio))."""
        log_ratio = log_ratio.detach()
        log_ratio = nan_to_neg_inf(log_ratio)
        acceptance = torch.exp(log_ratio.clamp(max=0.0))
        accepted = torch.rand_like(acceptance) < acceptance
        x_new = torch.where(accepted[:, None], x_prop, x)
        log_p_new = torch.where(accepted, log_p_prop, log_p)
        grad_new = None if grad is None else torch.where(accepted[:, None], grad_prop, grad)
        delta = torch.where(accepted, log_p - log_p_prop, torch.zeros_like(log_p))
        return x_new, MCMCInfo(accepted, acceptance, log_p_new, grad_new, nan_to_neg_inf(delta))


class Metropolis(Kernel):
    """Random-walk Metropolis: x' = x + h ξ, ξ ~ N(0, I), accepted with min(1, p(x')/p(x))."""

    target_acceptance_default = 0.234
    uses_grad = False

    def _move(self, x, log_p_fn, log_p, grad):
        x_prop = self.space.wrap(x + self.step_size.to(x) * torch.randn_like(x))
        log_p_prop, _ = self._evaluate(log_p_fn, x_prop, fallback=x)
        return self._select(x, x_prop, log_p, log_p_prop, None, None, log_p_prop - log_p)


class MALA(Kernel):
    """Metropolis-adjusted Langevin: x' = x + τ∇log p(x) + √(2τ) ξ, with the MH correction.

    ``metropolis=False`` gives the unadjusted Langevin algorithm (ULA): every valid proposal
    is taken; its ``log_weight_delta`` is the Gaussian backward/forward ratio (module
    docstring); ULA has no acceptance to adapt to, so its step size stays fixed. On circle
    dimensions the proposal density is the wrapped normal (summed over enough images).
    """

    target_acceptance_default = 0.574
    step_size_power = 2  # τ is a time: a move spreads by √(2τ)

    def __init__(self, step_size: StepSize, domains: Optional[Sequence[Domain]] = None, *,
                 metropolis: bool = True, adapt: bool = True, **kwargs):
        super().__init__(step_size, domains, adapt=adapt and metropolis, **kwargs)
        self.metropolis = bool(metropolis)

    def _log_proposal(self, d: Tensor, tau: Tensor) -> Tensor:
        """log N(d; 0, 2τ) summed over dimensions, up to a constant that cancels in ratios."""
        var = (2 * tau).expand_as(d)
        flat = -(d**2) / (2 * var)
        if not self.space.has_circle:
            return flat.sum(-1)
        # images 2πk with |k| <= K cover the wrapped normal to within exp(-50)
        sigma = math.sqrt(2 * math.exp(float(self.log_step_size.max())))
        k = math.ceil((10 * sigma + math.pi) / (2 * math.pi))
        shifts = 2 * math.pi * torch.arange(-k, k + 1, device=d.device, dtype=d.dtype)
        images = wrap(d)[..., None] + shifts
        circ = torch.logsumexp(-(images**2) / (2 * var[..., None]), dim=-1)
        return torch.where(self.space.circle.to(d.device), circ, flat).sum(-1)

    def _move(self, x, log_p_fn, log_p, grad):
        tau = self.step_size.to(x)
        mean = x + tau * grad
        x_prop = self.space.wrap(mean + torch.sqrt(2 * tau) * torch.randn_like(x))
        log_p_prop, grad_prop = self._evaluate(log_p_fn, x_prop, fallback=x)
        log_forward = self._log_proposal(x_prop - mean, tau)
        log_backward = self._log_proposal(x - (x_prop + tau * grad_prop), tau)
        if self.metropolis:
            log_ratio = log_p_prop - log_p + log_backward - log_forward
            return self._select(x, x_prop, log_p, log_p_prop, grad, grad_prop, log_ratio)
        valid = torch.isfinite(log_p_prop)
        x_new = torch.where(valid[:, None], x_prop, x)
        grad_new = torch.where(valid[:, None], grad_prop, grad)
        log_p_new = torch.where(valid, log_p_prop, log_p)
        # a path through an invalid point has weight 0; the chain stays to keep values finite
        delta = torch.where(valid, log_backward - log_forward, torch.full_like(log_p, -math.inf))
        return x_new, MCMCInfo(valid, valid.to(x.dtype), log_p_new, grad_new, nan_to_neg_inf(delta))


class HMC(Kernel):
    """Hamiltonian Monte Carlo: fresh momenta p ~ N(0, M), ``n_leapfrog`` leapfrog steps, MH accept.

    ``mass``: a float or one per dimension, [dim] (diagonal mass matrix M). The energy is
    H = −log p(x) + ½ Σ p²/m. Trajectories leaving an interval are rejected.
    """

    target_acceptance_default = 0.65

    def __init__(self, step_size: StepSize, n_leapfrog: int = 5, mass: StepSize = 1.0,
                 domains: Optional[Sequence[Domain]] = None, **kwargs):
        super().__init__(step_size, domains, **kwargs)
        if int(n_leapfrog) != n_leapfrog or n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be a positive integer, got {n_leapfrog}")
        self.n_leapfrog = int(n_leapfrog)
        m = _as_step_size(mass, "mass")
        if m.dim() == 1 and self.space.dim is not None and len(m) != self.space.dim:
            raise ValueError(
                f"mass must be a float or have shape [{self.space.dim}], got {list(m.shape)}")
        self.register_buffer("mass", m)

    @property
    def evaluations_per_step(self) -> int:
        return self.n_leapfrog

    def _move(self, x, log_p_fn, log_p, grad):
        eps, mass = self.step_size.to(x), self.mass.to(x)
        momentum = torch.sqrt(mass) * torch.randn_like(x)
        kinetic = 0.5 * (momentum**2 / mass).sum(-1)
        y, log_p_y, grad_y = x, log_p, grad
        p = momentum + 0.5 * eps * grad
        valid = torch.ones_like(log_p, dtype=torch.bool)
        for i in range(self.n_leapfrog):
            y_next = self.space.wrap(y + eps * p / mass)
            log_p_y, grad_y = self._evaluate(log_p_fn, y_next, fallback=y)
            valid = valid & torch.isfinite(log_p_y)
            y = torch.where(valid[:, None], y_next, y)  # a failed trajectory stops where it was
            p = p + (0.5 * eps if i == self.n_leapfrog - 1 else eps) * grad_y
        log_p_y = torch.where(valid, log_p_y, torch.full_like(log_p_y, -math.inf))
        log_ratio = log_p_y - 0.5 * (p**2 / mass).sum(-1) - log_p + kinetic
        return self._select(x, y, log_p, log_p_y, grad, grad_y, log_ratio)


# the kernels by the names settings and the CLI use (snf.kernel, --ais-kernel)
KERNELS: dict[str, type[Kernel]] = {"metropolis": Metropolis, "mala": MALA, "hmc": HMC}
