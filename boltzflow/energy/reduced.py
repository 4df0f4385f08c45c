"""Reduced energies u = E/kT of molecular conformations, from torch or from OpenMM.

Both backends map positions ``xyz`` [batch, n_atoms, 3] (nm) to ``u`` [batch]
(dimensionless), differentiable with respect to ``xyz``. Non-finite energies become
``+inf`` (a clash never crashes anything).
"""

from __future__ import annotations

import math
from typing import Optional

import openmm
import torch
from torch import nn

from ..units import thermal_energy
from .openmm_backend import OpenMMPool
from .torch_forcefield import TorchForceField

def _check_positions(xyz: torch.Tensor, n_atoms: int) -> None:
    if xyz.dim() != 3 or xyz.shape[1:] != (n_atoms, 3):
        raise ValueError(f"positions must have shape [batch, {n_atoms}, 3] (nm), got {list(xyz.shape)}")


def _finite_or_inf(u: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(u), torch.full_like(u, math.inf), u)


class ReducedEnergy(nn.Module):
    """Base class: ``u = energy(xyz)``; ``kT`` (kJ/mol) and ``temperature`` (K) attributes."""

    n_atoms: int

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = float(temperature)
        self.kT = thermal_energy(temperature)


class TorchEnergy(ReducedEnergy):
    """Reduced energy from the torch force field compiled from ``system``.

    Runs on the device and in the dtype of the module (``.to(device, dtype)``);
    parameters start in float64 on the CPU. ``compile=True`` fuses the force field with
    ``torch.compile`` (needs a C++ compiler on CPU): the first call takes 10-30 s, later
    calls run 2-3x faster, which pays off in training runs of more than a few minutes.
    """

    def __init__(self, system: openmm.System, temperature: float, compile: bool = False):
        super().__init__(temperature)
        self.forcefield = TorchForceField(system, compile=compile)
        self.n_atoms = self.forcefield.n_atoms

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        _check_positions(xyz, self.n_atoms)
        return _finite_or_inf(self.forcefield(xyz) / self.kT)


class _OpenMMReducedEnergy(torch.autograd.Function):
    """Reduced energies with OpenMM's forces as their gradient; no second derivatives: a
    backward pass with ``create_graph`` raises instead of leaving the energy's Hessian out."""

    @staticmethod
    def forward(ctx, xyz, pool, kT):
        energies, forces = pool.evaluate(xyz.detach().cpu().double().numpy())
        ctx.save_for_backward(torch.from_numpy(forces).to(xyz))
        ctx.kT = kT
        return torch.from_numpy(energies / kT).to(xyz)

    @staticmethod
    def backward(ctx, grad_u):
        if torch.is_grad_enabled():
            raise RuntimeError("the OpenMM energy has no second derivatives (a gradient taken with "
                               "create_graph, e.g. differentiable MCMC moves); use the torch backend")
        (forces,) = ctx.saved_tensors
        return -forces / ctx.kT * grad_u[:, None, None], None, None


class OpenMMEnergy(ReducedEnergy):
    """Reduced energy from OpenMM contexts; gradients from OpenMM's forces.

    Args:
        system: the OpenMM System.
        temperature: K.
        platform: ``"Reference"``, ``"CPU"``, ``"CUDA"`` or ``"OpenCL"``.
        workers: worker processes, each with its own Context (0: one Context in this
            process). Call ``close()`` (or use ``with``) to stop them.
    """

    def __init__(self, system: openmm.System, temperature: float, platform: str = "CPU",
                 workers: int = 0, properties: Optional[dict] = None):
        super().__init__(temperature)
        self.pool = OpenMMPool(system, workers, platform, properties)
        self.n_atoms = self.pool.n_atoms

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        _check_positions(xyz, self.n_atoms)
        return _OpenMMReducedEnergy.apply(xyz, self.pool, self.kT)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def regularize(u: torch.Tensor, high: float = 1e3, cap: float = 1e9) -> torch.Tensor:
    """Soften reduced energies for training: linear up to ``high``, logarithmic above
    (``high + log(1 + u - high)``), never above ``cap``; NaN becomes ``+inf``.

    The map is continuous with a continuous first derivative at ``high``.
    """
    if not 0 < high < cap:
        raise ValueError(f"need 0 < high < cap, got high={high}, cap={cap}")
    soft = high + torch.log1p((u - high).clamp_min(0))
    out = torch.where(u > high, soft, u).clamp_max(cap)
    return _finite_or_inf(out)
