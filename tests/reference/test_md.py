"""Reference MD: an mdtraj-readable trajectory with the right topology and frames, and a
resumed run that neither loses nor repeats a frame."""

import json
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from boltzflow.errors import BoltzflowError
from boltzflow.reference import run_md
from boltzflow.reference.md import md_paths
from boltzflow.reference.trajectory import _open_for_writing, append_frames, create_trajectory


class Interrupt(Exception):
    pass


def stop_at(frame):
    def progress(done, total):
        if done == frame:
            raise Interrupt

    return progress


def read(path):
    with h5py.File(path, "r") as f:
        return f["coordinates"][()], f["time"][()], f["potentialEnergy"][()], json.loads(f["topology"][0])


def test_md_writes_a_trajectory_mdtraj_reads(system, tmp_path):
    seen = []
    result = run_md(system, 0.002, tmp_path / "md.h5", report_interval=100, progress=lambda d, t: seen.append((d, t)))
    assert (result.frames, result.resumed_from, result.path) == (20, 0, tmp_path / "md.h5")
    assert seen[-1] == (20, 20) and len(seen) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.h5"]  # partial file renamed, checkpoint gone
    xyz, time, energy, topology = read(result.path)
    assert xyz.shape == (20, system.n_atoms, 3) and np.allclose(time, 0.1 * np.arange(1, 21), atol=1e-5)
    assert np.all(np.isfinite(energy))
    atoms = [a["name"] for chain in topology["chains"] for r in chain["residues"] for a in r["atoms"]]
    assert atoms == [a.name for a in system.topology.atoms]
    # frames move, but stay near the structure (bonds intact, nothing blew up)
    bond = np.linalg.norm(xyz[:, 4] - xyz[:, 6], axis=-1)  # C–N peptide bond, ≈ 0.13 nm
    assert np.all((bond > 0.11) & (bond < 0.16)) and np.abs(np.diff(xyz, axis=0)).max() > 1e-3

    mdtraj = pytest.importorskip("mdtraj")
    pytest.importorskip("tables")  # mdtraj reads HDF5 through PyTables
    trajectory = mdtraj.load(str(result.path))
    assert trajectory.n_frames == 20 and trajectory.topology == system.topology
    assert np.allclose(trajectory.xyz, xyz) and np.allclose(trajectory.time, time)


def test_interrupted_md_resumes_without_losing_or_repeating_frames(system, tmp_path):
    out = tmp_path / "md.h5"
    final, partial, checkpoint = md_paths(out)
    with pytest.raises(Interrupt):
        run_md(system, 0.002, out, report_interval=100, checkpoint_interval=3, progress=stop_at(8))
    assert not final.exists() and partial.exists() and checkpoint.exists()
    saved_xyz, saved_time, _, _ = read(partial)
    assert len(saved_time) == 6  # two checkpoints of three frames each
    # a crash between writing frames and writing their checkpoint leaves surplus frames
    append_frames(partial, saved_xyz[-1:] + 1.0, saved_time[-1:] + 0.1, np.zeros(1))

    result = run_md(system, 0.002, out, report_interval=100, checkpoint_interval=3)
    assert (result.frames, result.resumed_from) == (20, 6)
    xyz, time, _, _ = read(final)
    assert np.allclose(time, 0.1 * np.arange(1, 21), atol=1e-5)  # evenly spaced: none lost, none repeated
    assert np.array_equal(xyz[:6], saved_xyz)  # the frames before the interruption are kept
    # the surplus frame (shifted by 1 nm) was cut; frame 7 is 100 fs of dynamics after frame 6
    assert np.abs(xyz[6] - xyz[5]).max() < 0.4
    assert not partial.exists() and not checkpoint.exists()


def test_md_refuses_to_overwrite_and_to_resume_with_other_settings(system, tmp_path):
    out = tmp_path / "md.h5"
    with pytest.raises(Interrupt):
        run_md(system, 0.002, out, report_interval=100, checkpoint_interval=2, progress=stop_at(3))
    with pytest.raises(BoltzflowError, match="other settings.*report_interval"):
        run_md(system, 0.002, out, report_interval=50)
    run_md(system, 0.0004, out, report_interval=100)
    with pytest.raises(BoltzflowError, match="already exists"):
        run_md(system, 0.001, out, report_interval=100)
    with pytest.raises(BoltzflowError, match="shorter than one frame"):
        run_md(system, 1e-5, tmp_path / "short.h5")
    with pytest.raises(BoltzflowError, match="platform 'Nope' is not available"):
        run_md(system, 0.001, tmp_path / "x.h5", platform="Nope")


def test_appending_waits_for_a_reader_of_the_trajectory(system, tmp_path):
    """A reader in another process holds HDF5's file lock (someone looking at a running md's
    frames): the writer waits for it instead of crashing, and gives up with one line."""
    path = tmp_path / "md.h5.partial"
    create_trajectory(path, system.topology, title="test")
    frames = np.zeros((2, system.n_atoms, 3))
    reader = subprocess.Popen([sys.executable, "-c", f"import h5py, sys, time\nf = h5py.File({str(path)!r}, 'r')\n"
                               "print('open', flush=True)\ntime.sleep(float(sys.argv[1]))", "1.5"],
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    start = time.monotonic()
    assert append_frames(path, frames, np.arange(2.0), np.zeros(2)) == 2
    assert time.monotonic() - start > 0.5       # it waited for the reader
    reader.wait()
    reader = subprocess.Popen([sys.executable, "-c", f"import h5py, time\nf = h5py.File({str(path)!r}, 'r')\n"
                               "print('open', flush=True)\ntime.sleep(5)"], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    with pytest.raises(BoltzflowError, match="stayed open in another process"):
        with _open_for_writing(path, wait_s=0.3):
            pass
    reader.kill()
