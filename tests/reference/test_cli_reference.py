"""``boltzflow md`` and ``boltzflow umbrella`` with tiny budgets."""

import h5py
from typer.testing import CliRunner

from boltzflow.cli.app import app

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
                                 "--out", str(tmp_path), "--bins", "24"])
    assert result.exit_code == 0, result.output
    assert "phi_negative → phi_positive" in result.output and "pmf.csv" in result.output
    assert (tmp_path / "pmf.csv").exists() and (tmp_path / "pmf.png").exists()


def test_help_shows_examples_and_bad_input_is_a_user_error(tmp_path):
    for command in ("md", "umbrella"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and f"boltzflow {command} alanine-dipeptide" in result.output
    result = runner.invoke(app, ["umbrella", "alanine-dipeptide-vacuum", "--cv", "chi", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no dihedral 'chi'" in str(result.exception)
