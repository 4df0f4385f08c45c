"""``boltzflow md`` and ``boltzflow umbrella`` with tiny budgets."""

import os
import signal
import sys

import h5py
import pytest
from typer.testing import CliRunner

import boltzflow.reference
from boltzflow.cli.app import app, main
from boltzflow.reference import load_umbrella

runner = CliRunner()


def test_md_command_writes_the_trajectory(tmp_path):
    out = tmp_path / "md.h5"
    result = runner.invoke(app, ["md", "alanine-dipeptide-vacuum", "--ns", "0.001", "--report-interval", "100",
                                 "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "wrote 10 frames" in result.output
    with h5py.File(out, "r") as f:
        assert f["coordinates"].shape == (10, 22, 3)


def test_umbrella_command_prints_delta_f_and_writes_the_pmf(tmp_path):
    result = runner.invoke(app, ["umbrella", "alanine-dipeptide-vacuum", "--cv", "phi", "--windows", "4", "--ps", "0.5",
                                 "--equilibration-ps", "0.05", "--out", str(tmp_path), "--bins", "24"])
    assert result.exit_code == 0, result.output
    assert "phi_negative → phi_positive" in result.output and "pmf.csv" in result.output
    assert (tmp_path / "pmf.csv").exists() and (tmp_path / "pmf.png").exists()


@pytest.fixture
def sigterm_exits():
    """SIGTERM exits with 143 as an unhandled one would, but without ending pytest."""
    previous = signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    yield
    signal.signal(signal.SIGTERM, previous)


def sigterm_halfway(run):
    """``run`` (run_md, run_umbrella) sending this process SIGTERM once, when its progress passes
    half; the signal is handled before ``os.kill`` returns, i.e. in the frame or window under way."""
    sent = []

    def wrapped(*args, progress, **kwargs):
        def progress_then_signal(done, total):
            progress(done, total)
            if done > total // 2 and not sent:
                sent.append(done)
                os.kill(os.getpid(), signal.SIGTERM)

        return run(*args, progress=progress_then_signal, **kwargs)

    return wrapped


def test_sigterm_in_a_window_exits_75_and_the_same_command_finishes(tmp_path, monkeypatch, sigterm_exits):
    run_umbrella = boltzflow.reference.run_umbrella
    arguments = ["umbrella", "alanine-dipeptide-vacuum", "--windows", "4", "--ps", "0.5", "--equilibration-ps",
                 "0.05", "--out", str(tmp_path), "--bins", "24", "--threads", "1"]
    monkeypatch.setattr(boltzflow.reference, "run_umbrella", sigterm_halfway(run_umbrella))  # in window 3
    result = runner.invoke(app, arguments)
    assert result.exit_code == 75, result.output
    assert "stopped by SIGTERM" in result.output and "run the same command again" in result.output
    assert load_umbrella(tmp_path)["cv"].shape == (2, 5)  # 100-step sampling interval
    assert [p.name for p in tmp_path.iterdir()] == ["umbrella.h5"]  # no temporary file left
    monkeypatch.setattr(boltzflow.reference, "run_umbrella", run_umbrella)
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert load_umbrella(tmp_path)["cv"].shape == (4, 5)


def test_sigterm_during_md_exits_75_and_the_same_command_finishes(tmp_path, monkeypatch, sigterm_exits):
    """A stop signal ends md after the frame under way (never inside a write) with exit 75; the
    same command continues from the checkpoint to the whole trajectory."""
    run_md = boltzflow.reference.run_md
    out = tmp_path / "md.h5"
    arguments = ["md", "alanine-dipeptide-vacuum", "--ns", "0.002", "--report-interval", "100", "--threads", "1",
                 "--out", str(out)]
    monkeypatch.setattr(boltzflow.reference, "run_md", sigterm_halfway(run_md))
    result = runner.invoke(app, arguments)
    assert result.exit_code == 75, result.output
    assert "stopped by SIGTERM" in result.output and not out.exists()
    monkeypatch.setattr(boltzflow.reference, "run_md", run_md)
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert len(f["time"]) == 20


def test_help_shows_examples_and_bad_input_is_a_user_error(tmp_path):
    for command in ("md", "umbrella"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and f"boltzflow {command} alanine-dipeptide" in result.output
    result = runner.invoke(app, ["umbrella", "alanine-dipeptide-vacuum", "--cv", "chi", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no dihedral 'chi'" in str(result.exception)


def test_2d_umbrella_command_reports_repeats_cost_and_the_plane(tmp_path):
    result = runner.invoke(app, ["umbrella", "alanine-dipeptide-vacuum", "--cv", "phi,psi", "--windows", "3",
                                 "--ps", "0.3", "--equilibration-ps", "0.03", "--repeats", "2", "--force-constant", "20",
                                 "--threads", "1",
                                 "--plane-bins", "12", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # rich wraps lines and table cells at the runner's 80 columns
    for text in ("phi_negative", "phi_positive", "C7eq_beta", "independent repeats", "phi ∈ [0°, 180°)",
                 "ns simulated", "threads: 1", "TV between repeats", "ramachandran.npz"):
        assert text in words, text


@pytest.mark.parametrize("arguments, message", [
    (["--cv", "phi,foo"], "no dihedral 'foo'"), (["--cv", "phi,psi", "--windows", "1"], "windows >= 2"),
])
def test_bad_umbrella_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, arguments,
                                                                   message):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["boltzflow", "umbrella", "alanine-dipeptide-vacuum", *arguments,
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    assert not out.exists()
