"""Reference molecular dynamics: a long Langevin run saved as an mdtraj HDF5 trajectory.

While running, frames go to ``<out>.partial`` and a checkpoint ``<out>.checkpoint`` (JSON:
frame count, settings and the OpenMM state as XML) is written atomically every
``checkpoint_interval`` frames, after the frames it counts. Running the same call again
after an interruption continues from the checkpoint: frames written after it are cut, so no
frame is lost or repeated. When all frames are there, the partial file is renamed to
``out`` (a reader never sees half a trajectory) and the checkpoint removed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ..errors import BoltzflowError
from ..io import atomic_path
from .simulation import (changed_settings, langevin_context, minimise_and_thermalise, timestep_ps,
                         other_settings_error, positions_and_energy, restore_state, save_state)
from .trajectory import append_frames, count_frames, create_trajectory, truncate_frames


@dataclass(frozen=True)
class MDResult:
    """The trajectory ``path``, its ``frames``, and the frames already there when this call
    started (``resumed_from`` = 0 for a fresh run)."""

    path: Path
    frames: int
    resumed_from: int


def md_paths(out: Union[str, Path]) -> tuple[Path, Path, Path]:
    """The final trajectory, the trajectory being written and its checkpoint."""
    out = Path(out)
    return out, out.with_name(out.name + ".partial"), out.with_name(out.name + ".checkpoint")


def run_md(system, ns: float, out: Union[str, Path] = "md.h5", platform: str = "CPU", seed: int = 0,
           report_interval: int = 1000, checkpoint_interval: int = 100, properties: Optional[dict] = None,
           progress: Optional[Callable[[int, int], None]] = None) -> MDResult:
    """Run Langevin dynamics of ``system`` for ``ns`` nanoseconds from its minimised structure.

    Args:
        system: a boltzflow ``System``.
        ns: simulated time (ns), in steps of ``timestep_ps(system)`` (1 fs; 2 fs with constraints).
        out: trajectory file (mdtraj HDF5, ``.h5``); must not exist yet.
        platform: OpenMM platform ("CPU", "CUDA", "OpenCL", "Reference").
        seed: seeds the velocities and the Langevin noise.
        report_interval: steps between saved frames (1000 = one frame per ps).
        checkpoint_interval: frames between checkpoints.
        properties: OpenMM platform properties, e.g. ``{"Threads": "1"}``.
        progress: called as ``progress(frames_done, frames_total)`` after each frame.
    """
    if not 0 < ns < math.inf:
        raise BoltzflowError(f"the simulated time must be a positive, finite number of ns, got {ns}")
    if report_interval < 1 or checkpoint_interval < 1:
        raise BoltzflowError(f"report_interval and checkpoint_interval must be >= 1, got "
                             f"{report_interval} and {checkpoint_interval}")
    total = round(ns * 1e3 / timestep_ps(system)) // report_interval
    if total < 1:
        raise BoltzflowError(f"{ns} ns is shorter than one frame ({report_interval} steps of {timestep_ps(system)} ps)")
    out, partial, checkpoint = md_paths(out)
    if out.exists():
        raise BoltzflowError(f"{out} already exists; remove it or choose another output file")
    if partial.is_symlink():  # h5py would write through it into the file it points to
        raise BoltzflowError(f"{partial} is a symbolic link; md writes its frames there and does not follow links: "
                             "remove it")
    settings = {"system": system.name, "n_atoms": system.n_atoms, "temperature": system.temperature,
                "report_interval": report_interval, "seed": seed}
    context = langevin_context(system, platform, seed, properties)
    done = _resume(context, partial, checkpoint, settings)
    if done == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        create_trajectory(partial, system.topology, title=f"{system.name} Langevin MD at {system.temperature:g} K")
        minimise_and_thermalise(context, system.temperature, seed)
    resumed_from, integrator = done, context.getIntegrator()
    while done < total:
        chunk = min(checkpoint_interval, total - done)
        xyz, energy, time = np.empty((chunk, system.n_atoms, 3)), np.empty(chunk), np.empty(chunk)
        for i in range(chunk):
            integrator.step(report_interval)
            xyz[i], energy[i], time[i] = positions_and_energy(context)
            if progress is not None:
                progress(done + i + 1, total)
        done = append_frames(partial, xyz, time, energy)
        with atomic_path(checkpoint) as tmp:
            tmp.write_text(json.dumps({**settings, "frames": done, "state": save_state(context)}))
    os.replace(partial, out)
    checkpoint.unlink()
    return MDResult(out, done, resumed_from)


def _resume(context, partial: Path, checkpoint: Path, settings: dict) -> int:
    """Frames already done, with ``context`` set to the checkpoint; 0 when starting afresh.
    A damaged checkpoint or partial trajectory is a one-line error naming both files."""
    if not (partial.exists() and checkpoint.exists()):
        return 0

    def damaged(path: Path) -> BoltzflowError:
        return BoltzflowError(f"cannot resume from {path}: it is damaged or truncated; remove {partial} and "
                              f"{checkpoint} to start again")

    try:
        saved = json.loads(checkpoint.read_text())
        frames = int(saved["frames"])
    except (ValueError, KeyError, TypeError):
        raise damaged(checkpoint) from None
    changed = changed_settings(saved, settings)
    if changed:
        raise other_settings_error(checkpoint, saved, settings, changed,
                                   "rerun with the same settings or remove it and its .partial file")
    try:
        stored = count_frames(partial)
    except (OSError, KeyError) as error:
        if getattr(error, "errno", None) is not None:  # a system error (no permission), not h5py's own
            raise
        raise damaged(partial) from None
    if stored < frames:
        raise BoltzflowError(f"{partial} holds fewer frames than its checkpoint says ({frames}); "
                             "remove both files to start again")
    truncate_frames(partial, frames)
    try:
        restore_state(context, saved["state"], settings["seed"], frames)
    except Exception:  # OpenMM's own exception (or a KeyError, TypeError) for a state it cannot read
        raise damaged(checkpoint) from None
    return frames
