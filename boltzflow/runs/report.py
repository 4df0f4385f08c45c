"""The free-energy report of a trained flow (``boltzflow free-energy``): Kish ESS, PSIS k̂,
log Z, state populations and ΔF between states, and, given a reference, how far the flow is
from it.

Samples come from a samples file or are drawn from a run (``samples_for``). Mirror images
(wrong chirality) are counted and, unless ``keep_mirror``, given weight 0; they keep their
place in n. All free energies are in kT at the samples' temperature.

ΔF pairs (``state_pairs``): the system's states are split, in system.toml order, into groups
of mutually disjoint states (alanine dipeptide: {phi_negative, phi_positive} and
{C7eq_beta, alphaR, alphaL_C7ax}); within each group, ΔF of every state is given relative
to the group's most populated state.

References (``load_reference``): a trajectory (``boltzflow md``'s md.h5 or any file mdtraj
reads with the system's topology) gives histogram divergences, ΔF from its frames (equal
weights; the bootstrap assumes independent frames) and, with the run's model, the EUBO
and the forward KL at its conformations; an umbrella folder (``boltzflow umbrella``) gives
ΔF (free_energies.json) and the PMF along its (first) CV (pmf.csv), and a 2-D (φ, ψ) umbrella
folder also its reweighted histogram of the plane (ramachandran.npz), against which the flow's
Ramachandran total variation and KL are measured on the same grid.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..analysis.compare import eubo, forward_kl, kl_divergence, marginal_kl, ramachandran_divergence, total_variation
from ..analysis.estimate import Estimate, normalized_weights, sample_log_weights, z_score
from ..analysis.free_energy import Profile, pmf, population, ramachandran, state_delta_f
from ..analysis.histograms import angle_bin_centers, angle_bin_index, histogram, plane_bin_index
from ..analysis.psis import ParetoDiagnostic, pareto_diagnostic
from ..analysis.weights import kish_ess, log_normalizer_interval
from ..errors import BoltzflowError
from ..io.samples import model_file, read_attributes, read_samples, sha256
from ..reference.trajectory import load_positions
from ..systems import disjoint_groups, load_system
from ..training.run import load_run
from ..units import thermal_energy
from .samples import sample_batches

DEFAULT_SAMPLES = 100_000
MARGINAL_BINS, RAMACHANDRAN_BINS, PMF_BINS = 200, 64, 72


@dataclass(frozen=True)
class WeightedSamples:
    """What the report needs of flow samples: ``log_w`` [n] (float64, unnormalised log p̃ − log q),
    ``right_handed`` [n] bool, ``cvs`` (name → [n] radians), the ``system``, ``temperature``
    (K) and ``kT`` (kJ/mol), a description of the ``source`` and the run directory whose
    current model drew them (None if unknown or since retrained)."""

    log_w: Tensor
    right_handed: Tensor
    cvs: dict
    system: object
    temperature: float
    kT: float
    source: str
    run_dir: Optional[Path] = None


def _matching_run(attrs: dict) -> Optional[Path]:
    """The run directory recorded in a samples file, if its model is still the one that drew them."""
    run_dir = Path(attrs["run"]) if attrs["run"] else None
    if run_dir is None or not model_file(run_dir).is_file():
        return None
    return run_dir if sha256(model_file(run_dir)) == attrs["model_sha256"] else None


def load_weighted_samples(path: Union[str, Path]) -> WeightedSamples:
    """The weighted samples of a samples file (``boltzflow sample``)."""
    samples = read_samples(path, positions=False)
    attrs = samples.attrs
    return WeightedSamples(torch.from_numpy(samples.log_w_unnormalized), torch.from_numpy(samples.right_handed),
                           {name: torch.from_numpy(v) for name, v in samples.cvs.items()},
                           load_system(attrs["system"]), attrs["temperature"], attrs["kT"],
                           f"{path} ({attrs['n']:,} samples, seed {attrs['seed']})", _matching_run(attrs))


def draw_weighted_samples(run, n: int, batch_size: int = 8192, seed: int = 0, run_dir: Optional[Path] = None,
                          progress: Optional[Callable[[int, int], None]] = None) -> WeightedSamples:
    """Draw ``n`` samples of ``run`` in batches, keeping only what the report needs (on the CPU)."""

    parts: dict = {"log_w": [], "right_handed": [], "cvs": []}
    for batch in sample_batches(run, n, batch_size, seed):
        for key in parts:
            parts[key].append(batch[key])
        if progress is not None:
            progress(sum(len(w) for w in parts["log_w"]), n)
    cvs = {name: torch.from_numpy(np.concatenate([c[name] for c in parts["cvs"]])) for name in parts["cvs"][0]}
    temperature = run.target.temperature
    return WeightedSamples(torch.from_numpy(np.concatenate(parts["log_w"])),
                           torch.from_numpy(np.concatenate(parts["right_handed"])), cvs, run.system, temperature,
                           thermal_energy(temperature), f"{run_dir or 'run'} ({n:,} samples drawn, seed {seed})",
                           run_dir)


def samples_for(path: Union[str, Path], n: Optional[int] = None, batch_size: int = 8192, device: Optional[str] = None,
                seed: int = 0, progress: Optional[Callable[[int, int], None]] = None):
    """The samples to report on for ``path`` and the run loaded to get them (or None).

    A samples file is read. A run directory: its ``samples.h5`` is read when it exists and
    ``n`` is None (it must come from the run's current model), else ``n`` samples
    (default 100,000) are drawn in memory.
    """
    path = Path(path)
    if not path.is_dir():
        return load_weighted_samples(path), None
    stored = path / "samples.h5"
    if n is None and stored.is_file():
        attrs = read_attributes(stored)
        if not model_file(path).is_file() or attrs["model_sha256"] != sha256(model_file(path)):
            raise BoltzflowError(f"{stored} was drawn from another model than {model_file(path)} (its checksum "
                                 f"differs); draw new samples with: boltzflow sample {path}, or pass -n N")
        return load_weighted_samples(stored), None
    run = load_run(path, device)
    return draw_weighted_samples(run, n or DEFAULT_SAMPLES, batch_size, seed, path, progress), run


@dataclass(frozen=True)
class Reference:
    """A reference to compare with: ``kind`` "trajectory" (``xyz`` [m, atoms, 3] nm and its
    ``cvs``, name → [m] radians) or "umbrella" (``delta_f``: "a -> b" → Estimate in kT,
    ``profiles``: CV name → PMF, and for a 2-D umbrella ``plane``: (CV names, reweighted
    probability histogram [bins, bins]))."""

    kind: str
    path: Path
    xyz: Optional[np.ndarray] = None
    cvs: Optional[dict] = None
    delta_f: Optional[dict] = None
    profiles: Optional[dict] = None
    plane: Optional[tuple] = None


def _read_profile(path: Path, level: float) -> Profile:
    """An umbrella PMF from pmf.csv (columns cv_deg, cv_rad, free_energy_kT, error_kT, …)."""
    table = np.atleast_2d(np.loadtxt(path, delimiter=",", comments="#"))
    bins = len(table)
    if not np.allclose(table[:, 1], angle_bin_centers(bins).numpy(), atol=1e-5):
        raise BoltzflowError(f"{path}: expected {bins} equal bins over [-180°, 180°) in column cv_rad")
    f, error = torch.from_numpy(table[:, 2]), torch.from_numpy(table[:, 3])
    half = z_score(level) * error
    return Profile(angle_bin_centers(bins), f, error, f - half, f + half, level, "MBAR")


def load_reference(path: Union[str, Path], system, level: float = 0.95) -> Reference:
    """Read a reference for ``system``: an umbrella folder or a trajectory (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        results = path / "free_energies.json"
        if not results.is_file():
            raise BoltzflowError(f"{path} is a folder but has no free_energies.json; expected the output "
                                 "folder of boltzflow umbrella, or pass a trajectory file")
        data = json.loads(results.read_text())
        settings = data["settings"]
        if settings["system"] != system.name:
            raise BoltzflowError(f"{path} is umbrella sampling of {settings['system']}, but the samples are of "
                                 f"{system.name}")
        delta = {key: Estimate(**value) for key, value in data["delta_f"].items()}
        cvs = settings["cv"].split(",")  # the PMF is along the first
        profiles = {cvs[0]: _read_profile(path / "pmf.csv", level)} if (path / "pmf.csv").is_file() else {}
        plane = None
        if len(cvs) == 2 and (path / "ramachandran.npz").is_file():
            with np.load(path / "ramachandran.npz") as histogram_file:
                plane = (tuple(cvs), histogram_file["probability"])
        return Reference("umbrella", path, delta_f=delta, profiles=profiles, plane=plane)
    xyz = load_positions(path, system)
    if len(xyz) < 2:
        raise BoltzflowError(f"{path} holds {len(xyz)} frame; a reference needs at least 2")
    cvs = system.collective_variables(torch.from_numpy(xyz).double())
    return Reference("trajectory", path, xyz=xyz, cvs=cvs)


def state_groups(system) -> list:
    """The system's states in groups of mutually disjoint states, each state in the first group
    (in system.toml order) it is disjoint from every member of."""
    return disjoint_groups(system.states.values())


def state_pairs(system, populations: dict) -> list:
    """(a, b) pairs for ΔF = F_b − F_a: a is the most populated state of each group of
    ``state_groups``, b every other member of that group (groups without weight are left out)."""
    pairs = []
    for group in state_groups(system):
        top = max(group, key=lambda name: populations[name])
        if populations[top] > 0:
            pairs += [(top, name) for name in group if name != top]
    return pairs


@dataclass(frozen=True)
class Comparison:
    """The flow against a reference: D_KL(reference ‖ flow) of the CV marginals (``bins``
    per CV), total variation and KL on the Ramachandran plane, the reference's ΔF for the
    flow's pairs and flow − reference, and the EUBO and forward KL at reference
    conformations (nats; None without the run's model)."""

    kind: str
    path: str
    frames: int
    bins: dict
    marginal_kl: dict
    ramachandran: Optional[dict]
    delta_f: dict
    delta_f_difference: dict
    eubo: Optional[Estimate] = None
    forward_kl: Optional[Estimate] = None
    note: str = ""


@dataclass(frozen=True)
class FreeEnergyReport:
    """Estimates from weighted flow samples (kT); ``ess`` is Kish's ESS as a fraction of ``n``."""

    system: str
    temperature: float
    kT: float
    source: str
    n: int
    n_mirror: int
    mirror_excluded: bool
    ess: float
    psis: ParetoDiagnostic
    log_z: Estimate
    populations: dict  # state → Estimate (reweighted fraction, bootstrap interval)
    delta_f: dict
    comparison: Optional[Comparison] = None

    def as_dict(self) -> dict:
        """Every number, JSON-ready: non-finite floats become None; ΔF keys read "a -> b"."""
        data = dataclasses.asdict(self)
        data["psis"]["verdict"] = self.psis.verdict
        data["ess_samples"] = self.ess * self.n
        return _finite(data)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _negated(estimate: Estimate) -> Estimate:
    return dataclasses.replace(estimate, value=-estimate.value, low=-estimate.high, high=-estimate.low)


def reference_log_densities(run, xyz: np.ndarray, batch_size: int = 8192) -> tuple[Tensor, Tensor]:
    """log p̃ and the flow's log q [m] (float64) at conformations ``xyz`` [m, atoms, 3] (nm), in
    the flow's internal coordinates (as the flow's log-weights are)."""
    parameter = next(run.flow.parameters())
    log_p, log_q = [], []
    with torch.no_grad():
        for start in range(0, len(xyz), batch_size):
            block = torch.as_tensor(xyz[start:start + batch_size], dtype=parameter.dtype, device=parameter.device)
            z, _ = run.coordinates.inverse(block)
            log_p.append(run.target.evaluate(z)["log_p"].double().cpu())
            log_q.append(run.flow.log_prob(z).double().cpu())
    return torch.cat(log_p), torch.cat(log_q)


def _compare(samples: WeightedSamples, reference: Reference, pairs: list, flow_delta: dict, log_z: Estimate,
             exclude: Optional[Tensor], run, level: float, n_boot: int, seed: int) -> Comparison:
    system, names = samples.system, list(samples.cvs)
    clean, _ = sample_log_weights(samples.log_w, samples.log_w, exclude)
    keys = [f"{a} -> {b}" for a, b in pairs]
    notes = [] if samples.temperature == system.temperature else [
        f"samples at {samples.temperature:g} K, the reference at the system's {system.temperature:g} K"]
    if reference.kind == "umbrella":
        delta = {}
        for (a, b), key in zip(pairs, keys):
            if key in reference.delta_f:
                delta[key] = reference.delta_f[key]
            elif f"{b} -> {a}" in reference.delta_f:
                delta[key] = _negated(reference.delta_f[f"{b} -> {a}"])
        marginal, bins = {}, {}
        for cv, profile in reference.profiles.items():
            p = torch.exp(-profile.free_energy)  # empty bins (inf) get probability 0
            index = angle_bin_index(samples.cvs[cv], len(p))
            marginal[cv] = kl_divergence(p, histogram(index, normalized_weights(clean), len(p))).item()
            bins[cv] = len(p)
        plane = None
        if reference.plane is not None and all(cv in samples.cvs for cv in reference.plane[0]):
            (first, second), p = reference.plane
            p = torch.from_numpy(np.ascontiguousarray(p)).reshape(-1)
            q = histogram(plane_bin_index(samples.cvs[first], samples.cvs[second], len(reference.plane[1])),
                          normalized_weights(clean), len(p))
            plane = {"total_variation": total_variation(p, q).item(), "kl": kl_divergence(p, q).item()}
            bins["ramachandran"] = len(reference.plane[1])
        else:
            notes.append("umbrella reference: ΔF and the PMF only")
        return Comparison("umbrella", str(reference.path), 0, bins, marginal, plane, delta,
                          {k: flow_delta[k].value - v.value for k, v in delta.items()}, note="; ".join(notes))
    ref_cvs = reference.cvs
    kl = marginal_kl(torch.stack([ref_cvs[n] for n in names], 1), torch.stack([samples.cvs[n] for n in names], 1),
                     samples.log_w, periodic=[True] * len(names), bins=MARGINAL_BINS, exclude=exclude)
    bins = {name: MARGINAL_BINS for name in names}
    plane = None
    if len(names) >= 2:
        first, second = names[:2]
        plane = ramachandran_divergence(ref_cvs[first], ref_cvs[second], samples.cvs[first], samples.cvs[second],
                                        samples.log_w, bins=RAMACHANDRAN_BINS, exclude=exclude)
        bins["ramachandran"] = RAMACHANDRAN_BINS
    delta = {}
    for (a, b), key in zip(pairs, keys):
        try:
            delta[key] = state_delta_f(system, ref_cvs, a, b, level=level, n_boot=n_boot,
                                       generator=_generator(seed, ref_cvs[names[0]].device))
        except BoltzflowError:  # neither state visited by the reference
            delta[key] = None
    difference = {k: (flow_delta[k].value - v.value if v is not None else None) for k, v in delta.items()}
    bound = kl_forward = None
    if run is None:
        notes.append("EUBO and forward KL need the run's model: pass the run directory")
    else:
        log_p, log_q = reference_log_densities(run, reference.xyz)
        bound, kl_forward = eubo(log_p, log_q, level), forward_kl(log_p, log_q, log_z.value, level)
        if run.snf is not None:
            notes.append("log q of the SNF's flow, without its MCMC layers")
    return Comparison("trajectory", str(reference.path), len(reference.xyz), bins,
                      {n: v for n, v in zip(names, kl.tolist())}, plane, delta, difference, bound, kl_forward,
                      "; ".join(notes))


def free_energy_report(samples: WeightedSamples, reference: Optional[Reference] = None, run=None,
                       keep_mirror: bool = False, level: float = 0.95, n_boot: int = 1000,
                       seed: int = 0) -> FreeEnergyReport:
    """The report of ``samples``; compared with ``reference`` when given (``run``: the model
    that drew the samples, for the EUBO at reference conformations). Bootstrap intervals
    use ``n_boot`` resamples from a generator seeded with ``seed`` for each estimate."""
    system, log_w = samples.system, samples.log_w
    mirror = ~samples.right_handed
    exclude = None if keep_mirror else mirror
    clean, _ = sample_log_weights(log_w, log_w, exclude)
    if clean.max() == -math.inf:
        raise BoltzflowError(f"none of the {len(log_w):,} samples has non-zero weight"
                             + ("" if keep_mirror else " (mirror images excluded)") + ": nothing to estimate")
    populations = {name: population(state.contains(samples.cvs), log_w, exclude, level=level, n_boot=n_boot,
                                    generator=_generator(seed, log_w.device))
                   for name, state in system.states.items()}
    pairs = state_pairs(system, {name: estimate.value for name, estimate in populations.items()})
    delta = {f"{a} -> {b}": state_delta_f(system, samples.cvs, a, b, log_w, exclude, level=level, n_boot=n_boot,
                                          generator=_generator(seed, log_w.device)) for a, b in pairs}
    log_z = log_normalizer_interval(log_w, level, exclude)
    comparison = None if reference is None else _compare(samples, reference, pairs, delta, log_z, exclude, run,
                                                         level, n_boot, seed)
    return FreeEnergyReport(system.name, samples.temperature, samples.kT, samples.source, len(log_w),
                            int(mirror.sum()), not keep_mirror, kish_ess(clean).item(), pareto_diagnostic(clean),
                            log_z, populations, delta, comparison)


def ramachandran_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """The (φ, ψ) pairs among CV names (``phi``/``psi``, ``phi1``/``psi1``, …), else the first two."""
    pairs = [(n, "psi" + n[3:]) for n in names if n.startswith("phi") and "psi" + n[3:] in names]
    return pairs or ([tuple(names[:2])] if len(names) >= 2 else [])


def report_plots(samples: WeightedSamples, folder: Union[str, Path], reference: Optional[Reference] = None,
                 keep_mirror: bool = False, level: float = 0.95, seed: int = 0) -> list:
    """PNGs in ``folder``: ``ramachandran.png`` (flow, reweighted flow, reference trajectory;
    a row per residue's φ, ψ, else the first two CVs) and ``pmf_<cv>.png`` per CV (reweighted flow with its bootstrap band,
    the reference's PMF overlaid). Returns the paths."""
    from ..analysis.plots import cv_symbol, plot_pmf, plot_ramachandran   # matplotlib: loaded on use

    folder = Path(folder)
    exclude = None if keep_mirror else ~samples.right_handed
    names, paths = list(samples.cvs), []
    trajectory = reference is not None and reference.kind == "trajectory"
    rows = {}
    for first, second in ramachandran_pairs(names):
        rows[first, second] = {
            "flow": ramachandran(samples.cvs[first], samples.cvs[second], None, RAMACHANDRAN_BINS, exclude),
            "flow, reweighted": ramachandran(samples.cvs[first], samples.cvs[second], samples.log_w,
                                             RAMACHANDRAN_BINS, exclude)}
        if trajectory:
            rows[first, second][f"reference ({reference.path.name})"] = ramachandran(
                reference.cvs[first], reference.cvs[second], None, RAMACHANDRAN_BINS)
    if rows:
        paths.append(plot_ramachandran(rows, folder / "ramachandran.png"))
    for name in names:
        profiles = {"flow, reweighted": pmf(samples.cvs[name], samples.log_w, PMF_BINS, exclude, level,
                                            generator=_generator(seed, samples.log_w.device))}
        if trajectory:
            profiles[f"reference ({reference.path.name})"] = pmf(reference.cvs[name], None, PMF_BINS, level=level,
                                                                 generator=_generator(seed, reference.cvs[name].device))
        elif reference is not None and name in reference.profiles:
            profiles[f"umbrella ({reference.path.name})"] = reference.profiles[name]
        paths.append(plot_pmf(profiles, folder / f"pmf_{name}.png", cv=cv_symbol(name)))
    return paths
