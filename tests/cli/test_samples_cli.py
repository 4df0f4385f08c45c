"""``boltzflow sample``, ``export`` and ``free-energy`` through typer's CliRunner."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import mdtraj
import openmm
import pytest
from typer.testing import CliRunner

import boltzflow.runs
from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError
from boltzflow.reference import run_md
from boltzflow.systems import load_system
from tests.io.runs import one_thread, tiny_run  # noqa: F401

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A copy of the tiny run, with samples.h5 (200 samples, 20 resampled) written by the CLI."""
    copy = tmp_path_factory.mktemp("cli") / "run"
    shutil.copytree(tiny_run(tmp_path_factory), copy)
    result = runner.invoke(app, ["sample", str(copy), "-n", "200", "--batch-size", "64", "--resample", "20",
                                 "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "ESS (Kish)" in result.output and "resampled" in result.output
    return copy


@pytest.fixture(scope="module")
def md_file(tmp_path_factory):
    platform = openmm.Platform.getPlatformByName("CPU")
    before = platform.getPropertyDefaultValue("Threads")
    platform.setPropertyDefaultValue("Threads", "1")
    try:
        return run_md(load_system("alanine-dipeptide"), 0.002, tmp_path_factory.mktemp("md") / "md.h5",
                      report_interval=100).path
    finally:
        platform.setPropertyDefaultValue("Threads", before)


def test_sample_writes_run_samples_h5(run_dir):
    with h5py.File(run_dir / "samples.h5", "r") as f:
        assert f["positions"].shape == (200, 22, 3) and f["resampled/indices"].shape == (20,)
        assert f.attrs["seed"] == 3 and f.attrs["system"] == "alanine-dipeptide"


def test_export_writes_a_trajectory(run_dir, tmp_path):
    out = tmp_path / "boltzmann.xtc"
    result = runner.invoke(app, ["export", str(run_dir / "samples.h5"), "--resampled", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    assert mdtraj.load(str(out), top=load_system("alanine-dipeptide").topology).n_frames == 20
    result = runner.invoke(app, ["export", str(run_dir / "samples.h5"), "--out", str(tmp_path / "weighted.pdb")])
    assert result.exit_code == 0 and (tmp_path / "weighted.weights.txt").is_file()
    assert f"its weights: {tmp_path / 'weighted.weights.txt'}" in " ".join(result.output.split())
    result = runner.invoke(app, ["export", str(run_dir / "samples.h5"), "--format", "gro"])
    assert isinstance(result.exception, BoltzflowError) and "dcd, xtc, pdb, h5" in str(result.exception)


def test_free_energy_prints_the_table_and_writes_json_and_plots(run_dir, tmp_path):
    result = runner.invoke(app, ["free-energy", str(run_dir), "--json", str(tmp_path / "report.json"),
                                 "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    for text in ("ESS (Kish)", "PSIS k̂", "log Z", "population alphaR", "effective", "±, [ ]", "report.json"):
        assert text in result.output, text
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["n"] == 200 and "samples.h5" in data["source"]
    # no --reference: the settled reference shipped with alanine-dipeptide, printed beside the estimate
    assert data["comparison"]["kind"] == "umbrella" and data["comparison"]["path"].endswith("shipped/alanine-dipeptide")
    reference = data["comparison"]["delta_f"]["phi_negative -> phi_positive"]
    assert reference["value"] == pytest.approx(5.83, abs=0.005) and reference["n"] == 6
    assert "reference 5.830 [5.750, 5.910]" in " ".join(result.output.replace("│", " ").split())  # cells wrap
    pairs = ["phi_negative -> phi_positive", "C7eq_beta -> alphaR", "C7eq_beta -> alphaL_C7ax"]  # declared order
    assert list(data["delta_f"]) == pairs
    assert all(f"ΔF {pair.replace('->', '→')}" in result.output for pair in pairs)
    names = ("ramachandran.png", "states.png", "pmf_phi.png", "pmf_psi.png")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(names)
    assert data["plots"] == [str(tmp_path / "plots" / name) for name in names]


def test_sample_writes_the_reports_figures_with_plots(run_dir, tmp_path):
    """sample --plots: the figures free-energy --plots writes for the same samples file and seed."""
    out = tmp_path / "samples.h5"
    result = runner.invoke(app, ["sample", str(run_dir), "-n", "100", "--batch-size", "64", "--seed", "4",
                                 "--out", str(out), "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    names = ["ramachandran.png", "states.png", "pmf_phi.png", "pmf_psi.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(names)
    assert f"plot: {tmp_path / 'plots' / 'states.png'}" in result.output.replace("\n", "")
    assert (tmp_path / "plots" / "states.png").read_bytes().startswith(b"\x89PNG")


def test_free_energy_with_a_reference_prints_json_to_stdout(run_dir, md_file):
    result = runner.invoke(app, ["free-energy", str(run_dir), "-n", "300", "--reference", str(md_file), "--json", "-"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == 300 and "drawn" in data["source"]
    comparison = data["comparison"]
    assert comparison["kind"] == "trajectory" and comparison["frames"] == 20
    assert set(comparison["marginal_kl"]) == {"phi", "psi"}
    assert set(comparison["ramachandran"]) == {"total_variation", "kl"}
    assert comparison["eubo"]["value"] is not None and comparison["forward_kl"]["value"] is not None


def test_free_energy_of_a_samples_file_shows_the_comparison_table(run_dir, md_file):
    result = runner.invoke(app, ["free-energy", str(run_dir / "samples.h5"), "--reference", str(md_file),
                                 "--keep-mirror"])
    assert result.exit_code == 0, result.output
    for text in ("flow vs reference", "KL phi marginal", "Ramachandran TV", "EUBO", "forward KL", "kept"):
        assert text in result.output, text


def test_help_shows_examples():
    for command in ("sample", "export", "free-energy"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Examples" in result.output and f"boltzflow {command}" in result.output


def test_a_user_error_is_one_red_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "boltzflow.cli.app", "free-energy", "missing.h5"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "error: samples file missing.h5 not found" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unwritable_outputs_are_one_line_errors_before_any_work(run_dir, tmp_path):
    """A folder that cannot hold files (/proc), a file where a folder should be, a folder
    where a file should be: each is an error naming the path, before sampling starts."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    cases = [
        ["sample", str(run_dir), "-n", "10", "--out", "/proc/boltzflow-test/s.h5"],
        ["sample", str(run_dir), "-n", "10", "--out", str(notes / "s.h5")],
        ["sample", str(run_dir), "-n", "10", "--out", str(tmp_path)],
        ["free-energy", str(run_dir), "-n", "10", "--plots", "/proc/boltzflow-test/figs"],
        ["free-energy", str(run_dir), "-n", "10", "--json", str(notes / "r.json")],
        ["train", "alanine-dipeptide", "--steps", "1", "--out", "/proc/boltzflow-test"],
        ["train", "alanine-dipeptide", "--steps", "1", "--out", str(notes / "run")],
    ]
    for args in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0, args
        assert isinstance(result.exception, BoltzflowError) and "cannot write" in str(result.exception), args
        assert "sampling" not in result.output and "training" not in result.output, args
    assert notes.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_second_sample_command_on_a_file_being_written_is_refused(run_dir, tmp_path, monkeypatch):
    """The first command is held after its first batch while a second process, given the same
    --out, runs: it exits 2 with one line naming the file, and the first one's file is whole."""
    out, second = tmp_path / "shared.h5", []
    write_samples = boltzflow.runs.write_samples

    def held_after_the_first_batch(*args, progress, **kwargs):
        def progress_then_second_command(done, total):
            progress(done, total)
            if not second:
                second.append(subprocess.run([sys.executable, "-m", "boltzflow.cli.app", "sample", str(run_dir), "-n",
                                              "10", "--seed", "9", "--out", str(out)], capture_output=True, text=True,
                                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300))

        return write_samples(*args, progress=progress_then_second_command, **kwargs)

    monkeypatch.setattr(boltzflow.runs, "write_samples", held_after_the_first_batch)
    result = runner.invoke(app, ["sample", str(run_dir), "-n", "100", "--batch-size", "50", "--seed", "4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    refused = second[0]
    error = refused.stderr.strip()
    assert refused.returncode == 2 and len(error.splitlines()) == 1, error
    assert error.startswith("error: the samples file") and str(out) in error and "being written by process" in error
    with h5py.File(out, "r") as f:
        assert f.attrs["seed"] == 4 and f["positions"].shape[0] == 100
    assert [p.name for p in tmp_path.iterdir()] == ["shared.h5"]  # no lock or temporary file left
