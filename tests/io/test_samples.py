"""Sample files: round trip of every dataset and attribute, the run's own samples, compressed
chunks, resampled conformations, and no file under the final name after a failure or a kill."""

import hashlib
import math
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

import boltzflow
from boltzflow.errors import BoltzflowError
from boltzflow.io import read_attributes, read_samples
from boltzflow.runs import write_samples
from boltzflow.training.correction import AISCorrection

from .runs import one_thread, run, run_dir  # noqa: F401

N, BATCH, K = 300, 128, 40  # the last batch is partial


@pytest.fixture(scope="module")
def written(run, run_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("samples") / "samples.h5"
    before = torch.get_rng_state()
    write_samples(run, path, N, BATCH, seed=7, resample=K, run_dir=run_dir)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
    return path


def test_round_trip_of_datasets_and_attributes(written, run, run_dir):
    samples = read_samples(written)
    atoms, dim = run.system.n_atoms, run.coordinates.dim
    shapes = {"positions": (N, atoms, 3), "z": (N, dim), "log_q": (N,), "u": (N,), "log_w": (N,), "right_handed": (N,)}
    dtypes = {"positions": np.float32, "z": np.float32, "log_q": np.float64, "u": np.float64, "log_w": np.float64,
              "right_handed": np.bool_}
    for name, shape in shapes.items():
        value = getattr(samples, name)
        assert value.shape == shape and value.dtype == dtypes[name], name
    assert set(samples.cvs) == {"phi", "psi"} and set(samples.states) == set(run.system.states)
    assert all(v.shape == (N,) and v.dtype == np.float64 for v in samples.cvs.values())
    assert all(v.shape == (N,) and v.dtype == np.bool_ for v in samples.states.values())
    attrs = samples.attrs
    digest = hashlib.sha256((run_dir / "model.pt").read_bytes()).hexdigest()
    assert attrs["model_sha256"] == digest
    assert attrs["model_file"] == str((run_dir / "model.pt").resolve())
    assert (attrs["system"], attrs["system_name"], attrs["n"], attrs["seed"]) == ("alanine-dipeptide",) * 2 + (N, 7)
    assert attrs["temperature"] == 300.0 and attrs["kT"] == pytest.approx(run.system.kT)
    assert attrs["boltzflow_version"] == boltzflow.__version__ and attrs["run"] == str(run_dir.resolve())
    assert attrs["units"]["positions"] == "nm" and attrs["units"]["u"] == "kT"
    assert attrs == read_attributes(written)
    # normalised log-weights: probabilities summing to 1; the shift recovers log p̃ − log q
    assert math.fsum(np.exp(samples.log_w)) == pytest.approx(1.0, abs=1e-12)
    log_z = torch.logsumexp(torch.from_numpy(samples.log_w_unnormalized), 0).item() - math.log(N)
    assert log_z == pytest.approx(attrs["log_w_logsumexp"] - math.log(N))


def test_the_file_holds_the_runs_samples_for_its_seed(written, run):
    samples = read_samples(written)
    torch.manual_seed(7)
    draws = [run.draw(size) for size in (BATCH, BATCH, N - 2 * BATCH)]
    expected = {key: torch.cat([d[key] for d in draws]) for key in draws[0]}
    assert np.array_equal(samples.positions, expected["xyz"].numpy())
    assert np.array_equal(samples.z, expected["z"].numpy())
    assert np.allclose(samples.log_w_unnormalized, expected["log_w"].double().numpy(), rtol=0, atol=1e-9)
    assert np.array_equal(samples.u, expected["u"].double().numpy())
    assert np.array_equal(samples.log_q, expected["log_q"].double().numpy())
    assert np.array_equal(samples.right_handed, expected["right_handed"].numpy())
    cvs = run.system.collective_variables(expected["xyz"])
    assert all(np.array_equal(samples.cvs[k], v.double().numpy()) for k, v in cvs.items())
    for name, state in run.system.states.items():
        assert np.array_equal(samples.states[name], state.contains(cvs).numpy()), name


def test_datasets_are_chunked_and_compressed_with_units(written):
    with h5py.File(written, "r") as f:
        names = []
        f.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        assert len(names) == 6 + 2 + 5 + 2
        for name in names:
            assert f[name].chunks is not None and f[name].compression == "gzip", name
            assert "units" in f[name].attrs, name


def test_resampled_conformations_are_the_drawn_samples(written):
    samples = read_samples(written)
    indices, positions = samples.resampled["indices"], samples.resampled["positions"]
    assert indices.shape == (K,) and indices.dtype == np.int64 and np.all(np.diff(indices) >= 0)
    assert np.array_equal(positions, samples.positions[indices])
    counts = np.bincount(indices, minlength=N)
    weights = np.exp(samples.log_w) * samples.right_handed
    weights /= weights.sum()
    assert np.all((counts >= np.floor(K * weights - 1e-9)) & (counts <= np.ceil(K * weights + 1e-9)))
    assert samples.resampled is not None and read_samples(written, positions=False).resampled is None


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(run, tmp_path):
    path = tmp_path / "samples.h5"
    write_samples(run, path, 40, 20)
    before = path.read_bytes()

    def fail(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_samples(run, path, 40, 20, seed=1, progress=fail)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]


def test_an_ais_corrected_file_keeps_the_flow_weights_and_the_frozen_step_sizes(run, run_dir, tmp_path):
    correction = AISCorrection(levels=2, leapfrog=2, warmup=2, warmup_size=8)  # + 8 gradients to precondition
    before = torch.get_rng_state()
    correction.warm_up(run)
    frozen = correction.ais.step_sizes.clone()
    path = write_samples(run, tmp_path / "ais.h5", 70, 32, seed=5, run_dir=run_dir, correction=correction)
    assert torch.equal(correction.ais.step_sizes, frozen)  # production does not adapt
    samples = read_samples(path)
    assert np.array_equal(samples.attrs["ais_step_sizes"], frozen.double().numpy())
    assert samples.log_w_flow.shape == (70,) and samples.log_w_flow.dtype == np.float64
    for log_w in (samples.log_w, samples.log_w_flow):
        assert math.fsum(np.exp(log_w)) == pytest.approx(1.0, abs=1e-12)
    assert samples.attrs["ais_levels"] == 2 and samples.attrs["ais_warmup_evaluations"] == 2 * 8 * (2 * (1 + 2) + 1) + 8
    assert samples.attrs["sampling_seconds"] > 0 and samples.attrs["ais_precondition"] == "curvature"
    # the file's z are the chains' end points: the stored log q and u belong to them
    with torch.no_grad():
        z = torch.from_numpy(samples.z)
        assert np.allclose(run.flow.log_prob(z).double().numpy(), samples.log_q, rtol=1e-4, atol=1e-3)
    torch.set_rng_state(before)


@pytest.mark.parametrize("ais", [[], ["--ais", "2", "--ais-warmup", "1", "--ais-warmup-size", "4"]],
                         ids=["flow", "ais"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_sample_command_leaves_no_file_under_the_final_name(run_dir, tmp_path, signum, ais):
    out = tmp_path / "samples.h5"
    process = subprocess.Popen([sys.executable, "-m", "boltzflow.cli.app", "sample", str(run_dir), "-n", "100000000",
                                "--batch-size", "64", "--out", str(out), *ais],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".samples.h5.*.tmp")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the temporary file never appeared"
            time.sleep(0.05)
        time.sleep(0.3)  # some batches written
        process.send_signal(signum)
        code = process.wait(timeout=30)
    finally:
        process.kill()
    assert code == -signum if signum == signal.SIGKILL else code == 128 + signum
    assert not out.exists()
    if signum == signal.SIGTERM:  # a clean exit also removes the temporary file
        assert list(tmp_path.iterdir()) == []


def test_reading_something_else_is_a_user_error(tmp_path):
    with pytest.raises(BoltzflowError, match="not found"):
        read_samples(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "md.h5", "w") as f:
        f["coordinates"] = np.zeros((1, 2, 3))
    with pytest.raises(BoltzflowError, match="not a boltzflow samples file"):
        read_samples(tmp_path / "md.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(BoltzflowError, match="not an HDF5 file"):
        read_samples(tmp_path / "text.h5")


def test_a_damaged_file_is_a_user_error(written, tmp_path):
    """A truncated copy (an interrupted transfer) fails with one message, not h5py's traceback."""
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(written.read_bytes()[:5000])
    with pytest.raises(BoltzflowError, match="damaged or incomplete.*boltzflow sample"):
        read_samples(truncated)


def test_more_samples_than_the_disk_holds_are_refused_before_any_work(run, tmp_path):
    with pytest.raises(BoltzflowError, match=r"need up to [\d,.]+ GB in .* GB are free there"):
        write_samples(run, tmp_path / "huge.h5", 10**12)
    with pytest.raises(BoltzflowError, match="resampled conformations need"):
        write_samples(run, tmp_path / "huge.h5", 10, resample=10**12)
    assert list(tmp_path.iterdir()) == []
