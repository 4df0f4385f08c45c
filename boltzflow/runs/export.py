"""Export the conformations of a samples file as a trajectory MD tools read (through mdtraj).

Formats: ``dcd``, ``xtc`` (1e-3 nm precision), ``pdb`` (one MODEL per frame) and ``h5``
(mdtraj's HDF5 format, written with h5py by ``boltzflow.reference.trajectory``, so PyTables
is not needed; ``potentialEnergy`` holds u·kT in kJ/mol). The topology is the system's, the
system being named in the file's attributes. Frames carry no time: ``time`` is the frame
index. Weighted samples are exported as they are, with their importance weights beside the
trajectory (``weights_file``): a frame's weight is what it counts for in any average; mirror
images get weight 0, as in the free-energy report. ``resampled=True`` exports the unweighted,
Boltzmann-distributed conformations instead.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ..analysis.estimate import normalized_weights
from ..errors import BoltzflowError
from ..io.atomic import atomic_path
from ..io.samples import open_samples, read_attributes
from ..reference.trajectory import append_frames, create_trajectory
from ..systems import load_system

FORMATS = ("dcd", "xtc", "pdb", "h5")
WITHOUT_TOPOLOGY = ("dcd", "xtc")  # formats that hold coordinates only


def topology_file(trajectory: Union[str, Path]) -> Path:
    """The PDB written beside a dcd or xtc trajectory (its first frame), to load it with:
    ``runs/ala/samples.xtc`` → ``runs/ala/samples.topology.pdb``."""
    trajectory = Path(trajectory)
    return trajectory.with_name(f"{trajectory.stem}.topology.pdb")


def weights_file(trajectory: Union[str, Path]) -> Path:
    """The text file of weights written beside a trajectory of weighted samples:
    ``runs/ala/samples.xtc`` → ``runs/ala/samples.weights.txt``."""
    trajectory = Path(trajectory)
    return trajectory.with_name(f"{trajectory.stem}.weights.txt")


def _write_weights(samples: Path, trajectory: Path) -> Path:
    """``weights_file(trajectory)``: the self-normalised importance weight of each frame [frames]
    (sum 1; mirror images 0), one per line after a comment header."""
    with open_samples(samples) as f:
        log_w, right_handed = f["log_w"][()], f["right_handed"][()]
    w = normalized_weights(torch.from_numpy(np.where(right_handed, log_w, -np.inf))).numpy()
    header = (f"importance weights of the frames of {trajectory.name} (from {samples.name}), one per frame in order, "
              "summing to 1; mirror images (wrong chirality) weigh 0.\nAverage an observable as sum(w * value); "
              "export --resampled gives unweighted, Boltzmann-distributed frames instead.")
    with atomic_path(weights_file(trajectory)) as tmp:
        np.savetxt(tmp, w, fmt="%.10e", header=header)
    return weights_file(trajectory)


def _format(out: Optional[Path], format: Optional[str]) -> str:
    if format is None:
        suffix = out.suffix.lstrip(".").lower() if out is not None else ""
        if suffix not in FORMATS:
            raise BoltzflowError(f"cannot tell the format from {out}; name it, one of {', '.join(FORMATS)}")
        return suffix
    if format.lower() not in FORMATS:
        raise BoltzflowError(f"unknown trajectory format {format!r}; known: {', '.join(FORMATS)}")
    return format.lower()


def _frames(path: Path, resampled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positions [frames, atoms, 3] (nm) and their reduced energies u [frames]."""
    with open_samples(path) as f:
        if not resampled:
            return f["positions"][()], f["u"][()]
        if "resampled" not in f:
            raise BoltzflowError(f"{path} holds no resampled conformations; write them with "
                                 "boltzflow sample RUN --resample K")
        indices = f["resampled/indices"][()]
        unique, inverse = np.unique(indices, return_inverse=True)
        return f["resampled/positions"][()], f["u"][unique][inverse]


def _save(trajectory, format: str, path: Path) -> None:
    """``trajectory.save_FORMAT(path)``; mdtraj's dcd and xtc writers take ASCII file names only,
    so other names are written in a scratch folder first and copied."""
    save = {"dcd": trajectory.save_dcd, "xtc": trajectory.save_xtc, "pdb": trajectory.save_pdb}[format]
    if str(path).isascii():
        save(str(path))
        return
    with tempfile.TemporaryDirectory() as scratch:
        save(str(Path(scratch) / f"trajectory.{format}"))
        shutil.copyfile(Path(scratch) / f"trajectory.{format}", path)


def export_samples(samples: Union[str, Path], out: Union[str, Path, None] = None, format: Optional[str] = None,
                   resampled: bool = False) -> Path:
    """Write the conformations of ``samples`` (a samples file) as a trajectory.

    ``format``: dcd, xtc, pdb or h5; default from the suffix of ``out``. ``out`` defaults
    to the samples file with the format's suffix: ``samples.dcd``, ``samples.trajectory.h5``,
    with ``.resampled`` before the suffix for resampled conformations. dcd and xtc hold no
    topology: a PDB of the first frame is written beside them (``topology_file``). Weighted
    samples (not ``resampled``) get their weights beside the trajectory (``weights_file``).
    Written atomically; returns the trajectory's path.
    """
    import mdtraj

    samples = Path(samples)
    attrs = read_attributes(samples)
    out = Path(out) if out is not None else None
    format = _format(out, format)
    if out is None:
        out = samples.with_suffix((".resampled" if resampled else "") + (".trajectory" if format == "h5" else "")
                                  + f".{format}")
    if out.resolve() == samples.resolve():
        raise BoltzflowError(f"the output {out} would overwrite the samples file; choose another output file")
    system = load_system(attrs["system"])
    xyz, u = _frames(samples, resampled)
    if xyz.shape[1] != system.n_atoms:
        raise BoltzflowError(f"{samples} holds {xyz.shape[1]} atoms per frame but system {attrs['system']} "
                             f"has {system.n_atoms}")
    time = np.arange(len(xyz), dtype=np.float32)
    with atomic_path(out) as tmp:
        if format == "h5":
            create_trajectory(tmp, system.topology, title=f"{attrs['system_name']} samples from {samples.name}")
            append_frames(tmp, xyz, time, u * attrs["kT"])
        else:
            trajectory = mdtraj.Trajectory(xyz, system.topology, time=time)
            _save(trajectory, format, tmp)
    if format in WITHOUT_TOPOLOGY:
        with atomic_path(topology_file(out)) as tmp:
            mdtraj.Trajectory(xyz[:1], system.topology).save_pdb(str(tmp))
    if not resampled:
        _write_weights(samples, out)
    return out
