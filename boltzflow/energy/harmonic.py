"""Thermal widths of an OpenMM System's harmonic bond and angle terms.

A harmonic term E = ½ k (r − r₀)² alone gives r a Gaussian of standard deviation
σ = √(kT / k) at temperature T: about 0.003 nm for Amber bonds and 0.06–0.10 rad for its
angles at 300 K. Internal coordinates normalised by these widths start a flow with bonds
and angles already at their thermal spread (``boltzflow.coordinates.normalization``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import openmm


def _force_constants(system: openmm.System) -> tuple[dict, dict]:
    """k of every bonded pair (kJ/mol/nm²) and angle (kJ/mol/rad²), summed over terms, keyed
    by sorted atom tuples (angles: ends sorted, centre kept)."""
    bonds: dict[tuple, float] = {}
    angles: dict[tuple, float] = {}
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for i in range(force.getNumBonds()):
                a, b, _, k = force.getBondParameters(i)
                key = (min(a, b), max(a, b))
                bonds[key] = bonds.get(key, 0.0) + k.value_in_unit(k.unit)
        elif isinstance(force, openmm.HarmonicAngleForce):
            for i in range(force.getNumAngles()):
                a, b, c, _, k = force.getAngleParameters(i)
                key = (min(a, c), b, max(a, c))
                angles[key] = angles.get(key, 0.0) + k.value_in_unit(k.unit)
    return bonds, angles


def harmonic_widths(system: openmm.System, kT: float, bonds: Sequence[Sequence[int]],
                    angles: Sequence[Sequence[int]]) -> tuple[list[Optional[float]], list[Optional[float]]]:
    """σ = √(kT/k) of each bond (i, j) in nm and each angle (i, j, k) in rad, from the harmonic
    terms of ``system``; None where no harmonic term (or k ≤ 0) holds that bond or angle.

    ``kT`` in kJ/mol.
    """
    if not kT > 0:
        raise ValueError(f"kT must be positive (kJ/mol), got {kT}")
    k_bonds, k_angles = _force_constants(system)

    def width(k: Optional[float]) -> Optional[float]:
        return math.sqrt(kT / k) if k is not None and k > 0 else None

    return ([width(k_bonds.get((min(a, b), max(a, b)))) for a, b in bonds],
            [width(k_angles.get((min(a, c), b, max(a, c)))) for a, b, c in angles])
