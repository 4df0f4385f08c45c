"""The command-line interface: help, examples, and user errors without tracebacks."""

import subprocess
import sys

from typer.testing import CliRunner

from boltzflow.cli.app import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("info", "example"):
        assert command in result.output


def test_info_shows_versions():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "torch" in result.output and "openmm" in result.output


def test_example_runs_and_reports_the_fit():
    result = runner.invoke(app, ["example", "first-flow", "--steps", "20"])
    assert result.exit_code == 0, result.output
    assert "mean" in result.output and "variance" in result.output


def test_unknown_example_is_one_line_error_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "boltzflow.cli.app", "example", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown example 'nope'" in proc.stderr and "first-flow" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
