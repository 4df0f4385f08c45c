"""The Langevin dynamics that reference simulations share: OpenMM's LangevinMiddleIntegrator at
the system's temperature, friction 1/ps, 1 fs steps (2 fs when the system constrains bonds,
``timestep_ps``), on a chosen platform; states saved as portable XML for resuming.

Constrained MD samples the rigid-bond density times the mass-metric factor det(Z_m)^½, the
flow's target without it (systems/README.md); for X–H constraints the factor changes no
population in the fourth digit (benchmarks/RESULTS.md, "the mass-metric factor"), so such
runs serve as references for the flow's target.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable, Mapping, Optional

import numpy as np
import openmm
import openmm.unit as unit

from ..errors import BoltzflowError

TIMESTEP_PS = 0.001              # ps, flexible bonds
CONSTRAINED_TIMESTEP_PS = 0.002  # ps, with constrained bonds (X–H at least)
FRICTION_PER_PS = 1.0


def timestep_ps(system) -> float:
    """The integration step (ps) of ``system`` (a boltzflow System): 2 fs with constraints, else 1 fs."""
    return CONSTRAINED_TIMESTEP_PS if system.openmm_system.getNumConstraints() else TIMESTEP_PS


def changed_settings(saved: Mapping, settings: Mapping, legacy: Optional[Mapping] = None) -> list[str]:
    """The keys of ``settings`` whose value differs from the ``saved`` one (where ``saved``
    lacks a key, ``legacy`` holds the value older runs used)."""
    legacy = legacy or {}
    return [key for key in settings if saved.get(key, legacy.get(key)) != settings[key]]


def other_settings_error(path: Path, saved: Mapping, settings: Mapping, changed: list[str],
                         remedy: str) -> BoltzflowError:
    """The one-line error for resuming the run in ``path`` with ``changed`` settings."""
    return BoltzflowError(f"{path} holds a run with other settings ({', '.join(changed)}: "
                          f"{[saved.get(k) for k in changed]} there, {[settings[k] for k in changed]} now); {remedy}")


def openmm_seed(seed: int, *stream: int) -> int:
    """A seed in [1, 2³¹ − 1) for OpenMM (0 would mean "random") from a user seed and a
    stream label (e.g. the frame a resumed run starts at), so streams never repeat."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0] % (2**31 - 2)) + 1


def platform_by_name(name: str) -> openmm.Platform:
    """The OpenMM platform ``name``; a ``BoltzflowError`` listing the available ones if absent."""
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name not in names:
        raise BoltzflowError(f"OpenMM platform {name!r} is not available here; available: {', '.join(names)}")
    return openmm.Platform.getPlatformByName(name)


def langevin_context(system, platform: str = "CPU", seed: int = 0, properties: Optional[dict] = None,
                     forces: Iterable[openmm.Force] = ()) -> openmm.Context:
    """A Context for ``system`` (a boltzflow System) with the reference Langevin integrator and
    any extra ``forces`` added to a copy of its OpenMM System; positions set to the system's
    structure. ``properties``: platform properties, e.g. ``{"Threads": "1"}`` on the CPU."""
    omm_system = copy.deepcopy(system.openmm_system)
    for force in forces:
        omm_system.addForce(force)
    integrator = openmm.LangevinMiddleIntegrator(system.temperature * unit.kelvin, FRICTION_PER_PS / unit.picosecond,
                                                 timestep_ps(system) * unit.picoseconds)
    integrator.setRandomNumberSeed(openmm_seed(seed, 0))
    context = openmm.Context(omm_system, integrator, platform_by_name(platform), properties or {})
    context.setPositions(system.positions)
    return context


def minimise_and_thermalise(context: openmm.Context, temperature: float, seed: int) -> None:
    """Minimise the energy from the current positions, then draw Maxwell–Boltzmann velocities."""
    openmm.LocalEnergyMinimizer.minimize(context)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, openmm_seed(seed, 1))


def save_state(context: openmm.Context) -> str:
    """Positions, velocities, time and parameters of ``context`` as XML (platform independent)."""
    return openmm.XmlSerializer.serialize(context.getState(getPositions=True, getVelocities=True, getParameters=True))


def restore_state(context: openmm.Context, xml: str, seed: int, stream: int) -> None:
    """Load a state saved by ``save_state`` and reseed the integrator's noise for ``stream``."""
    context.setState(openmm.XmlSerializer.deserialize(xml))
    context.getIntegrator().setRandomNumberSeed(openmm_seed(seed, 2, stream))
    context.reinitialize(preserveState=True)


def positions_and_energy(context: openmm.Context) -> tuple[np.ndarray, float, float]:
    """Current positions [n_atoms, 3] (nm), potential energy (kJ/mol) and time (ps)."""
    state = context.getState(getPositions=True, getEnergy=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getTime().value_in_unit(unit.picosecond))
