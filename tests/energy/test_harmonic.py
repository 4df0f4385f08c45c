"""Thermal widths of harmonic terms: against quadrature of the Boltzmann density, and the
look-up of bonds and angles in either order, summed over terms, missing."""

import math

import numpy as np
import openmm
import pytest

from boltzflow.energy.harmonic import harmonic_widths
from boltzflow.systems import load_system


def small_system():
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(0, 1, 0.15, 2.5e5)
    bonds.addBond(1, 2, 0.15, 1.0e5)
    bonds.addBond(2, 1, 0.15, 1.0e5)     # a second term on the same bond adds its k
    angles = openmm.HarmonicAngleForce()
    angles.addAngle(2, 1, 0, 1.9, 400.0)
    for force in (bonds, angles):
        system.addForce(force)
    return system


def test_widths_match_the_spread_of_the_boltzmann_density():
    """σ of r under exp(-k (r - r0)² / 2kT) r² (a bond in 3-D), by quadrature."""
    kT, k, r0 = 2.494, 2.5e5, 0.15
    (sigma,), _ = harmonic_widths(small_system(), kT, [(1, 0)], [])
    r = np.linspace(r0 - 0.05, r0 + 0.05, 200001)
    density = r * r * np.exp(-0.5 * k * (r - r0) ** 2 / kT)
    mean = np.trapezoid(density * r, r) / np.trapezoid(density, r)
    spread = math.sqrt(np.trapezoid(density * (r - mean) ** 2, r) / np.trapezoid(density, r))
    # the r² factor widens the Gaussian by a relative (σ/r0)² ≈ 4e-4
    assert sigma == pytest.approx(spread, rel=2e-3)


def test_look_up_in_either_order_sums_terms_and_reports_missing():
    kT = 2.5
    bonds, angles = harmonic_widths(small_system(), kT, [(0, 1), (2, 1), (0, 3)], [(0, 1, 2), (1, 0, 2)])
    assert bonds == pytest.approx([math.sqrt(kT / 2.5e5), math.sqrt(kT / 2e5), None])
    assert angles == pytest.approx([math.sqrt(kT / 400.0), None])
    with pytest.raises(ValueError, match="kT"):
        harmonic_widths(small_system(), 0.0, [], [])


def test_force_field_scales_of_alanine_dipeptide():
    """Every bond and angle of its Z-matrix has a harmonic term; the coordinates use those widths."""
    system = load_system("alanine-dipeptide")
    ic = system.internal_coordinates(scales="force-field")
    bonds, angles = harmonic_widths(system.openmm_system, system.kT, ic.zmatrix.bonds, ic.zmatrix.angles)
    assert None not in bonds and None not in angles
    assert ic.normalization.bond_scale.tolist() == pytest.approx(bonds, rel=1e-12)
    assert ic.normalization.angle_scale.tolist() == pytest.approx(angles, rel=1e-12)
    assert 0.002 < min(bonds) and max(bonds) < 0.0035 and 0.05 < min(angles) and max(angles) < 0.11
    with pytest.raises(ValueError, match="scales must be one of"):
        system.internal_coordinates(scales="thermal")
