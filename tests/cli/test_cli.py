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


def heavy_modules_of(*argv: str) -> tuple[str, list]:
    """``boltzflow ARGV`` in a fresh interpreter: its output, and which of torch, openmm and mdtraj it imported."""
    code = ("import sys\nfrom boltzflow.cli.app import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('heavy:', [m for m in ('torch', 'openmm', 'mdtraj') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    output, _, heavy = proc.stdout.rpartition("heavy: ")
    return output, eval(heavy)


def test_listing_systems_reads_their_files_only():
    """No OpenMM system is built and torch is not imported (listing took 3-5 s, now well under 1 s)."""
    from boltzflow.catalog import system_descriptions
    from boltzflow.systems import load_system

    output, heavy = heavy_modules_of("systems")
    assert heavy == [] and "alanine-hexapeptide" in output and "180" in output  # 62 atoms: 180 dimensions
    for name in ("alanine-dipeptide", "alanine-tetrapeptide-hbonds"):  # what the loaded systems say of them
        _, atoms, dimensions = system_descriptions()[name]
        system = load_system(name)
        assert (atoms, dimensions) == (system.n_atoms, system.internal_coordinates().dim)


def test_info_imports_torch_only_to_ask_a_gpu_build_for_devices():
    import torch

    output, heavy = heavy_modules_of("info")
    if torch.version.cuda is None and torch.version.hip is None:
        assert "torch" not in heavy and f"{torch.__version__} (CUDA not available: a CPU-only build)" in output
    else:
        assert "torch" in heavy and "CUDA" in output
    assert "openmm" in output
