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


def hot_md_frames(system: openmm.System, positions: np.ndarray, n_frames: int, seed: int = 0,
                  temperature: float = 800.0, stride: int = 250) -> np.ndarray:
    """Frames [n_frames, N, 3] (nm) of Langevin dynamics at ``temperature`` (K): conformations
    far from the structure (other φ/ψ basins, stretched bonds) that a force field must also get right."""
    integrator = openmm.LangevinMiddleIntegrator(temperature, 5.0, 0.001)
    integrator.setRandomNumberSeed(seed + 1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(positions)
    context.setVelocitiesToTemperature(temperature, seed + 1)
    frames = []
    for _ in range(n_frames):
        integrator.step(stride)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return np.array(frames)


def conformations(positions: np.ndarray, n_thermal: int = 90, n_clash: int = 9, seed: int = 0,
                  frames: np.ndarray | None = None):
    """The structure, thermal perturbations (0.002-0.02 nm) of it or, when given, of the MD
    ``frames`` in turn, and a few clashes (one atom moved to 0.1-0.15 nm of another atom).
    Returns (xyz [B, N, 3], is_clash [B])."""
    rng = np.random.default_rng(seed)
    n = len(positions)
    scales = rng.uniform(0.002, 0.02, size=(n_thermal, 1, 1))
    centres = positions[None] if frames is None else frames[np.arange(n_thermal) % len(frames)]
    thermal = centres + scales * rng.standard_normal((n_thermal, n, 3))
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
