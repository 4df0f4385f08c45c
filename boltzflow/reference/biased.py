"""Langevin MD with a fixed bias on dihedrals, reweighted to the unbiased ensemble.

Each biased dihedral θᵢ carries a periodic function bᵢ(θ) (kJ/mol), a Fourier series; one
function may serve several dihedrals (e.g. every residue's φ of a peptide): the biased
potential is U(x) + Σᵢ bᵢ(θᵢ(x)). A frame's weight in the unbiased ensemble is
exp(+Σᵢ bᵢ(θᵢ)/kT).

``FourierBias.from_profile`` builds b = −λ·kT·max(F − h, 0) from a free-energy profile F(θ)
(kT, zero at its minimum; e.g. an umbrella PMF of alanine dipeptide's φ), which lowers the
barriers by the fraction λ of their height above h, so that every biased dihedral crosses
often, and the basins below h not at all (h = 0: b = −λ·kT·F).

``run_biased`` runs one repeat from the minimised structure and records every named dihedral
of the system every ``sample_interval`` steps; the file (``.npz``) is rewritten atomically
every ``checkpoint_frames`` frames with the state to continue from, so the same call after an
interruption continues the run. ``repeat_free_energies`` turns a repeat's frames into the
populations and ΔF of the system's states; ``transitions`` counts crossings between basins.
"""

from __future__ import annotations

import json
import math
import time as clock
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
import openmm
import openmm.unit as unit
import torch

from ..errors import BoltzflowError
from ..io import atomic_path
from ..systems import disjoint_groups
from .simulation import (changed_settings, langevin_context, minimise_and_thermalise, other_settings_error,
                         restore_state, save_state, timestep_ps)


@dataclass(frozen=True)
class FourierBias:
    """b(θ) = Σₖ cos_k[k−1]·cos(kθ) + sin_k[k−1]·sin(kθ) in kJ/mol, k = 1 … order (θ in radians)."""

    cos_k: tuple
    sin_k: tuple

    @classmethod
    def from_profile(cls, theta: np.ndarray, free_energy: np.ndarray, kT: float, scale: float,
                     order: int = 6, floor: float = 0.0) -> "FourierBias":
        """The least-squares Fourier fit of −``scale``·kT·max(F − F_min − ``floor``, 0) to a
        profile: ``theta`` [n] (rad), ``free_energy`` F [n] (kT; non-finite bins are left out),
        ``floor`` (kT) the height up to which F is left alone, ``kT`` in kJ/mol. With a floor
        the bias lowers barriers by the fraction ``scale`` of their height above it and deep
        basins by little, so that a rare basin is not made a trap."""
        theta, free_energy = np.asarray(theta, float), np.asarray(free_energy, float)
        keep = np.isfinite(free_energy)
        if keep.sum() < 2 * order + 1:
            raise BoltzflowError(f"a profile of {keep.sum()} finite bins cannot determine a Fourier series of order {order}")
        basis = _basis(theta[keep], order)
        excess = np.maximum(free_energy[keep] - free_energy[keep].min() - floor, 0.0)
        target = -scale * kT * (excess - excess.mean())
        coefficients = np.linalg.lstsq(np.column_stack([np.ones(keep.sum()), basis]), target, rcond=None)[0][1:]
        return cls(tuple(coefficients[:order].tolist()), tuple(coefficients[order:].tolist()))

    @property
    def order(self) -> int:
        return len(self.cos_k)

    def energy(self, theta: np.ndarray) -> np.ndarray:
        """b(θ) (kJ/mol) of dihedrals ``theta`` (rad, any shape)."""
        theta = np.asarray(theta, float)
        return _basis(theta.reshape(-1), self.order).dot(np.array(self.cos_k + self.sin_k)).reshape(theta.shape)

    def force(self, torsions: Sequence[Sequence[int]]) -> openmm.CustomTorsionForce:
        """One OpenMM force applying b to each torsion of ``torsions`` (4 atom indices each)."""
        terms = [f"{c!r}*cos({k}*theta)" for k, c in enumerate(self.cos_k, 1)]
        terms += [f"{s!r}*sin({k}*theta)" for k, s in enumerate(self.sin_k, 1)]
        force = openmm.CustomTorsionForce(" + ".join(terms).replace("+ -", "- "))
        for atoms in torsions:
            force.addTorsion(*atoms, [])
        return force

    def as_dict(self) -> dict:
        return {"cos_k": list(self.cos_k), "sin_k": list(self.sin_k)}


def _basis(theta: np.ndarray, order: int) -> np.ndarray:
    """[n, 2·order]: cos(kθ) for k = 1 … order, then sin(kθ)."""
    k = np.arange(1, order + 1)
    return np.concatenate([np.cos(np.outer(theta, k)), np.sin(np.outer(theta, k))], axis=1)


def log_weights(cvs: dict, biases: Mapping[str, FourierBias], kT: float) -> np.ndarray:
    """Unbiasing log-weights [frames] = Σᵢ bᵢ(θᵢ)/kT over the biased dihedrals (``biases``:
    name → its bias; ``cvs``: name → [frames] radians; ``kT`` in kJ/mol)."""
    return sum(bias.energy(cvs[name]) for name, bias in biases.items()) / kT


def bias_forces(system, biases: Mapping[str, FourierBias]) -> list:
    """OpenMM forces applying ``biases`` (dihedral name of ``system`` → bias), one per distinct bias."""
    return [bias.force([system.dihedrals[name] for name, b in biases.items() if b == bias])
            for bias in dict.fromkeys(biases.values())]


def run_biased(system, biases: Mapping[str, FourierBias], ns: float, out: Union[str, Path],
               seed: int = 0, sample_interval: int = 100, checkpoint_frames: int = 1000, platform: str = "CPU",
               properties: Optional[dict] = None, progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """One biased Langevin run of ``ns`` nanoseconds from the minimised structure; returns ``out``.

    Args:
        system: a boltzflow ``System``; ``biases``: name of a dihedral of it → its bias.
        out: ``.npz`` file: ``cvs`` [frames, n_dihedrals] (rad, the system's named dihedrals in
            order), ``names``, ``time`` [frames] (ps), ``wall_seconds`` (all calls so far),
            ``settings`` and ``state`` (JSON / XML); rerun with the same arguments to continue an
            interrupted run (or with a larger ``ns`` to extend a finished one).
        seed: velocities and Langevin noise; sample_interval: steps between frames.
        platform, properties: OpenMM platform and its properties (e.g. ``{"Threads": "1"}``).
        progress: called as ``progress(frames_done, frames_total)`` after each checkpoint.
    """
    unknown = [name for name in biases if name not in system.dihedrals]
    if unknown or not biases:
        raise BoltzflowError(f"biased dihedrals must be named dihedrals of {system.name} "
                             f"({', '.join(system.dihedrals)}), got {', '.join(biases) or 'none'}")
    total = round(ns * 1e3 / timestep_ps(system)) // sample_interval
    if not 0 < ns < math.inf or total < 1:
        raise BoltzflowError(f"need a positive ns holding at least one frame of {sample_interval} steps, got {ns}")
    settings = {"system": system.name, "biases": {name: bias.as_dict() for name, bias in biases.items()},
                "seed": seed, "sample_interval": sample_interval, "temperature": system.temperature}
    out = Path(out)
    context = langevin_context(system, platform, seed, properties, forces=bias_forces(system, biases))
    cvs, time, wall = _resume(out, context, settings)
    start = clock.perf_counter()
    if not cvs:
        minimise_and_thermalise(context, system.temperature, seed)
    done, integrator = sum(len(c) for c in cvs), context.getIntegrator()
    while done < total:
        chunk = min(checkpoint_frames, total - done)
        xyz, t = np.empty((chunk, system.n_atoms, 3)), np.empty(chunk)
        for i in range(chunk):
            integrator.step(sample_interval)
            state = context.getState(getPositions=True)
            xyz[i] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            t[i] = state.getTime().value_in_unit(unit.picosecond)
        values = system.collective_variables(torch.from_numpy(xyz))
        cvs.append(torch.stack(list(values.values()), 1).numpy())
        time.append(t)
        done += chunk
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, cvs=np.concatenate(cvs), time=np.concatenate(time), names=np.array(list(system.dihedrals)),
                     wall_seconds=wall + clock.perf_counter() - start, settings=json.dumps(settings),
                     state=save_state(context))
        if progress is not None:
            progress(done, total)
    return out


def _resume(out: Path, context, settings: dict) -> tuple[list, list, float]:
    """The frames already in ``out`` ([cvs], [time]) and its wall seconds, with ``context`` set
    to continue; ([], [], 0) if absent."""
    if not out.exists():
        return [], [], 0.0
    try:
        with np.load(out) as data:
            saved, state, wall = json.loads(str(data["settings"])), str(data["state"]), float(data["wall_seconds"])
            cvs, time = data["cvs"], data["time"]
    except (OSError, ValueError, KeyError):
        raise BoltzflowError(f"cannot resume from {out}: it is damaged; remove it to start again") from None
    changed = changed_settings(saved, settings)
    if changed:
        raise other_settings_error(out, saved, settings, changed, "rerun with the same settings or remove it")
    restore_state(context, state, settings["seed"], len(cvs))
    return [cvs], [time], wall


def load_frames(path: Union[str, Path]) -> tuple[dict, np.ndarray, float]:
    """A run's dihedrals (name → [frames] rad), times [frames] (ps) and wall seconds."""
    with np.load(path) as data:
        cvs = {str(n): data["cvs"][:, i] for i, n in enumerate(data["names"])}
        return cvs, data["time"], float(data["wall_seconds"])


def repeat_free_energies(system, cvs: dict, log_w: np.ndarray) -> tuple[dict, dict]:
    """Reweighted populations (state → fraction) and ΔF (kT, "a -> b" → F_b − F_a, pairs as
    the report forms them: each disjoint group's first state to every later one) of frames
    with CVs ``cvs`` (name → [frames] rad) and log-weights ``log_w`` [frames]."""
    w = np.exp(log_w - log_w.max())
    tensors = {name: torch.from_numpy(np.asarray(v, float)) for name, v in cvs.items()}
    populations = {name: float(w[state.contains(tensors).numpy()].sum() / w.sum())
                   for name, state in system.states.items()}
    delta = {}
    for first, *rest in disjoint_groups(system.states.values()):
        for b in rest:  # an empty state gives ±inf (nan if both are empty)
            with np.errstate(divide="ignore", invalid="ignore"):
                delta[f"{first} -> {b}"] = float(np.log(np.float64(populations[first]) / populations[b]))
    return populations, delta


def transitions(theta: np.ndarray, core: float = math.radians(20)) -> int:
    """Committed crossings between θ < 0 and θ > 0 in a series ``theta`` [frames] (rad): the
    series must reach the other side's core, more than ``core`` from both 0 and ±π."""
    positive = (theta > core) & (theta < math.pi - core)
    negative = (theta < -core) & (theta > core - math.pi)
    side = np.where(positive, 1, np.where(negative, -1, 0))
    side = side[side != 0]
    return int(np.count_nonzero(side[1:] != side[:-1]))
