"""Umbrella sampling along a named dihedral, analysed with MBAR.

Windows are evenly spaced over [-π, π); each restrains the dihedral θ with
E = ½ κ min(|θ − θ₀|, 2π − |θ − θ₀|)² (a ``CustomTorsionForce``, periodic). The windows run
one after the other in one Context (each starts from the previous one's last state),
with ``equilibration_ps`` discarded before ``ps`` of sampling; the CV is recorded every
``sample_interval`` steps. After each window, ``umbrella.h5`` in the output folder is
rewritten atomically with every finished window and the state to continue from, so an
interrupted run resumes at the next window. ``analyse_umbrella`` turns that file into the
PMF (``pmf.csv``, ``pmf.png``) and ΔF between the system's states defined on the CV
(``free_energies.json``), all in kT.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import h5py
import numpy as np
import openmm
import openmm.unit as unit
import torch

from ..analysis.estimate import Estimate
from ..analysis.mbar import UmbrellaFreeEnergies, mbar_free_energies
from ..analysis.plots import plot_pmf
from ..energy.terms import dihedral_angles
from ..errors import BoltzflowError
from ..io import atomic_path
from .simulation import TIMESTEP_PS, langevin_context, minimise_and_thermalise, restore_state, save_state

DATA_FILE, PMF_FILE, PLOT_FILE, RESULTS_FILE = "umbrella.h5", "pmf.csv", "pmf.png", "free_energies.json"
CENTRE, FORCE_CONSTANT = "umbrella_theta0", "umbrella_k"


@dataclass(frozen=True)
class UmbrellaResult:
    """MBAR results, ΔF ("a -> b" → Estimate, kT) and the files written in ``folder``."""

    free_energies: UmbrellaFreeEnergies
    delta_f: dict
    folder: Path

    @property
    def files(self) -> dict:
        return {name: self.folder / name for name in (DATA_FILE, PMF_FILE, PLOT_FILE, RESULTS_FILE)}


def window_centres(windows: int) -> np.ndarray:
    """Restraint centres [windows] (radians), evenly spaced over [-π, π)."""
    return -math.pi + 2 * math.pi * np.arange(windows) / windows


def default_force_constant(windows: int, kT: float) -> float:
    """κ (kJ/mol/rad²) whose restraint width sqrt(kT/κ) is half the window spacing."""
    return kT * (2 / (2 * math.pi / windows)) ** 2


def dihedral_restraint(atoms: tuple, force_constant: float) -> openmm.CustomTorsionForce:
    """Periodic harmonic restraint on one dihedral; its centre is the global parameter
    ``umbrella_theta0`` (rad) and κ is ``umbrella_k`` (kJ/mol/rad²)."""
    force = openmm.CustomTorsionForce(
        f"0.5*{FORCE_CONSTANT}*min(dtheta, 2*pi - dtheta)^2; dtheta = abs(theta - {CENTRE}); pi = {math.pi!r}")
    force.addGlobalParameter(CENTRE, 0.0)
    force.addGlobalParameter(FORCE_CONSTANT, force_constant)
    force.addTorsion(*atoms, [])
    return force


def cv_regions(system, cv: str) -> dict:
    """The system's states defined on ``cv`` alone: name → (low, high) radians."""
    return {name: state.ranges[cv] for name, state in system.states.items() if set(state.ranges) == {cv}}


def run_umbrella(system, cv: str = "phi", windows: int = 36, ps: float = 200.0, out: Union[str, Path] = "umbrella",
                 force_constant: Optional[float] = None, platform: str = "CPU", seed: int = 0,
                 equilibration_ps: Optional[float] = None, sample_interval: int = 100, bins: int = 72,
                 properties: Optional[dict] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> UmbrellaResult:
    """Umbrella sampling of ``system`` along the dihedral ``cv``, then MBAR.

    Args:
        system: a boltzflow ``System``; ``cv`` one of its named dihedrals.
        windows: number of windows over [-π, π).
        ps: sampling time per window (ps).
        out: output folder (created); rerun with the same settings to resume.
        force_constant: κ in kJ/mol/rad²; default ``default_force_constant`` (restraint
            width half the spacing, e.g. 327 kJ/mol/rad² for 36 windows at 300 K).
        platform, properties: OpenMM platform and its properties.
        seed: seeds velocities and Langevin noise.
        equilibration_ps: discarded at the start of each window; default ``ps / 10``.
        sample_interval: steps (fs) between CV samples.
        bins: PMF bins over [-π, π).
        progress: called as ``progress(steps_done, steps_total)``.
    """
    if cv not in system.dihedrals:
        raise BoltzflowError(f"{system.name} has no dihedral {cv!r}; known: {', '.join(system.dihedrals) or 'none'}")
    if windows < 2 or not ps > 0 or sample_interval < 1:
        raise BoltzflowError(f"need windows >= 2, ps > 0 and sample_interval >= 1, got {windows}, {ps} "
                             f"and {sample_interval}")
    kappa = default_force_constant(windows, system.kT) if force_constant is None else float(force_constant)
    if not kappa > 0:
        raise BoltzflowError(f"the force constant must be positive (kJ/mol/rad²), got {kappa}")
    equilibration_ps = ps / 10 if equilibration_ps is None else equilibration_ps
    samples = round(ps / TIMESTEP_PS) // sample_interval
    if samples < 1 or equilibration_ps < 0:
        raise BoltzflowError(f"{ps} ps per window holds no sample every {sample_interval} steps "
                             f"(or equilibration_ps {equilibration_ps} < 0)")
    equilibration = round(equilibration_ps / TIMESTEP_PS)
    settings = {"system": system.name, "cv": cv, "atoms": list(system.dihedrals[cv]), "temperature": system.temperature,
                "windows": windows, "ps": ps, "equilibration_ps": equilibration_ps, "sample_interval": sample_interval,
                "force_constant": kappa, "seed": seed}
    folder = Path(out)
    centres = window_centres(windows)
    series, state = _load_progress(folder / DATA_FILE, settings)
    context = langevin_context(system, platform, seed, properties, [dihedral_restraint(system.dihedrals[cv], kappa)])
    quad = torch.tensor([system.dihedrals[cv]])
    per_window = equilibration + samples * sample_interval
    if state is None:
        context.setParameter(CENTRE, centres[0])
        minimise_and_thermalise(context, system.temperature, seed)
    else:
        restore_state(context, state, seed, len(series))
    integrator = context.getIntegrator()
    for k in range(len(series), windows):
        context.setParameter(CENTRE, centres[k])
        integrator.step(equilibration)
        values = np.empty(samples)
        for i in range(samples):
            integrator.step(sample_interval)
            xyz = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            values[i] = dihedral_angles(torch.from_numpy(xyz)[None], quad)[0, 0].item()
            if progress is not None:
                progress(k * per_window + equilibration + (i + 1) * sample_interval, windows * per_window)
        series.append(values)
        _save_progress(folder / DATA_FILE, settings, system.kT, cv_regions(system, cv), centres, series,
                       save_state(context))
    return analyse_umbrella(folder, bins)


def _load_progress(path: Path, settings: dict) -> tuple[list, Optional[str]]:
    """Finished windows' CV series and the state to continue from (none for a new run)."""
    if not path.exists():
        return [], None
    with h5py.File(path, "r") as f:
        saved = json.loads(f.attrs["settings"])
        changed = [key for key in settings if saved.get(key) != settings[key]]
        if changed:
            raise BoltzflowError(f"{path} holds a run with other settings ({', '.join(changed)}: "
                                 f"{[saved.get(k) for k in changed]} there, {[settings[k] for k in changed]} now); "
                                 "rerun with the same settings or choose another output folder")
        return list(f["cv"][()]), f["state"][()].decode()


def _save_progress(path: Path, settings: dict, kT: float, regions: dict, centres: np.ndarray, series: list,
                   state: str) -> None:
    """Rewrite the data file atomically with the finished windows and the state to continue from."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["settings"] = json.dumps(settings)
        f.attrs["kT"] = kT
        f.attrs["regions"] = json.dumps(regions)
        f.create_dataset("centres", data=centres).attrs["units"] = "radians"
        f.create_dataset("cv", data=np.stack(series)).attrs["units"] = "radians"
        f.create_dataset("state", data=np.bytes_(state.encode()))


def load_umbrella(folder: Union[str, Path]) -> dict:
    """The data of a (possibly unfinished) umbrella run: ``settings``, ``kT`` (kJ/mol),
    ``regions`` (name → (low, high) rad), ``centres`` [K] and ``cv`` [finished windows, samples]."""
    path = Path(folder) / DATA_FILE
    if not path.exists():
        raise BoltzflowError(f"{path} does not exist: run the umbrella sampling first")
    with h5py.File(path, "r") as f:
        return {"settings": json.loads(f.attrs["settings"]), "kT": float(f.attrs["kT"]),
                "regions": {k: tuple(v) for k, v in json.loads(f.attrs["regions"]).items()},
                "centres": f["centres"][()], "cv": f["cv"][()]}


def analyse_umbrella(folder: Union[str, Path], bins: int = 72, level: float = 0.95) -> UmbrellaResult:
    """MBAR on a finished umbrella run in ``folder``; writes pmf.csv, pmf.png and
    free_energies.json there (kT) and returns the results."""
    folder = Path(folder)
    data = load_umbrella(folder)
    settings = data["settings"]
    if len(data["cv"]) != settings["windows"]:
        raise BoltzflowError(f"{folder / DATA_FILE} holds {len(data['cv'])} of {settings['windows']} windows; "
                             "rerun the umbrella sampling to finish it")
    result = mbar_free_energies(list(data["cv"]), data["centres"], settings["force_constant"], data["kT"], bins,
                                data["regions"], level=level)
    names = list(data["regions"])
    delta = {f"{names[0]} -> {b}": result.delta_f(names[0], b, level) for b in names[1:]}  # none if < 2 states
    _write_pmf(folder / PMF_FILE, result, data["kT"], settings)
    plot_pmf({f"MBAR, {settings['windows']} windows": result.profile}, folder / PLOT_FILE, cv=settings["cv"])
    with atomic_path(folder / RESULTS_FILE) as tmp:
        tmp.write_text(json.dumps({"unit": "kT", "kT_kJ_per_mol": data["kT"], "settings": settings,
                                   "delta_f": {k: _as_dict(v) for k, v in delta.items()}}, indent=2))
    return UmbrellaResult(result, delta, folder)


def _as_dict(estimate: Estimate) -> dict:
    return {"value": estimate.value, "error": estimate.error, "low": estimate.low, "high": estimate.high,
            "level": estimate.level, "method": estimate.method}


def _write_pmf(path: Path, result: UmbrellaFreeEnergies, kT: float, settings: dict) -> None:
    p = result.profile
    table = np.column_stack([np.degrees(p.centers.numpy()), p.centers.numpy(), p.free_energy.numpy(),
                             p.error.numpy(), p.free_energy.numpy() * kT])
    header = (f"PMF along {settings['cv']} of {settings['system']} by MBAR ({settings['windows']} windows, "
              f"{settings['ps']} ps each); zero at the lowest bin, inf where no sample; kT = {kT:.6f} kJ/mol\n"
              "cv_deg,cv_rad,free_energy_kT,error_kT,free_energy_kJ_per_mol")
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, delimiter=",", header=header, fmt="%.6g")
