"""Independent answers for energy tests: OpenMM Reference-platform evaluations."""

import numpy as np
import openmm
import openmm.unit as unit


def reference_energies_forces(system: openmm.System, xyz: np.ndarray):
    """Energies [B] (kJ/mol) and forces [B, N, 3] (kJ/mol/nm) from one Reference Context."""
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3),
                             openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for x in xyz:
        context.setPositions(x)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.array(energies), np.array(forces)


def conformations(positions: np.ndarray, n_thermal: int = 90, n_clash: int = 9, seed: int = 0):
    """The structure, thermal perturbations (0.002-0.02 nm) and a few clashes
    (one atom moved to 0.1-0.15 nm of a non-bonded atom). Returns (xyz [B, N, 3], is_clash [B])."""
    rng = np.random.default_rng(seed)
    n = len(positions)
    scales = rng.uniform(0.002, 0.02, size=(n_thermal, 1, 1))
    thermal = positions[None] + scales * rng.standard_normal((n_thermal, n, 3))
    clashes = []
    for _ in range(n_clash):
        x = positions + 0.005 * rng.standard_normal((n, 3))
        i, j = rng.choice(n, size=2, replace=False)
        direction = rng.standard_normal(3)
        x[i] = x[j] + rng.uniform(0.1, 0.15) * direction / np.linalg.norm(direction)
        clashes.append(x)
    xyz = np.concatenate([positions[None], thermal, np.array(clashes).reshape(-1, n, 3)])
    is_clash = np.r_[np.zeros(1 + n_thermal, bool), np.ones(n_clash, bool)]
    return xyz, is_clash
