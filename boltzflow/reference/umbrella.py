"""Umbrella sampling along one named dihedral or on a 2-D grid of two (e.g. φ, ψ), analysed with MBAR.

With one CV the windows are evenly spaced over [-π, π); with two they form a ``windows`` ×
``windows`` grid over [-π, π)², visited in a snake order so that consecutive windows are
neighbours. Each window restrains every CV θ_d with E = ½ κ min(|θ_d − θ₀|, 2π − |θ_d − θ₀|)²
(one periodic ``CustomTorsionForce`` per CV). The windows run one after the other, each in a
new Context from the previous one's last state with its own noise seed, with ``equilibration_ps``
discarded before ``ps`` of sampling; the CVs are recorded every ``sample_interval`` steps.
``repeats`` independent repeats (seeds ``seed``, ``seed + 1``, …) each start again from the
minimised structure. After each window, ``umbrella.h5`` in the output folder is rewritten
atomically with every finished window (repeat after repeat), its wall time and the state to
continue from, so an interrupted run resumes at the next window and ends with the same data as
an uninterrupted one wherever the platform repeats itself (the CPU platform on one thread; on
more threads two uninterrupted runs already differ in rounding); rerun with a larger
``repeats`` to add repeats to a finished run.

``analyse_umbrella`` runs one MBAR over all windows of each repeat and writes, in kT:
ΔF between the system's states defined on the CVs (``free_energies.json``) and the PMF
along the first CV (``pmf.csv``, ``pmf.png``). With two or more repeats the uncertainty of
every ΔF comes from the spread of the repeats (mean ± standard error, Student-t interval),
not from correlated frames, and every frame is used; a single run is thinned to
effectively uncorrelated frames and reports MBAR's analytical error. With two CVs the
unbiased (reweighted) histogram of the plane goes to ``ramachandran.npz`` (mean over repeats,
each repeat's, and the noise floor of its total variation) and its free-energy surface to
``ramachandran.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import h5py
import numpy as np
import openmm
import openmm.unit as unit
import torch

from ..analysis.compare import total_variation_noise_floor
from ..analysis.estimate import Estimate
from ..analysis.free_energy import Profile, Surface
from ..analysis.histograms import angle_bin_centers, histogram, plane_bin_index
from ..analysis.mbar import UmbrellaFreeEnergies, mbar_free_energies, repeat_estimate
from ..analysis.plots import plot_pmf, plot_ramachandran
from ..errors import BoltzflowError
from ..geometry import dihedral_angles
from ..io import atomic_path
from ..systems import State, disjoint_groups
from .simulation import (changed_settings, langevin_context, minimise_and_thermalise, openmm_seed,
                         other_settings_error, restore_state, save_state, timestep_ps)

DATA_FILE, PMF_FILE, PLOT_FILE, RESULTS_FILE = "umbrella.h5", "pmf.csv", "pmf.png", "free_energies.json"
HISTOGRAM_FILE, SURFACE_FILE = "ramachandran.npz", "ramachandran.png"
CENTRE, FORCE_CONSTANT = "umbrella_theta0", "umbrella_k"
PLANE_BINS = 64
MIN_EQUILIBRATION_PS = 10.0  # default equilibration of a window at least this long
LEGACY_SETTINGS = {"repeats": 1}  # settings absent from files written before they existed


@dataclass(frozen=True)
class UmbrellaResult:
    """MBAR results of the first repeat (``free_energies``), ΔF ("a -> b" → Estimate, kT; over
    the repeats when there are several), each repeat's ΔF (``per_repeat``; with several
    repeats their MBAR errors ignore the correlation of frames and say so in ``method``),
    everything written to free_energies.json (``summary``) and the files written in ``folder``."""

    free_energies: UmbrellaFreeEnergies
    delta_f: dict
    folder: Path
    per_repeat: tuple = ()
    summary: dict = field(default_factory=dict)

    @property
    def files(self) -> dict:
        names = [DATA_FILE, PMF_FILE, PLOT_FILE, RESULTS_FILE]
        if "ramachandran" in self.summary:
            names += [HISTOGRAM_FILE, SURFACE_FILE]
        return {name: self.folder / name for name in names}


def parse_cvs(system, cv: Union[str, Sequence[str]]) -> tuple:
    """The CV names of ``cv`` ("phi" or "phi,psi", or a sequence): one or two distinct named
    dihedrals of ``system``; a ``BoltzflowError`` otherwise."""
    names = tuple(c.strip() for c in cv.split(",")) if isinstance(cv, str) else tuple(cv)
    known = ", ".join(system.dihedrals) or "none"
    for name in names:
        if name not in system.dihedrals:
            raise BoltzflowError(f"{system.name} has no dihedral {name!r}; known: {known}")
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise BoltzflowError(f"the umbrella CVs are one dihedral or two different ones separated by a comma "
                             f"(e.g. phi,psi), "
                             f"got {','.join(names)!r}")
    return names


def window_centres(windows: int, dims: int = 1) -> np.ndarray:
    """Restraint centres (radians): [windows] evenly spaced over [-π, π) for one CV, or
    [windows², 2] on the grid of two, in snake order (the second CV runs up, then down)."""
    axis = -math.pi + 2 * math.pi * np.arange(windows) / windows
    if dims == 1:
        return axis
    if dims != 2:
        raise ValueError(f"window grids have one or two dimensions, got {dims}")
    return np.array([(a, b) for i, a in enumerate(axis) for b in (axis if i % 2 == 0 else axis[::-1])])


def default_force_constant(windows: int, kT: float) -> float:
    """κ (kJ/mol/rad²) whose restraint width sqrt(kT/κ) is half the window spacing."""
    return kT * (2 / (2 * math.pi / windows)) ** 2


def default_equilibration_ps(ps: float) -> float:
    """Equilibration of a window (ps) before ``ps`` of sampling: ps/10, at least
    ``MIN_EQUILIBRATION_PS`` (2 ps after a 30° move left alanine dipeptide's (φ, ψ) windows
    out of equilibrium by about 0.5 kT in ΔF; benchmarks/RESULTS.md)."""
    return max(ps / 10, MIN_EQUILIBRATION_PS)


def dihedral_restraint(atoms: tuple, force_constant: float, centre: str = CENTRE,
                       constant: str = FORCE_CONSTANT) -> openmm.CustomTorsionForce:
    """Periodic harmonic restraint on one dihedral; its centre is the global parameter
    ``centre`` (rad, default ``umbrella_theta0``) and κ is ``constant`` (kJ/mol/rad²,
    default ``umbrella_k``)."""
    force = openmm.CustomTorsionForce(
        f"0.5*{constant}*min(dtheta, 2*pi - dtheta)^2; dtheta = abs(theta - {centre}); pi = {math.pi!r}")
    force.addGlobalParameter(centre, 0.0)
    force.addGlobalParameter(constant, force_constant)
    force.addTorsion(*atoms, [])
    return force


def restraint_parameters(cvs: Sequence[str]) -> list:
    """(centre, force constant) global parameter names of each CV's restraint."""
    if len(cvs) == 1:
        return [(CENTRE, FORCE_CONSTANT)]
    return [(f"{CENTRE}_{cv}", f"{FORCE_CONSTANT}_{cv}") for cv in cvs]


def cv_regions(system, cv: Union[str, Sequence[str]]) -> dict:
    """The system's states defined on the CVs alone: for one CV name → (low, high) radians, for
    two name → {cv: (low, high)} (states on either or both)."""
    cvs = (cv,) if isinstance(cv, str) else tuple(cv)
    if len(cvs) == 1:
        return {name: state.ranges[cvs[0]] for name, state in system.states.items() if set(state.ranges) == set(cvs)}
    return {name: dict(state.ranges) for name, state in system.states.items() if set(state.ranges) <= set(cvs)}


def run_umbrella(system, cv: Union[str, Sequence[str]] = "phi", windows: int = 36, ps: float = 200.0,
                 out: Union[str, Path] = "umbrella", force_constant: Optional[float] = None, platform: str = "CPU",
                 seed: int = 0, equilibration_ps: Optional[float] = None, sample_interval: int = 100, bins: int = 72,
                 properties: Optional[dict] = None, progress: Optional[Callable[[int, int], None]] = None,
                 repeats: int = 1, plane_bins: int = PLANE_BINS) -> UmbrellaResult:
    """Umbrella sampling of ``system`` along one dihedral or on a grid of two, then MBAR.

    Args:
        system: a boltzflow ``System``; ``cv`` one of its named dihedrals, or two ("phi,psi").
        windows: number of windows over [-π, π) per CV (two CVs: windows² on a grid).
        ps: sampling time per window (ps).
        out: output folder (created); rerun with the same settings to resume, or with more
            ``repeats`` to add repeats.
        force_constant: κ in kJ/mol/rad² on each CV; default ``default_force_constant``
            (restraint width half the spacing, e.g. 327 kJ/mol/rad² for 36 windows at 300 K).
        platform, properties: OpenMM platform and its properties (e.g. {"Threads": "1"}).
        seed: seeds velocities and Langevin noise of the first repeat; repeat r uses seed + r.
        equilibration_ps: discarded at the start of each window; default
            ``default_equilibration_ps(ps)``.
        sample_interval: integration steps between CV samples (``timestep_ps``).
        bins: PMF bins over [-π, π) (first CV).
        progress: called as ``progress(steps_done, steps_total)``.
        repeats: independent repeats, each from the minimised structure with its own seed.
        plane_bins: bins per axis of the reweighted 2-D histogram (two CVs).
    """
    cvs = parse_cvs(system, cv)
    if windows < 2 or not ps > 0 or sample_interval < 1 or repeats < 1:
        raise BoltzflowError(f"need windows >= 2, ps > 0, sample_interval >= 1 and repeats >= 1, got {windows}, "
                             f"{ps}, {sample_interval} and {repeats}")
    kappa = default_force_constant(windows, system.kT) if force_constant is None else float(force_constant)
    if not kappa > 0:
        raise BoltzflowError(f"the force constant must be positive (kJ/mol/rad²), got {kappa}")
    equilibration_ps = default_equilibration_ps(ps) if equilibration_ps is None else equilibration_ps
    samples = round(ps / timestep_ps(system)) // sample_interval
    if samples < 1 or equilibration_ps < 0:
        raise BoltzflowError(f"{ps} ps per window holds no sample every {sample_interval} steps "
                             f"(or equilibration_ps {equilibration_ps} < 0)")
    equilibration = round(equilibration_ps / timestep_ps(system))
    atoms = list(system.dihedrals[cvs[0]]) if len(cvs) == 1 else [list(system.dihedrals[c]) for c in cvs]
    settings = {"system": system.name, "cv": ",".join(cvs), "atoms": atoms, "temperature": system.temperature,
                "windows": windows, "ps": ps, "equilibration_ps": equilibration_ps, "sample_interval": sample_interval,
                "force_constant": kappa, "seed": seed, "repeats": repeats}
    folder = Path(out)
    centres = window_centres(windows, len(cvs))
    per_repeat, total_windows = len(centres), repeats * len(centres)
    series, wall, state = _load_progress(folder / DATA_FILE, settings)
    parameters = restraint_parameters(cvs)
    quad = torch.tensor([system.dihedrals[c] for c in cvs])
    per_window = equilibration + samples * sample_interval
    for j in range(len(series), total_windows):
        repeat, k = divmod(j, per_repeat)
        # a new Context per window: a reseeded Context that has already stepped draws other noise than
        # a new one, so only this way does a resumed run continue exactly as an uninterrupted one
        restraints = [dihedral_restraint(system.dihedrals[c], kappa, *names) for c, names in zip(cvs, parameters)]
        context = langevin_context(system, platform, seed, properties, restraints)
        if k:
            restore_state(context, state, seed + repeat, j)
        for d, (name, _) in enumerate(parameters):
            context.setParameter(name, centres.reshape(per_repeat, -1)[k, d])
        if k == 0:
            _start_repeat(context, system, seed + repeat)
        integrator = context.getIntegrator()
        start = time.perf_counter()
        integrator.step(equilibration)
        values = np.empty((samples, len(cvs)))
        for i in range(samples):
            integrator.step(sample_interval)
            xyz = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            values[i] = dihedral_angles(torch.from_numpy(xyz)[None], quad)[0].numpy()
            if progress is not None:
                progress(j * per_window + equilibration + (i + 1) * sample_interval, total_windows * per_window)
        series.append(values[:, 0] if len(cvs) == 1 else values)
        wall.append(time.perf_counter() - start)
        state = save_state(context)
        machine = {"platform": context.getPlatform().getName(), "threads": _threads(context)}
        _save_progress(folder / DATA_FILE, settings, system.kT, cv_regions(system, cvs), centres, series, wall,
                       state, machine)
    return analyse_umbrella(folder, bins, plane_bins=plane_bins)


def _threads(context: openmm.Context) -> Optional[int]:
    """Threads of a CPU-platform context (None on other platforms)."""
    platform = context.getPlatform()
    if "Threads" not in platform.getPropertyNames():
        return None
    return int(platform.getPropertyValue(context, "Threads"))


def _start_repeat(context: openmm.Context, system, seed: int) -> None:
    """Begin a repeat: the system's structure, minimised with the first window's restraint,
    velocities and Langevin noise from ``seed``."""
    context.setPositions(system.positions)
    context.setTime(0.0)
    context.getIntegrator().setRandomNumberSeed(openmm_seed(seed, 0))
    context.reinitialize(preserveState=True)
    minimise_and_thermalise(context, system.temperature, seed)


def _load_progress(path: Path, settings: dict) -> tuple[list, list, Optional[str]]:
    """Finished windows' CV series, their wall times (s; NaN where not recorded) and the state to
    continue from (none for a new run)."""
    if not path.exists():
        return [], [], None
    with h5py.File(path, "r") as f:
        saved = json.loads(f.attrs["settings"])
        changed = changed_settings(saved, settings, LEGACY_SETTINGS)
        if changed == ["repeats"] and settings["repeats"] > saved.get("repeats", 1):
            changed = []  # more repeats: the finished windows stay valid and the new repeats follow them
        if changed:
            raise other_settings_error(path, saved, settings, changed,
                                       "rerun with the same settings or choose another output folder")
        series = list(f["cv"][()])
        wall = list(f["wall_seconds"][()]) if "wall_seconds" in f else [math.nan] * len(series)
        return series, wall, f["state"][()].decode()


def _save_progress(path: Path, settings: dict, kT: float, regions: dict, centres: np.ndarray, series: list,
                   wall: list, state: str, machine: dict) -> None:
    """Rewrite the data file atomically with the finished windows and the state to continue from."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["settings"] = json.dumps(settings)
        f.attrs["kT"] = kT
        f.attrs["regions"] = json.dumps(regions)
        f.attrs["machine"] = json.dumps(machine)
        f.create_dataset("centres", data=centres).attrs["units"] = "radians"
        f.create_dataset("cv", data=np.stack(series)).attrs["units"] = "radians"
        f.create_dataset("wall_seconds", data=np.asarray(wall, dtype=np.float64))
        f.create_dataset("state", data=np.bytes_(state.encode()))


def load_umbrella(folder: Union[str, Path]) -> dict:
    """The data of a (possibly unfinished) umbrella run: ``settings``, ``kT`` (kJ/mol),
    ``regions`` (one CV: name → (low, high) rad; two: name → {cv: (low, high)}), ``centres``
    [K] or [K, 2], ``cv`` [finished windows, samples] or [finished windows, samples, 2]
    (repeat after repeat), ``wall_seconds`` [finished windows] and ``machine`` (platform, threads)."""
    path = Path(folder) / DATA_FILE
    if not path.exists():
        raise BoltzflowError(f"{path} does not exist: run the umbrella sampling first")
    with h5py.File(path, "r") as f:
        regions = json.loads(f.attrs["regions"])
        cv = f["cv"][()]
        return {"settings": json.loads(f.attrs["settings"]), "kT": float(f.attrs["kT"]),
                "regions": {k: ({c: tuple(r) for c, r in v.items()} if isinstance(v, dict) else tuple(v))
                            for k, v in regions.items()},
                "centres": f["centres"][()], "cv": cv,
                "wall_seconds": f["wall_seconds"][()] if "wall_seconds" in f else np.full(len(cv), math.nan),
                "machine": json.loads(f.attrs["machine"]) if "machine" in f.attrs else {}}


def region_pairs(regions: dict) -> list:
    """(a, b) pairs for ΔF = F_b − F_a between named regions (name → {cv: (low, high)}): within
    each group of mutually disjoint regions (``disjoint_groups``, in order) the first against
    every other; a region alone in its group against the first region."""
    names = list(regions)
    pairs = []
    for group in disjoint_groups(State(name, ranges) for name, ranges in regions.items()):
        if len(group) > 1:
            pairs += [(group[0], b) for b in group[1:]]
        elif group[0] != names[0]:
            pairs.append((names[0], group[0]))
    return pairs


def analyse_umbrella(folder: Union[str, Path], bins: int = 72, level: float = 0.95,
                     plane_bins: int = PLANE_BINS) -> UmbrellaResult:
    """One MBAR per repeat over all windows of a finished umbrella run in ``folder``; writes
    pmf.csv, pmf.png and free_energies.json there (kT), with two CVs also ramachandran.npz
    and ramachandran.png, and returns the results (see the module docstring)."""
    folder = Path(folder)
    data = load_umbrella(folder)
    settings = data["settings"]
    cvs = settings["cv"].split(",")
    repeats = settings.get("repeats", 1)
    centres = data["centres"]
    per_repeat = len(centres)
    if len(data["cv"]) != repeats * per_repeat:
        raise BoltzflowError(f"{folder / DATA_FILE} holds {len(data['cv'])} of {repeats * per_repeat} windows; "
                             "rerun the umbrella sampling to finish it")
    named = {k: (v if isinstance(v, dict) else {cvs[0]: v}) for k, v in data["regions"].items()}
    regions = {k: {cvs.index(c): r for c, r in v.items()} for k, v in named.items()}
    pairs = region_pairs(named)
    results = [mbar_free_energies(list(data["cv"][r * per_repeat:(r + 1) * per_repeat]), centres,
                                  settings["force_constant"], data["kT"], bins, regions, decorrelate=repeats == 1,
                                  level=level) for r in range(repeats)]
    each = [{f"{a} -> {b}": result.delta_f(a, b, level) for a, b in pairs} for result in results]
    if repeats > 1:  # every frame was used: MBAR's own error ignores their correlation
        each = [{k: dataclasses.replace(v, method="MBAR on correlated frames: error too narrow")
                 for k, v in d.items()} for d in each]
    if repeats == 1:
        delta, profile = each[0], results[0].profile
    else:
        delta = {key: repeat_estimate([d[key].value for d in each], level) for key in each[0]}
        profile = _mean_profile([result.profile for result in results], level)
    summary = _summary(data, named, delta, each, results)
    if len(cvs) == 2:
        summary["ramachandran"] = _write_plane(folder, results, plane_bins, cvs, settings)
    _write_pmf(folder / PMF_FILE, profile, data["kT"], settings)
    label = f"MBAR, {per_repeat} windows" + (f", mean of {repeats} repeats" if repeats > 1 else "")
    plot_pmf({label: profile}, folder / PLOT_FILE, cv=cvs[0])
    with atomic_path(folder / RESULTS_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return UmbrellaResult(results[0], delta, folder, tuple(each), summary)


def _summary(data: dict, named: dict, delta: dict, each: list, results: list) -> dict:
    """Everything free_energies.json holds (see ``analyse_umbrella``)."""
    settings = data["settings"]
    per_repeat = len(data["centres"])
    window_ns = (settings["equilibration_ps"] + settings["ps"]) / 1000
    wall = np.asarray(data["wall_seconds"], dtype=np.float64).reshape(-1, per_repeat)
    repeats = []
    for r, (d, result) in enumerate(zip(each, results)):
        repeats.append({"seed": settings["seed"] + r, "delta_f": {k: v.value for k, v in d.items()},
                        "samples": int(result.samples_per_window.sum()), "overlap": _overlap(result.overlap),
                        "simulated_ns": per_repeat * window_ns, "wall_seconds": float(wall[r].sum())})
    states = {name: {cv: [math.degrees(low), math.degrees(high)] for cv, (low, high) in ranges.items()}
              for name, ranges in named.items()}
    return {"unit": "kT", "kT_kJ_per_mol": data["kT"], "settings": settings,
            "states": states, "states_note": "ranges in degrees, [low, high); low > high wraps through ±180",
            "delta_f": {k: _as_dict(v) for k, v in delta.items()},
            "uncertainty": ("standard error over independent repeats (Student-t interval)" if len(results) > 1 else
                            "MBAR's analytical error on effectively uncorrelated frames (one run)"),
            "repeats": repeats,
            "cost": {"simulated_ns": len(results) * per_repeat * window_ns, "wall_seconds": float(wall.sum()),
                     **data["machine"]}}


def _overlap(matrix: np.ndarray) -> dict:
    """Summary of MBAR's overlap matrix [K, K]: the smallest over windows of the overlap with
    its best other window, and the spectral gap 1 − λ₂ (0 when the windows split into groups)."""
    off = matrix - np.diag(np.diag(matrix))
    best = off.max(1)
    eigenvalues = np.sort(np.abs(np.linalg.eigvals(matrix)))[::-1]
    return {"weakest_window": int(best.argmin()), "weakest_best_neighbour": float(best.min()),
            "spectral_gap": float(1 - eigenvalues[1]) if len(eigenvalues) > 1 else 1.0}


def _mean_profile(profiles: list, level: float):
    """The PMF of the repeat-averaged probabilities of each bin, with the standard error of the
    repeats' free energies (each zeroed at the mean profile's lowest bin) and a t interval."""
    from scipy import stats

    f = np.stack([p.free_energy.numpy() for p in profiles])
    p = np.exp(-f)
    p /= p.sum(1, keepdims=True)
    with np.errstate(divide="ignore"):
        mean = -np.log(p.mean(0))
    lowest = int(np.argmin(mean))
    mean -= mean[lowest]
    with np.errstate(invalid="ignore"):  # inf − inf where a repeat left a bin empty
        shifted = f - f[:, lowest:lowest + 1]
        error = shifted.std(0, ddof=1) / math.sqrt(len(f))
    error = np.where(np.isfinite(shifted).all(0), error, math.inf)
    half = np.where(np.isfinite(mean), stats.t.ppf(0.5 + level / 2, len(f) - 1) * error, 0.0)
    return Profile(profiles[0].centers, torch.from_numpy(mean), torch.from_numpy(error),
                   torch.from_numpy(mean - half), torch.from_numpy(mean + half), level,
                   f"mean of {len(f)} repeats")


def _write_plane(folder: Path, results: list, bins: int, cvs: list, settings: dict) -> dict:
    """The reweighted histogram of the two CVs per repeat and averaged, its noise floor
    (ramachandran.npz) and the free-energy surface of the average (ramachandran.png)."""
    histograms = []
    for result in results:
        x = torch.from_numpy(result.samples)
        w = torch.from_numpy(np.exp(result.sample_log_weights))
        histograms.append(histogram(plane_bin_index(x[:, 0], x[:, 1], bins), w, bins * bins).numpy())
    per_repeat = np.stack(histograms) / np.stack(histograms).sum(1, keepdims=True)
    probability = per_repeat.mean(0)
    floor = total_variation_noise_floor(per_repeat)
    with np.errstate(divide="ignore"):
        f = -np.log(probability)
    f -= f.min()
    edges = np.degrees(-math.pi + 2 * math.pi * np.arange(bins + 1) / bins)
    with atomic_path(folder / HISTOGRAM_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, probability=probability.reshape(bins, bins),
                            repeats=per_repeat.reshape(-1, bins, bins), free_energy_kT=f.reshape(bins, bins),
                            edges_deg=edges, cvs=np.array(cvs), settings=json.dumps(settings))
    surface = Surface(angle_bin_centers(bins), torch.from_numpy(f.reshape(bins, bins)))
    title = f"umbrella/MBAR, mean of {len(results)} repeat(s)"
    plot_ramachandran({tuple(cvs): {title: surface}}, folder / SURFACE_FILE, max_free_energy=12.0, fill_empty=True)
    return {"file": HISTOGRAM_FILE, "plot": SURFACE_FILE, "bins": bins, "cvs": cvs,
            "layout": "probability[i, j]: first CV in bin i, second in bin j; bins of equal width over [-180°, 180°)",
            "empty_bins": int((probability == 0).sum()), "noise_floor": floor}


def _as_dict(estimate: Estimate) -> dict:
    return {"value": estimate.value, "error": estimate.error, "low": estimate.low, "high": estimate.high,
            "level": estimate.level, "method": estimate.method, "n": estimate.n}


def _write_pmf(path: Path, profile, kT: float, settings: dict) -> None:
    p = profile
    table = np.column_stack([np.degrees(p.centers.numpy()), p.centers.numpy(), p.free_energy.numpy(),
                             p.error.numpy(), p.free_energy.numpy() * kT])
    cv = settings["cv"].split(",")[0]
    repeats = settings.get("repeats", 1)
    header = (f"PMF along {cv} of {settings['system']} by MBAR ({settings['cv']}, {settings['windows']} windows per "
              f"CV, {settings['ps']} ps each, {repeats} repeat(s); error: {p.method}); zero at the lowest bin, inf "
              f"where no sample; kT = {kT:.6f} kJ/mol\n"
              "cv_deg,cv_rad,free_energy_kT,error_kT,free_energy_kJ_per_mol")
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, delimiter=",", header=header, fmt="%.6g")
