"""Exported trajectories load in mdtraj with the system's topology and the sampled coordinates."""

import h5py
import mdtraj
import numpy as np
import pytest

from boltzflow.errors import BoltzflowError
from boltzflow.io import read_samples
from boltzflow.runs import export_samples, write_samples
from boltzflow.runs.export import topology_file, weights_file
from boltzflow.systems import load_system
from boltzflow.training.run import load_run

from .runs import one_thread, run_dir  # noqa: F401

N, K = 50, 12
TOLERANCE = {"dcd": 1e-5, "xtc": 5.1e-4, "pdb": 5.1e-5, "h5": 1e-7}  # nm: float32 Å, 1e-3 nm grid, 1e-3 Å grid


@pytest.fixture(scope="module")
def samples_file(run_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "samples.h5"
    return write_samples(load_run(run_dir), path, N, resample=K, run_dir=run_dir)


@pytest.fixture(scope="module")
def system():
    return load_system("alanine-dipeptide")


def load(path, system):
    if path.suffix in (".dcd", ".xtc"):
        return mdtraj.load(str(path), top=system.topology)
    if path.suffix == ".h5":
        pytest.importorskip("tables")  # mdtraj reads HDF5 through PyTables
    return mdtraj.load(str(path))


@pytest.mark.parametrize("format", ["dcd", "xtc", "pdb", "h5"])
@pytest.mark.parametrize("resampled", [False, True], ids=["weighted", "resampled"])
def test_exported_trajectory_loads_with_topology_and_coordinates(samples_file, system, tmp_path, format, resampled):
    out = export_samples(samples_file, tmp_path / f"traj.{format}", resampled=resampled)
    # no temporary file left; coordinates-only formats get their topology beside them
    beside = (["traj.topology.pdb"] if format in ("dcd", "xtc") else []) + ([] if resampled else ["traj.weights.txt"])
    assert out == tmp_path / f"traj.{format}" and sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *beside])
    if format in ("dcd", "xtc"):
        with_topology = mdtraj.load(str(out), top=str(topology_file(out)))
        assert [a.name for a in with_topology.topology.atoms] == [a.name for a in system.topology.atoms]
        assert with_topology.topology.n_bonds == system.topology.n_bonds
    samples = read_samples(samples_file)
    expected = samples.resampled["positions"] if resampled else samples.positions
    trajectory = load(out, system)
    assert trajectory.n_frames == len(expected) and trajectory.n_atoms == system.n_atoms
    assert [a.name for a in trajectory.topology.atoms] == [a.name for a in system.topology.atoms]
    assert [r.name for r in trajectory.topology.residues] == ["ACE", "ALA", "NME"]
    assert trajectory.topology.n_bonds == system.topology.n_bonds
    assert np.abs(trajectory.xyz - expected).max() <= TOLERANCE[format]


def test_weighted_frames_get_their_weights_beside_them(samples_file, tmp_path):
    """One weight per frame, in order, summing to 1: the samples file's, mirror images at 0."""
    out = export_samples(samples_file, tmp_path / "traj.xtc")
    path = weights_file(out)
    assert path == tmp_path / "traj.weights.txt" and path.read_text().startswith("# importance weights")
    weights = np.loadtxt(path)
    samples = read_samples(samples_file)
    expected = np.where(samples.right_handed, np.exp(samples.log_w), 0.0)
    assert weights.shape == (N,) and np.allclose(weights, expected / expected.sum(), rtol=1e-9, atol=0)
    assert abs(weights.sum() - 1) < 1e-9


def test_h5_export_stores_energies_in_kj_per_mol(samples_file, tmp_path):
    out = export_samples(samples_file, tmp_path / "traj.h5")
    samples = read_samples(samples_file)
    with h5py.File(out, "r") as f:
        energy = f["potentialEnergy"][()]
    assert np.allclose(energy, samples.u * samples.attrs["kT"], rtol=1e-6)


def test_default_names_and_user_errors(samples_file, run_dir, tmp_path):
    assert export_samples(samples_file, format="dcd") == samples_file.with_suffix(".dcd")
    resampled_h5 = samples_file.with_suffix(".resampled.trajectory.h5")
    assert export_samples(samples_file, format="h5", resampled=True) == resampled_h5
    with pytest.raises(BoltzflowError, match="unknown trajectory format 'gro'"):
        export_samples(samples_file, format="gro")
    with pytest.raises(BoltzflowError, match="cannot tell the format"):
        export_samples(samples_file, tmp_path / "traj.nc")
    with pytest.raises(BoltzflowError, match="would overwrite the samples file"):
        export_samples(samples_file, samples_file, format="h5")
    unresampled = write_samples(load_run(run_dir), tmp_path / "plain.h5", 4)
    with pytest.raises(BoltzflowError, match="--resample K"):
        export_samples(unresampled, format="dcd", resampled=True)
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(samples_file.read_bytes()[:5000])
    with pytest.raises(BoltzflowError, match="damaged or incomplete"):
        export_samples(damaged, format="pdb")


@pytest.mark.parametrize("format", ["dcd", "xtc"])
def test_a_non_ascii_path_is_written(samples_file, system, tmp_path, format):
    """mdtraj's dcd and xtc writers take ASCII names only; the export goes through a scratch file."""
    out = export_samples(samples_file, tmp_path / "données" / f"échantillons.{format}")
    assert out.is_file() and topology_file(out).is_file()
    plain = tmp_path / f"plain.{format}"
    plain.write_bytes(out.read_bytes())  # mdtraj cannot read the non-ASCII name either
    xyz = read_samples(samples_file).positions
    assert np.abs(load(plain, system).xyz - xyz).max() <= TOLERANCE[format]
