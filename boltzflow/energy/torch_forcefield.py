"""Compile an OpenMM ``System`` into a batched torch force field.

Supported: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce,
NonbondedForce (NoCutoff, with exceptions), GBSAOBCForce (OBC2, NoCutoff) and the
CustomGBForce that ``openmm.app.internal.customgbforces`` builds for OBC1/OBC2
(recognised by rebuilding it and comparing expressions). CMMotionRemover is ignored.
Anything else raises ``NotImplementedError`` naming the force or option.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Union

import openmm
import torch
from torch import nn

from ..units import ONE_4PI_EPS0
from .terms import (
    HarmonicAngles, HarmonicBonds, OBCGeneralizedBorn, PairCoulombLJ, PairTerm,
    PeriodicTorsions, pair_squared_distances,
)

_IGNORED = (openmm.CMMotionRemover,)
_F64 = torch.float64


def _tensor(values, dtype=_F64):
    return torch.tensor(values, dtype=dtype)


def _index(values, width):
    return torch.tensor(values, dtype=torch.long).reshape(-1, width)


def _bonds(force: openmm.HarmonicBondForce, n_atoms: int):
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    return HarmonicBonds(_index([[r[0], r[1]] for r in rows], 2),
                         _tensor([r[2]._value for r in rows]), _tensor([r[3]._value for r in rows]), n_atoms)


def _angles(force: openmm.HarmonicAngleForce, n_atoms: int):
    rows = [force.getAngleParameters(i) for i in range(force.getNumAngles())]
    return HarmonicAngles(_index([r[:3] for r in rows], 3),
                          _tensor([r[3]._value for r in rows]), _tensor([r[4]._value for r in rows]), n_atoms)


def _torsions(force: openmm.PeriodicTorsionForce, n_atoms: int):
    rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
    return PeriodicTorsions(_index([r[:4] for r in rows], 4), _tensor([r[4] for r in rows]),
                            _tensor([r[5]._value for r in rows]), _tensor([r[6]._value for r in rows]), n_atoms)


def _nonbonded(force: openmm.NonbondedForce, n_atoms: int):
    if force.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
        raise NotImplementedError(
            "NonbondedForce with a cutoff or periodic method is not supported by the torch "
            "backend; use nonbondedMethod=NoCutoff or the OpenMM backend")
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise NotImplementedError("NonbondedForce parameter offsets are not supported by the torch backend")
    n = force.getNumParticles()
    q, sig, eps = (_tensor(v) for v in zip(*[(p[0]._value, p[1]._value, p[2]._value)
                                              for p in (force.getParticleParameters(i) for i in range(n))]))
    charge_prod = q[:, None] * q[None, :]                  # Lorentz-Berthelot combination
    sigma, epsilon = 0.5 * (sig[:, None] + sig[None, :]), torch.sqrt(eps[:, None] * eps[None, :])
    for e in range(force.getNumExceptions()):
        i, j, qq, s, ep = force.getExceptionParameters(e)
        i, j = min(i, j), max(i, j)
        charge_prod[i, j], sigma[i, j], epsilon[i, j] = qq._value, s._value, ep._value
    return PairCoulombLJ(charge_prod, sigma, epsilon)


def _obc_builtin(force: openmm.GBSAOBCForce, n_atoms: int):
    if force.getNonbondedMethod() != openmm.GBSAOBCForce.NoCutoff:
        raise NotImplementedError("GBSAOBCForce with a cutoff is not supported by the torch backend")
    rows = [force.getParticleParameters(i) for i in range(force.getNumParticles())]
    offset = 0.009
    charge = _tensor([r[0]._value for r in rows])
    offset_radius = _tensor([r[1]._value - offset for r in rows])
    scaled = _tensor([r[2] for r in rows]) * offset_radius
    prefactor = -ONE_4PI_EPS0 * (1 / force.getSoluteDielectric() - 1 / force.getSolventDielectric())
    sa = 4 * math.pi * force.getSurfaceAreaEnergy()._value
    return OBCGeneralizedBorn(charge, offset_radius, scaled, offset, 1.0, 0.8, 4.85,
                              prefactor, sa, 0.14, inside_correction=True)  # OpenMM fixes the probe at 0.14 nm


def _custom_gb_expressions(force: openmm.CustomGBForce):
    return ([force.getComputedValueParameters(i)[:2] for i in range(force.getNumComputedValues())],
            [force.getEnergyTermParameters(i) for i in range(force.getNumEnergyTerms())])


def _obc_custom(force: openmm.CustomGBForce, n_atoms: int):
    """Recognise an OBC1/OBC2 CustomGBForce from ``openmm.app.internal.customgbforces``."""
    from openmm.app.internal import customgbforces as cgb

    unsupported = NotImplementedError(
        "this CustomGBForce is not one of the OBC1/OBC2 forms of "
        "openmm.app.internal.customgbforces (no cutoff, no salt); the torch backend cannot "
        "compile it; use the OpenMM backend")
    if force.getNumEnergyTerms() == 0:
        raise unsupported
    found = dict(re.findall(r"(\w+)=([-+0-9.eE]+)", force.getEnergyTermParameters(0)[0].split(";", 1)[-1]))
    try:
        solvent, solute = float(found["solventDielectric"]), float(found["soluteDielectric"])
        kappa, offset = float(found["kappa"]), float(found["offset"])
    except KeyError:
        raise unsupported from None
    if "cutoff" in found or kappa != 0 or offset != cgb.CustomAmberGBForceBase.OFFSET:
        raise unsupported
    models = {"OBC1": (cgb.GBSAOBC1Force, 0.8, 0.0, 2.909125), "OBC2": (cgb.GBSAOBC2Force, 1.0, 0.8, 4.85)}
    for cls, alpha, beta, gamma in models.values():
        for sa in ("ACE", None):
            if _custom_gb_expressions(cls(solvent, solute, sa)) == _custom_gb_expressions(force):
                rows = [force.getParticleParameters(i) for i in range(force.getNumParticles())]
                prefactor = -138.935485 * (1 / solute - 1 / solvent)  # the constant in the expressions
                return OBCGeneralizedBorn(
                    _tensor([r[0] for r in rows]), _tensor([r[1] for r in rows]),
                    _tensor([r[2] for r in rows]), offset, alpha, beta, gamma, prefactor,
                    28.3919551 if sa == "ACE" else 0.0, 0.14, inside_correction=False)
    raise unsupported


_COMPILERS = {
    openmm.HarmonicBondForce: _bonds,
    openmm.HarmonicAngleForce: _angles,
    openmm.PeriodicTorsionForce: _torsions,
    openmm.NonbondedForce: _nonbonded,
    openmm.GBSAOBCForce: _obc_builtin,
    openmm.CustomGBForce: _obc_custom,
}


PAIRS_PER_CHUNK = {"cpu": 2**18, "cuda": 2**24}
"""Conformations are evaluated in chunks of about this many atom pairs (chunk × n_atoms²). On a
CPU a [chunk, n_atoms, n_atoms] float32 tensor of 1 MiB stays in a core's cache through the
dozens of elementwise passes of the pair terms (benchmarks/RESULTS.md, "Against atom count");
a GPU wants large kernels, and the chunk only bounds memory (64 MiB per float32 pair tensor)."""


def chunk_size(n_atoms: int, device: Union[str, torch.device] = "cpu") -> int:
    """Conformations per chunk for ``n_atoms`` on ``device``: ``PAIRS_PER_CHUNK / n_atoms²``, at least 1."""
    pairs = PAIRS_PER_CHUNK.get(torch.device(device).type, PAIRS_PER_CHUNK["cpu"])
    return max(1, pairs // n_atoms**2)


class _ChunkedEnergy(torch.autograd.Function):
    """Energies [batch] with their gradient computed chunk by chunk in the forward pass, while
    each chunk's temporaries are still in cache; only the gradient [batch, N, 3] is kept for
    the backward pass.

    A second derivative (``create_graph=True``, e.g. the differentiable MCMC moves of
    stochastic normalising flows) recomputes the energy of the whole batch by autograd.
    """

    @staticmethod
    def forward(ctx, xyz: torch.Tensor, forcefield: "TorchForceField") -> torch.Tensor:
        energy, gradient = forcefield.energy_and_gradient(xyz)
        ctx.save_for_backward(xyz, gradient)
        ctx.forcefield = forcefield
        return energy

    @staticmethod
    def backward(ctx, grad_energy: torch.Tensor):
        xyz, gradient = ctx.saved_tensors
        if torch.is_grad_enabled():
            with torch.enable_grad():
                energy = ctx.forcefield.energy(xyz)
                (gradient,) = torch.autograd.grad(energy.sum(), xyz, create_graph=True)
        return grad_energy[:, None, None] * gradient, None


class TorchForceField(nn.Module):
    """Potential energy in kJ/mol of positions ``xyz`` [batch, n_atoms, 3] (nm) → [batch].

    Built by ``TorchForceField(openmm_system)``; differentiable (twice), batched, any device
    and float dtype (``.to(device, dtype)``; parameters start in float64). Batches are
    evaluated in chunks of ``chunk`` conformations (default ``chunk_size`` for the device), the
    gradient with each chunk: bonded terms by autograd, pair terms analytically (their
    derivatives by r², then one product with the positions); ``compile=True`` fuses the
    chunk's evaluation with ``torch.compile``.
    """

    def __init__(self, system: openmm.System, chunk: Optional[int] = None, compile: bool = False):
        super().__init__()
        if system.usesPeriodicBoundaryConditions():
            raise NotImplementedError("periodic systems are not supported by the torch backend")
        if any(system.isVirtualSite(i) for i in range(system.getNumParticles())):
            raise NotImplementedError("virtual sites are not supported by the torch backend")
        terms = []
        for force in system.getForces():
            if isinstance(force, _IGNORED):
                continue
            compiler = _COMPILERS.get(type(force))
            if compiler is None:
                raise NotImplementedError(
                    f"{type(force).__name__} is not supported by the torch backend "
                    f"(supported: {', '.join(c.__name__ for c in _COMPILERS)}); use the OpenMM backend")
            terms.append(compiler(force, system.getNumParticles()))
        self.bonded = nn.ModuleList([t for t in terms if not isinstance(t, PairTerm)])
        self.pairs = nn.ModuleList([t for t in terms if isinstance(t, PairTerm)])
        self.n_atoms = system.getNumParticles()
        if chunk is not None and int(chunk) < 1:
            raise ValueError(f"chunk must be a positive number of conformations, got {chunk}")
        self.chunk = None if chunk is None else int(chunk)
        self.chunk_energy = torch.compile(self.energy) if compile else self.energy
        self.chunk_pair_energy_and_gradient = (torch.compile(self.pair_energy_and_gradient) if compile
                                               else self.pair_energy_and_gradient)

    def energy(self, xyz: torch.Tensor) -> torch.Tensor:
        """Energies [batch] (kJ/mol), by operations autograd can differentiate (twice)."""
        energy = xyz.new_zeros(xyz.shape[0])
        for term in self.bonded:
            energy = energy + term(xyz)
        if len(self.pairs):
            r2 = pair_squared_distances(xyz)
            for term in self.pairs:
                energy = energy + term(r2)
        return energy

    def energy_and_gradient(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies [batch] (kJ/mol) and their gradient [batch, N, 3] (kJ/mol/nm), no graph:
        bonded terms by autograd on the whole batch, pair terms chunk by chunk."""
        xyz = xyz.detach()
        with torch.enable_grad():
            x = xyz.requires_grad_() if len(self.bonded) else xyz
            energy = xyz.new_zeros(xyz.shape[0])
            for term in self.bonded:
                energy = energy + term(x)
            gradient = torch.autograd.grad(energy.sum(), x)[0] if len(self.bonded) else torch.zeros_like(xyz)
        if len(self.pairs):
            energies, gradients = zip(*(self.chunk_pair_energy_and_gradient(part) for part in self._chunks(xyz)))
            energy, gradient = energy + torch.cat(energies), gradient + torch.cat(gradients)
        return energy.detach(), gradient

    def pair_energy_and_gradient(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair terms' energies [batch] and gradient [batch, N, 3], analytically."""
        centred = xyz - xyz.mean(1, keepdim=True)       # smaller round-off in the product below
        r2 = pair_squared_distances(centred)
        energy, by_r2 = 0, 0
        for term in self.pairs:
            term_energy, term_by_r2 = term.energy_and_gradient(r2)
            energy, by_r2 = energy + term_energy, by_r2 + term_by_r2
        by_r2 = by_r2 + by_r2.transpose(1, 2)              # r²_ij = r²_ji = |x_i − x_j|²
        # ∂E/∂x_i = Σ_j 2 S_ij (x_i − x_j) = 2 (x_i Σ_j S_ij − (S x)_i)
        return energy, 2 * (by_r2.sum(-1, keepdim=True) * centred - by_r2 @ centred)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        if xyz.dim() != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"positions must have shape [batch, {self.n_atoms}, 3] (nm), got {list(xyz.shape)}")
        if torch.is_grad_enabled() and xyz.requires_grad:
            return _ChunkedEnergy.apply(xyz, self)
        return torch.cat([self.chunk_energy(part) for part in self._chunks(xyz)])

    def _chunks(self, xyz: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return xyz.split(self.chunk or chunk_size(self.n_atoms, xyz.device))
