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
from itertools import combinations

import openmm
import torch
from torch import nn

from ..units import ONE_4PI_EPS0
from .terms import (
    HarmonicAngles, HarmonicBonds, OBCGeneralizedBorn, PairCoulombLJ,
    PeriodicTorsions,
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
    q, sig, eps = zip(*[(p[0]._value, p[1]._value, p[2]._value)
                        for p in (force.getParticleParameters(i) for i in range(n))])
    exceptions = {}
    for e in range(force.getNumExceptions()):
        i, j, qq, s, ep = force.getExceptionParameters(e)
        exceptions[(min(i, j), max(i, j))] = (qq._value, s._value, ep._value)
    pairs, params = [], []
    for i, j in combinations(range(n), 2):
        if (i, j) in exceptions:
            qq, s, ep = exceptions[(i, j)]
        else:
            qq, s, ep = q[i] * q[j], 0.5 * (sig[i] + sig[j]), math.sqrt(eps[i] * eps[j])
        if qq != 0 or ep != 0:
            pairs.append((i, j))
            params.append((qq, s, ep))
    qq, s, ep = zip(*params) if params else ((), (), ())
    return PairCoulombLJ(_index(pairs, 2), _tensor(qq), _tensor(s), _tensor(ep), n_atoms)


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


class TorchForceField(nn.Module):
    """Potential energy in kJ/mol of positions ``xyz`` [batch, n_atoms, 3] (nm) → [batch].

    Built by ``TorchForceField(openmm_system)``; differentiable, batched, any device and
    float dtype (``.to(device, dtype)``; parameters start in float64).
    """

    def __init__(self, system: openmm.System):
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
        self.terms = nn.ModuleList(terms)
        self.n_atoms = system.getNumParticles()

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        if xyz.dim() != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"positions must have shape [batch, {self.n_atoms}, 3] (nm), got {list(xyz.shape)}")
        energy = xyz.new_zeros(xyz.shape[0])
        for term in self.terms:
            energy = energy + term(xyz)
        return energy
