"""The free-energy report of a trained flow (``boltzflow free-energy``): Kish ESS, PSIS k̂,
log Z, state populations and ΔF between states, and, given a reference, how far the flow is
from it.

Samples come from a samples file or are drawn from a run (``samples_for``). Mirror images
(wrong chirality) are counted and, unless ``keep_mirror``, given weight 0; they keep their
place in n. All free energies are in kT at the samples' temperature.

ΔF pairs (``state_pairs``): the system's states are split, in system.toml order, into groups
of mutually disjoint states (alanine dipeptide: {phi_negative, phi_positive} and
{C7eq_beta, alphaR, alphaL_C7ax}); within each group, ΔF of every later state is given relative
to the group's first, so that its direction is the system's, the same in every run and as in
an umbrella reference (alanine dipeptide: ΔF phi_negative → phi_positive = F(φ > 0) − F(φ < 0)).

References to compare with (a trajectory, an umbrella folder) are read by
``references.load_reference``; each kind makes its own ``Comparison``.

Per state the report gives the samples in it and their effective number (Kish ESS of the weights
inside the state); a population, or a ΔF to or from a state, resting on fewer than
``MIN_STATE_ESS`` effective samples keeps its value but not its interval: the interval becomes
the whole range ([0, 1], or all of ΔF: null in JSON), the error infinite, and the method says so.

The state-coverage figure (``states.png`` of ``report_plots``) shows those populations a panel
per residue (``residue_rows``: the groups of ``state_groups`` that constrain a common CV share a
panel), beside the flow's raw fraction and the reference's population (``state_populations`` of
each reference kind).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..analysis.estimate import Estimate, sample_log_weights
from ..analysis.free_energy import pmf, population, ramachandran, state_delta_f, state_samples, withheld
from ..analysis.psis import ParetoDiagnostic, pareto_diagnostic
from ..analysis.weights import kish_ess, log_normalizer_interval
from ..errors import BoltzflowError
from ..io.samples import model_file, read_attributes, read_samples, sha256
from ..systems import disjoint_groups, load_system
from ..training.run import load_run
from ..units import thermal_energy
from .references import PMF_BINS, RAMACHANDRAN_BINS, Comparison, Reference, seeded
from .samples import sample_batches

DEFAULT_SAMPLES = 100_000


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


def state_groups(system) -> list:
    """The system's states in groups of mutually disjoint states, each state in the first group
    (in system.toml order) it is disjoint from every member of."""
    return disjoint_groups(system.states.values())


def residue_rows(system) -> list:
    """The groups of ``state_groups`` joined into rows, one per residue: groups whose states
    constrain a common CV share a row (a residue's φ < 0 / φ > 0 and its basins all constrain its
    φ); rows and groups keep the system's order."""
    rows: list = []  # [CV names, groups]
    for group in state_groups(system):
        cvs = {cv for name in group for cv in system.states[name].ranges}
        joined = [row for row in rows if row[0] & cvs]
        if not joined:
            rows.append([cvs, [group]])
            continue
        first = joined[0]
        for row in joined[1:]:
            first[0] |= row[0]
            first[1] += row[1]
            rows.remove(row)
        first[0] |= cvs
        first[1].append(group)
    return [groups for _, groups in rows]


def row_title(system, groups: list) -> str:
    """A row's title: the CVs its states constrain (φ1, ψ1, in the system's order), after the
    residue that holds the central bond of each of them when they are dihedrals of one residue
    (a residue's φ and ψ turn about its N–CA and CA–C bonds)."""
    from ..analysis.plots import cv_symbol

    used = {cv for group in groups for name in group for cv in system.states[name].ranges}
    dihedrals = getattr(system, "dihedrals", {})
    names = [cv for cv in dihedrals if cv in used] + sorted(used - set(dihedrals))
    symbols = ", ".join(cv_symbol(cv) for cv in names)
    topology = getattr(system, "topology", None)
    if topology is None or not set(names) <= set(dihedrals):
        return symbols
    residues = {str(topology.atom(int(atom)).residue) for cv in names for atom in dihedrals[cv][1:3]}
    return f"{residues.pop()}: {symbols}" if len(residues) == 1 else symbols


def state_coverage(samples: WeightedSamples, states: dict, populations: dict, reference: Optional[Reference] = None,
                   keep_mirror: bool = False, level: float = 0.95, seed: int = 0) -> dict:
    """The rows of the state-coverage figure (``plots.plot_states``): row title → groups → one
    ``StateCoverage`` per state: the report's numbers (``states`` and ``populations`` of a
    ``FreeEnergyReport`` or of ``state_populations``: population, interval, withheld or not,
    sample counts), the flow's raw fraction (its draws in the state among those not excluded:
    mirror images unless ``keep_mirror``) and the ``reference``'s population where it gives one."""
    from ..analysis.plots import StateCoverage

    system = samples.system
    counted = samples.right_handed if not keep_mirror else torch.ones_like(samples.right_handed)
    total = max(int(counted.sum()), 1)
    rows = residue_rows(system)
    known = {} if reference is None else reference.state_populations(system, [g for row in rows for g in row],
                                                                     level, seed)
    coverage = {}
    for groups in rows:
        coverage[row_title(system, groups)] = [  # titles differ: no two rows share a CV
            [StateCoverage(name, populations[name], not states[name].enough, states[name].n, states[name].n_effective,
                           int((system.states[name].contains(samples.cvs) & counted).sum()) / total, known.get(name))
             for name in group] for group in groups]
    return coverage


def state_pairs(system, populations: dict) -> list:
    """(a, b) pairs for ΔF = F_b − F_a in the system's declared order: a is the first state of each
    group of ``state_groups``, b every later member (pairs of two states without weight are left out)."""
    pairs = []
    for first, *rest in state_groups(system):
        pairs += [(first, b) for b in rest if populations[first] > 0 or populations[b] > 0]
    return pairs


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
    states: dict  # state → StateSamples: samples in it, their effective number, whether intervals are given
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


def state_populations(samples: WeightedSamples, exclude: Optional[Tensor], level: float = 0.95, n_boot: int = 1000,
                      seed: int = 0) -> tuple[dict, dict]:
    """Per state of the system: the samples in it (``StateSamples``) and its reweighted population
    with a bootstrap interval, withheld (the whole range [0, 1]) below ``MIN_STATE_ESS`` effective
    samples; samples in ``exclude`` [n] bool (or None) have weight 0."""
    log_w, states, populations = samples.log_w, {}, {}
    for name, state in samples.system.states.items():
        inside = state.contains(samples.cvs)
        states[name] = state_samples(inside, log_w, exclude)
        estimate = population(inside, log_w, exclude, level=level, n_boot=n_boot, generator=seeded(seed, log_w.device))
        populations[name] = estimate if states[name].enough else withheld(estimate, 0.0, 1.0)
    return states, populations


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
    states, populations = state_populations(samples, exclude, level, n_boot, seed)
    pairs = state_pairs(system, {name: estimate.value for name, estimate in populations.items()})
    delta = {}
    for a, b in pairs:
        estimate = state_delta_f(system, samples.cvs, a, b, log_w, exclude, level=level, n_boot=n_boot,
                                 generator=seeded(seed, log_w.device))
        enough = states[a].enough and states[b].enough
        delta[f"{a} -> {b}"] = estimate if enough else withheld(estimate, -math.inf, math.inf)
    log_z = log_normalizer_interval(log_w, level, exclude)
    comparison = None if reference is None else reference.compare(samples, pairs, delta, log_z, exclude, run,
                                                                  level, n_boot, seed)
    return FreeEnergyReport(system.name, samples.temperature, samples.kT, samples.source, len(log_w),
                            int(mirror.sum()), not keep_mirror, kish_ess(clean).item(), pareto_diagnostic(clean),
                            log_z, populations, delta, states, comparison)


def ramachandran_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """The (φ, ψ) pairs among CV names (``phi``/``psi``, ``phi1``/``psi1``, …), else the first two."""
    pairs = [(n, "psi" + n[3:]) for n in names if n.startswith("phi") and "psi" + n[3:] in names]
    return pairs or ([tuple(names[:2])] if len(names) >= 2 else [])


def report_plots(samples: WeightedSamples, folder: Union[str, Path], reference: Optional[Reference] = None,
                 keep_mirror: bool = False, level: float = 0.95, seed: int = 0,
                 psis: Optional[ParetoDiagnostic] = None, report: Optional[FreeEnergyReport] = None) -> list:
    """PNGs in ``folder``: ``ramachandran.png`` (flow, reweighted flow, reference trajectory;
    a row per residue's φ, ψ, else the first two CVs), ``states.png`` when the system has states
    (state coverage: a panel per residue, ``residue_rows``; each state's reweighted population with its interval
    from ``report``, the flow's raw fraction and the reference's population; ``state_coverage``) and
    ``pmf_<cv>.png`` per CV (reweighted flow with its bootstrap band, the reference's PMF overlaid).
    Without ``report`` the populations are estimated here as the report does. When ``psis`` (the
    samples' k̂; default ``report.psis``) says "unreliable", every figure says so. Returns the paths."""
    from ..analysis.plots import cv_symbol, plot_pmf, plot_ramachandran, plot_states  # matplotlib: loaded on use

    if psis is None and report is not None:
        psis = report.psis
    note = (f"PSIS k̂ {psis.khat:.2f} > {psis.threshold:.2f}: unreliable weights, do not trust these free energies"
            if psis is not None and psis.verdict == "unreliable" else "")
    folder = Path(folder)
    exclude = None if keep_mirror else ~samples.right_handed
    names, paths = list(samples.cvs), []
    rows = {}
    for first, second in ramachandran_pairs(names):
        rows[first, second] = {
            "flow": ramachandran(samples.cvs[first], samples.cvs[second], None, RAMACHANDRAN_BINS, exclude),
            "flow, reweighted": ramachandran(samples.cvs[first], samples.cvs[second], samples.log_w,
                                             RAMACHANDRAN_BINS, exclude)}
        if reference is not None:
            rows[first, second].update(reference.ramachandran_rows(first, second))
    if rows:
        paths.append(plot_ramachandran(rows, folder / "ramachandran.png", note=note))
    if samples.system.states:
        states, populations = ((report.states, report.populations) if report is not None
                               else state_populations(samples, exclude, level, seed=seed))
        label = "reference" if reference is None else f"{reference.kind} reference ({Path(reference.path).name})"
        paths.append(plot_states(state_coverage(samples, states, populations, reference, keep_mirror, level, seed),
                                 folder / "states.png", reference_label=label, note=note))
    for name in names:
        profiles = {"flow, reweighted": pmf(samples.cvs[name], samples.log_w, PMF_BINS, exclude, level,
                                            generator=seeded(seed, samples.log_w.device))}
        if reference is not None:
            profiles.update(reference.pmf_profiles(name, level, seed))
        paths.append(plot_pmf(profiles, folder / f"pmf_{name}.png", cv=cv_symbol(name), note=note))
    return paths
