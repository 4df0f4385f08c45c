"""Trajectories in mdtraj's HDF5 format ("Pande" conventions 1.1), written with h5py.

Layout: a JSON topology in ``/topology``, frames in ``/coordinates`` [frames, atoms, 3] (nm,
float32), ``/time`` [frames] (ps) and ``/potentialEnergy`` [frames] (kJ/mol), all
extendable, so frames can be appended and a resumed run can cut surplus frames. Read with
``mdtraj.load("md.h5")`` (mdtraj needs PyTables for that) or with h5py.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import h5py
import numpy as np

import boltzflow

from ..errors import BoltzflowError

UNITS = {"coordinates": "nanometers", "time": "picoseconds", "potentialEnergy": "kilojoules_per_mole"}
# how long a writer waits for readers of its file (HDF5 file locks: a running md's trajectory
# opened by mdtraj or h5py elsewhere) before it gives up with an error
WAIT_FOR_READERS_S = 600.0


def topology_json(topology) -> bytes:
    """The mdtraj topology as the JSON document mdtraj's HDF5 files store."""
    from mdtraj.formats import HDF5TrajectoryFile

    return json.dumps(HDF5TrajectoryFile.convert_topology_to_dict(topology)).encode("ascii")


def create_trajectory(path: Union[str, Path], topology, title: str = "") -> None:
    """A new, empty trajectory file for ``topology`` (an mdtraj Topology)."""
    n_atoms = topology.n_atoms
    with h5py.File(path, "w") as f:
        for key, value in {"conventions": "Pande", "conventionVersion": "1.1", "program": "boltzflow",
                           "programVersion": boltzflow.__version__, "application": "OpenMM",
                           "title": title}.items():
            f.attrs[key] = np.bytes_(value)
        data = topology_json(topology)
        f.create_dataset("topology", data=np.array([data], dtype=f"S{len(data)}"))
        shapes = {"coordinates": (n_atoms, 3), "time": (), "potentialEnergy": ()}
        for name, shape in shapes.items():
            f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=np.float32,
                             chunks=(max(1, 4096 // max(1, 3 * n_atoms)), *shape))
            f[name].attrs["units"] = np.bytes_(UNITS[name])


def count_frames(path: Union[str, Path]) -> int:
    """Frames stored in a trajectory file."""
    with h5py.File(path, "r") as f:
        return len(f["coordinates"])


def append_frames(path: Union[str, Path], coordinates: np.ndarray, time: np.ndarray,
                  potential_energy: np.ndarray) -> int:
    """Append frames: ``coordinates`` [f, atoms, 3] nm, ``time`` [f] ps, ``potential_energy``
    [f] kJ/mol. Returns the number of frames now stored."""
    with _open_for_writing(path) as f:
        n = len(f["coordinates"])
        for name, values in (("coordinates", coordinates), ("time", time), ("potentialEnergy", potential_energy)):
            f[name].resize(n + len(values), axis=0)
            f[name][n:] = values
        return n + len(coordinates)


def truncate_frames(path: Union[str, Path], frames: int) -> None:
    """Keep only the first ``frames`` frames."""
    with _open_for_writing(path) as f:
        for name in UNITS:
            f[name].resize(min(frames, len(f[name])), axis=0)


@contextmanager
def _open_for_writing(path: Union[str, Path], wait_s: float = WAIT_FOR_READERS_S):
    """``path`` open for appending; while another process holds it open (HDF5's file lock),
    retry for up to ``wait_s`` seconds, then a one-line error naming the file."""
    deadline, pause = time.monotonic() + wait_s, 0.1
    while True:
        try:
            handle = h5py.File(path, "a")
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BoltzflowError(f"{path} stayed open in another process for {wait_s:g} s; close it "
                                     "(a reader of a running trajectory) and rerun to continue") from None
            time.sleep(pause)
            pause = min(2 * pause, 5.0)
    with handle:
        yield handle


def load_positions(path: Union[str, Path], system) -> np.ndarray:
    """Frames of a trajectory of ``system`` as positions [frames, atoms, 3] (nm, float32).

    An HDF5 file with ``/coordinates`` (``boltzflow md``, mdtraj's format) is read with h5py;
    anything else goes through ``mdtraj.load`` with the system's structure as topology.
    """
    import mdtraj

    path = Path(path)
    if not path.is_file():
        raise BoltzflowError(f"trajectory {path} not found; simulate one with: boltzflow md SYSTEM --ns 1 --out {path}")
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if "coordinates" not in f:
                    raise BoltzflowError(f"{path} is HDF5 but has no /coordinates dataset (mdtraj's format)")
                xyz = f["coordinates"][:]
        else:
            xyz = mdtraj.load(str(path), top=str(system.folder / "structure.pdb")).xyz
    except BoltzflowError:
        raise
    except Exception as exc:  # mdtraj and h5py raise many kinds for unreadable files
        raise BoltzflowError(f"cannot read {path} as a trajectory: {exc}") from None
    if xyz.ndim != 3 or xyz.shape[1:] != (system.n_atoms, 3):
        raise BoltzflowError(f"{path} holds frames of shape {list(xyz.shape[1:])}; system {system.name} "
                             f"needs [{system.n_atoms}, 3]")
    return np.asarray(xyz, dtype=np.float32)
