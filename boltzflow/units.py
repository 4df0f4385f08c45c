"""Units and physical constants: nm, kJ/mol, K, elementary charges (OpenMM's units)."""

from __future__ import annotations

import openmm.unit as unit

# R in kJ/(mol K), OpenMM's value
MOLAR_GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
# OpenMM's Coulomb constant 1/(4π ε0) in kJ·nm/(mol·e²) (NonbondedForce, GBSAOBCForce)
ONE_4PI_EPS0 = 138.93545764438198


def thermal_energy(temperature: float) -> float:
    """kT in kJ/mol at ``temperature`` (K)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive (K), got {temperature}")
    return MOLAR_GAS_CONSTANT * temperature
