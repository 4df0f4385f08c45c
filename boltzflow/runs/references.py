"""References to judge a flow's samples against, one class per kind (``REFERENCE_KINDS``).

``load_reference(path, system)`` reads the first kind that accepts ``path``:

- ``UmbrellaReference``: a folder of ``boltzflow umbrella``: ΔF (free_energies.json), the PMF
  along its (first) CV (pmf.csv) and, for a 2-D (φ, ψ) umbrella, its reweighted histogram of
  the plane (ramachandran.npz), on which the flow's Ramachandran total variation and KL are
  measured on the same grid.
- ``TrajectoryReference``: any other path, a trajectory (``boltzflow md``'s md.h5 or any file
  mdtraj reads with the system's topology): histogram divergences, ΔF from its frames (equal
  weights; the bootstrap assumes independent frames) and, with the run's model, the EUBO and
  the forward KL at its conformations.

Each kind ``compare``s weighted samples into a ``Comparison`` and gives the curves it adds
to the report's plots (``ramachandran_rows``, ``pmf_profiles``) and the states' populations
for its state-coverage figure (``state_populations``): a trajectory's from its frames, an
umbrella's from its ΔF (``populations_from_delta_f``).

Shipped references (``shipped_reference``): a shipped system may come with the settled ΔF of
its states, ``shipped/<name>/free_energies.json`` beside this module (an umbrella folder's file
without its PMF: alanine-dipeptide's from benchmarks/RESULTS.md, 6 repeats of 2-D umbrella
sampling); the report compares with it when no other reference is given.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Optional, Union

import numpy as np
import torch
from torch import Tensor

from ..analysis.compare import eubo, forward_kl, kl_divergence, marginal_kl, ramachandran_divergence, total_variation
from ..analysis.estimate import Estimate, normalized_weights, sample_log_weights, z_score
from ..analysis.free_energy import Profile, pmf, population, ramachandran, state_delta_f
from ..analysis.histograms import angle_bin_centers, angle_bin_index, histogram, plane_bin_index
from ..errors import BoltzflowError
from ..reference.trajectory import load_positions
from ..systems import covers

if TYPE_CHECKING:
    from .report import WeightedSamples

MARGINAL_BINS, RAMACHANDRAN_BINS, PMF_BINS = 200, 64, 72
SHIPPED = Path(__file__).parent / "shipped"


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


def seeded(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (one per bootstrap estimate)."""
    return torch.Generator(device=device).manual_seed(seed)


def _notes(samples: "WeightedSamples") -> list[str]:
    system = samples.system
    return [] if samples.temperature == system.temperature else [
        f"samples at {samples.temperature:g} K, the reference at the system's {system.temperature:g} K"]


def _negated(estimate: Estimate) -> Estimate:
    return dataclasses.replace(estimate, value=-estimate.value, low=-estimate.high, high=-estimate.low)


def populations_from_delta_f(delta_f: dict, group: list) -> Optional[dict]:
    """The populations of the states of ``group`` (names; mutually disjoint and together the
    whole space, so that they sum to 1) from ΔF ("a -> b" → Estimate, kT) between its first state
    and each other one (either direction): p_b / p_a = e^(−ΔF), p_a = 1 / (1 + Σ_b e^(−ΔF_b)).
    None when a ΔF is missing or not a finite number. Each interval puts every ΔF at the end of
    its own interval that moves the population furthest (conservative; exact for two states; an
    unbounded end gives 0 or 1); the error is the delta method's with the ΔF taken as independent."""
    first, others = group[0], group[1:]
    delta = []
    for b in others:
        if f"{first} -> {b}" in delta_f:
            delta.append(delta_f[f"{first} -> {b}"])
        elif f"{b} -> {first}" in delta_f:
            delta.append(_negated(delta_f[f"{b} -> {first}"]))
        else:
            return None
    if not all(np.isfinite(e.value) for e in delta):
        return None
    level = min((e.level for e in delta), default=0.95)

    def shares(free_energies: list) -> np.ndarray:  # populations of (first, *others) at these ΔF
        log_boltzmann = -np.array([0.0, *free_energies], dtype=np.float64)
        top = log_boltzmann == np.inf  # a ΔF of −∞ (an unbounded interval end) takes everything
        if top.any():
            return top / top.sum()
        boltzmann = np.exp(log_boltzmann - log_boltzmann.max())
        return boltzmann / boltzmann.sum()

    p = shares([e.value for e in delta])
    errors = np.array([0.0, *(e.error for e in delta)])
    result = {}
    for i, name in enumerate(group):
        # p_i falls with its own ΔF and rises with every other one (the first state: with all)
        low = shares([e.high if j + 1 == i else e.low for j, e in enumerate(delta)])[i]
        high = shares([e.low if j + 1 == i else e.high for j, e in enumerate(delta)])[i]
        gradient = -p[i] * ((np.arange(len(group)) == i) - p)  # ∂p_i/∂ΔF_j
        error = float(np.sqrt(np.sum(np.where(gradient == 0, 0.0, gradient * errors) ** 2)))
        result[name] = Estimate(float(p[i]), error, float(low), float(high), level,
                                "from the reference's ΔF: p_b/p_a = exp(-ΔF); interval with each ΔF at its "
                                "interval's end", min((e.n for e in delta), default=0))
    return result


def _read_profile(path: Path, level: float) -> Profile:
    """An umbrella PMF from pmf.csv (columns cv_deg, cv_rad, free_energy_kT, error_kT, …)."""
    table = np.atleast_2d(np.loadtxt(path, delimiter=",", comments="#"))
    bins = len(table)
    if not np.allclose(table[:, 1], angle_bin_centers(bins).numpy(), atol=1e-5):
        raise BoltzflowError(f"{path}: expected {bins} equal bins over [-180°, 180°) in column cv_rad")
    f, error = torch.from_numpy(table[:, 2]), torch.from_numpy(table[:, 3])
    half = z_score(level) * error
    return Profile(angle_bin_centers(bins), f, error, f - half, f + half, level, "MBAR")


@dataclass(frozen=True)
class UmbrellaReference:
    """An umbrella-sampling folder: ``delta_f`` ("a -> b" → Estimate in kT), ``profiles`` (CV
    name → PMF) and, for a 2-D umbrella, ``plane``: (CV names, reweighted probability
    histogram [bins, bins])."""

    kind: ClassVar[str] = "umbrella"
    path: Path
    delta_f: dict
    profiles: dict
    plane: Optional[tuple] = None

    @staticmethod
    def accepts(path: Path) -> bool:
        return path.is_dir()

    @classmethod
    def read(cls, path: Path, system, level: float) -> "UmbrellaReference":
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
        return cls(path, delta, profiles, plane)

    def compare(self, samples: "WeightedSamples", pairs: list, flow_delta: dict, log_z: Estimate,
                exclude: Optional[Tensor], run, level: float, n_boot: int, seed: int) -> Comparison:
        """ΔF of ``pairs`` from the umbrella, the PMF's and the plane's divergences from the samples."""
        clean, _ = sample_log_weights(samples.log_w, samples.log_w, exclude)
        notes = _notes(samples)
        delta = {}
        for a, b in pairs:
            key = f"{a} -> {b}"
            if key in self.delta_f:
                delta[key] = self.delta_f[key]
            elif f"{b} -> {a}" in self.delta_f:
                delta[key] = _negated(self.delta_f[f"{b} -> {a}"])
        marginal, bins = {}, {}
        for cv, profile in self.profiles.items():
            p = torch.exp(-profile.free_energy)  # empty bins (inf) get probability 0
            index = angle_bin_index(samples.cvs[cv], len(p))
            marginal[cv] = kl_divergence(p, histogram(index, normalized_weights(clean), len(p))).item()
            bins[cv] = len(p)
        plane = None
        if self.plane is not None and all(cv in samples.cvs for cv in self.plane[0]):
            (first, second), p = self.plane
            p = torch.from_numpy(np.ascontiguousarray(p)).reshape(-1)
            q = histogram(plane_bin_index(samples.cvs[first], samples.cvs[second], len(self.plane[1])),
                          normalized_weights(clean), len(p))
            plane = {"total_variation": total_variation(p, q).item(), "kl": kl_divergence(p, q).item()}
            bins["ramachandran"] = len(self.plane[1])
        else:
            notes.append(f"umbrella reference: ΔF{' and the PMF' if self.profiles else ''} only")
        return Comparison(self.kind, str(self.path), 0, bins, marginal, plane, delta,
                          {k: flow_delta[k].value - v.value for k, v in delta.items()}, note="; ".join(notes))

    def ramachandran_rows(self, first: str, second: str) -> dict:
        return {}

    def state_populations(self, system, groups: list, level: float, seed: int) -> dict:
        """State → population (Estimate) for each of ``groups`` (names of mutually disjoint
        states) that covers the whole space and whose ΔF the umbrella gives; other states are
        left out (ΔF alone does not fix a population)."""
        result = {}
        for group in groups:
            known = covers(system.states[name] for name in group) and populations_from_delta_f(self.delta_f, group)
            result.update(known or {})
        return result

    def pmf_profiles(self, cv: str, level: float, seed: int) -> dict:
        return {f"umbrella ({self.path.name})": self.profiles[cv]} if cv in self.profiles else {}


@dataclass(frozen=True)
class TrajectoryReference:
    """Reference conformations ``xyz`` [m, atoms, 3] (nm), equally weighted, and their ``cvs``
    (name → [m] radians)."""

    kind: ClassVar[str] = "trajectory"
    path: Path
    xyz: np.ndarray
    cvs: dict

    @staticmethod
    def accepts(path: Path) -> bool:
        return not path.is_dir()

    @classmethod
    def read(cls, path: Path, system, level: float) -> "TrajectoryReference":
        xyz = load_positions(path, system)
        if len(xyz) < 2:
            raise BoltzflowError(f"{path} holds {len(xyz)} frame; a reference needs at least 2")
        return cls(path, xyz, system.collective_variables(torch.from_numpy(xyz).double()))

    def compare(self, samples: "WeightedSamples", pairs: list, flow_delta: dict, log_z: Estimate,
                exclude: Optional[Tensor], run, level: float, n_boot: int, seed: int) -> Comparison:
        """Marginal and plane divergences, ΔF from the frames and, with ``run``, EUBO and forward KL."""
        system, names, notes = samples.system, list(samples.cvs), _notes(samples)
        ref_cvs = self.cvs
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
        for a, b in pairs:
            try:
                delta[f"{a} -> {b}"] = state_delta_f(system, ref_cvs, a, b, level=level, n_boot=n_boot,
                                                     generator=seeded(seed, ref_cvs[names[0]].device))
            except BoltzflowError:  # neither state visited by the reference
                delta[f"{a} -> {b}"] = None
        difference = {k: (flow_delta[k].value - v.value if v is not None else None) for k, v in delta.items()}
        bound = kl_forward = None
        if run is None:
            notes.append("EUBO and forward KL need the run's model: pass the run directory")
        else:
            log_p, log_q = reference_log_densities(run, self.xyz)
            bound, kl_forward = eubo(log_p, log_q, level), forward_kl(log_p, log_q, log_z.value, level)
            if run.snf is not None:
                notes.append("log q of the SNF's flow, without its MCMC layers")
        return Comparison(self.kind, str(self.path), len(self.xyz), bins,
                          {n: v for n, v in zip(names, kl.tolist())}, plane, delta, difference, bound, kl_forward,
                          "; ".join(notes))

    def state_populations(self, system, groups: list, level: float, seed: int) -> dict:
        """State → the fraction of the frames in it, with a bootstrap interval over the frames."""
        device = next(iter(self.cvs.values())).device
        return {name: population(system.states[name].contains(self.cvs), level=level,
                                 generator=seeded(seed, device)) for group in groups for name in group}

    def ramachandran_rows(self, first: str, second: str) -> dict:
        return {f"reference ({self.path.name})": ramachandran(self.cvs[first], self.cvs[second], None,
                                                              RAMACHANDRAN_BINS)}

    def pmf_profiles(self, cv: str, level: float, seed: int) -> dict:
        return {f"reference ({self.path.name})": pmf(self.cvs[cv], None, PMF_BINS, level=level,
                                                     generator=seeded(seed, self.cvs[cv].device))}


Reference = Union[UmbrellaReference, TrajectoryReference]
REFERENCE_KINDS: tuple[type, ...] = (UmbrellaReference, TrajectoryReference)  # the first that accepts a path reads it


def load_reference(path: Union[str, Path], system, level: float = 0.95) -> Reference:
    """Read a reference for ``system`` from ``path`` (see the module docstring)."""
    path = Path(path)
    kind = next(kind for kind in REFERENCE_KINDS if kind.accepts(path))
    return kind.read(path, system, level)


def shipped_reference(system) -> Optional[Reference]:
    """The reference shipped for ``system`` (module docstring) when it is the shipped system of
    that name (not a folder of the user's that shares the name), else None."""
    from ..systems import available_systems

    folder, shipped = SHIPPED / system.name, available_systems().get(system.name)
    if not folder.is_dir() or shipped is None or Path(system.folder).resolve() != shipped.resolve():
        return None
    return load_reference(folder, system)


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
