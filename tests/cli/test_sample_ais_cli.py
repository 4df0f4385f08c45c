"""``boltzflow sample --ais``: AIS-corrected samples of the tiny run, their attributes, and
free-energy / export reading the file unchanged; bad options fail before any work."""

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import boltzflow.runs

from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError
from boltzflow.io import read_toml, write_toml
from tests.io.runs import one_thread, tiny_run  # noqa: F401

runner = CliRunner()
LEVELS = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A copy of the tiny run with samples.h5 from ``--ais 3`` (HMC, 2 leapfrog steps, 2 warm-up batches)."""
    copy = tmp_path_factory.mktemp("cli-ais") / "run"
    shutil.copytree(tiny_run(tmp_path_factory), copy)
    result = runner.invoke(app, ["sample", str(copy), "-n", "96", "--batch-size", "64", "--seed", "2",
                                 "--ais", str(LEVELS), "--ais-leapfrog", "2", "--ais-warmup", "2",
                                 "--ais-warmup-size", "16"])
    assert result.exit_code == 0, result.output
    assert "ESS flow alone" in result.output and "gradient evaluations" in result.output
    return copy


def test_the_samples_file_records_the_correction(run_dir):
    with h5py.File(run_dir / "samples.h5", "r") as f:
        attrs, dim = dict(f.attrs), f["z"].shape[1]
        log_w, log_w_flow = f["log_w"][()], f["log_w_flow"][()]
    assert attrs["ais_levels"] == LEVELS and attrs["ais_kernel"] == "hmc" and attrs["ais_leapfrog"] == 2
    assert attrs["ais_step_sizes"].shape == (LEVELS, dim) and (attrs["ais_step_sizes"] > 0).all()
    assert attrs["ais_acceptance"].shape == (LEVELS,)
    assert ((attrs["ais_acceptance"] >= 0) & (attrs["ais_acceptance"] <= 1)).all()
    assert attrs["ais_gradient_evaluations_per_sample"] == LEVELS * (1 + 2)
    # measured: the gradient evaluations, plus the target at the start and twice at the end (weights, positions)
    assert attrs["ais_extra_evaluations_per_sample"] == LEVELS * (1 + 2) + 2
    assert attrs["ais_warmup_evaluations"] > 0 and attrs["ais_warmup_batches"] == 2
    assert attrs["ais_precondition"] == "curvature"
    assert np.allclose(attrs["ais_betas"], np.linspace(0, 1, LEVELS + 2))
    for weights in (log_w, log_w_flow):  # both self-normalised
        assert len(weights) == 96 and abs(np.logaddexp.reduce(weights)) < 1e-9


def test_free_energy_and_export_read_the_corrected_file(run_dir, tmp_path):
    result = runner.invoke(app, ["free-energy", str(run_dir / "samples.h5"), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "ESS (Kish)" in result.output and "PSIS k̂" in result.output
    result = runner.invoke(app, ["export", str(run_dir / "samples.h5"), "--out", str(tmp_path / "x.pdb")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.pdb").is_file()


@pytest.mark.parametrize("options, message", [
    (["--ais", "-1"], "--ais must be >= 0"),
    (["--ais", "4", "--ais-kernel", "langevin"], "unknown --ais-kernel 'langevin'"),
    (["--ais", "4", "--ais-leapfrog", "0"], "--ais-leapfrog must be >= 1"),
    (["--ais", "4", "--ais-precondition", "hessian"], "unknown --ais-precondition 'hessian'"),
])
def test_bad_options_fail_before_any_work(options, message, tmp_path):
    """A missing run directory: the error is about the option, so nothing was loaded first."""
    result = runner.invoke(app, ["sample", str(tmp_path / "no-run"), "-n", "8", *options])
    assert isinstance(result.exception, BoltzflowError) and message in str(result.exception)


def test_ais_on_a_stochastic_flow_run_is_refused(run_dir, tmp_path):
    snf = tmp_path / "snf"
    snf.mkdir()
    write_toml(snf / "config.toml", {**read_toml(run_dir / "config.toml"), "objective": "snf"})
    result = runner.invoke(app, ["sample", str(snf), "-n", "8", "--ais", "2"])
    assert isinstance(result.exception, BoltzflowError) and "stochastic normalizing flow" in str(result.exception)


def test_a_bad_level_count_is_one_error_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "boltzflow.cli.app", "sample", "run", "-n", "8", "--ais", "-3"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --ais must be >= 0 levels, got -3")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr + proc.stdout


def test_help_shows_an_ais_example():
    result = runner.invoke(app, ["sample", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--ais 16 --ais-kernel hmc" in result.output


def test_the_benchmark_table_reads_the_file(run_dir, capsys):
    from tests.test_benchmarks import load

    rows = load("ais_correction").main([str(run_dir / "samples.h5"), "--markdown"])
    assert rows[0]["levels"] == LEVELS and 0 < rows[0]["ess_ais"] <= 1 and 0 < rows[0]["ess_flow"] <= 1
    assert rows[0]["gradient_evaluations"] == LEVELS * 3 and rows[0]["ms_per_sample"] > 0
    assert "| hmc K=3 L=2, curvature | 96 | 9 |" in capsys.readouterr().out


@pytest.mark.parametrize("options, batch", [([], 8192), (["--ais", "2"], 1024), (["--ais", "2", "--batch-size", "50"], 50)])
def test_batches_are_smaller_with_ais_so_progress_keeps_coming(tmp_path_factory, tmp_path, monkeypatch, options,
                                                               batch):
    """An AIS sample costs levels × leapfrog gradients: its default batch is 1024, not 8192."""
    seen = []
    monkeypatch.setattr(boltzflow.runs, "write_samples", lambda *args, batch_size, **kw: seen.append(batch_size))
    runner.invoke(app, ["sample", str(tiny_run(tmp_path_factory)), "-n", "8", "--out", str(tmp_path / "s.h5"),
                        *options])
    assert seen == [batch]
