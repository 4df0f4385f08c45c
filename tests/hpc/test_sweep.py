"""Sweep files: expansion into runs, their `boltzflow train` arguments, the array script
(golden file, ``bash -n``), the sweep directory and the ``sweep`` command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError
from boltzflow.hpc import array_script, load_sweep, write_sweep
from boltzflow.hpc.sweep import train_args
from boltzflow.training.config import parse_assignment

HERE = Path(__file__).parent
GOLDEN = HERE / "golden" / "array.sbatch"
FAKE_TRAIN = HERE / "fake_train.py"
runner = CliRunner()

SWEEP = """
out = "sweeps/objectives"

[train]
system = "alanine-dipeptide"
steps = 2000
config = "base.toml"

[train.fab]
n_intermediate = 8

[grid]
objective = ["rkl", "fab"]
seed = [0, 1]
temperature = [300.0, 600.0]

[slurm]
time = "04:00:00"
partition = "gpu"
cpus_per_task = 4
mem = "16G"
gpus = 1
max_parallel = 3
sbatch = ["--constraint=a100"]
setup = ["module load cuda"]
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a sweep directory is relative to the current directory


def sweep_file(folder: Path, text: str = SWEEP, name: str = "objectives.toml") -> Path:
    (folder / "base.toml").write_text("[model]\nlayers = 4\n")  # the config file SWEEP names
    path = folder / name
    path.write_text(text)
    return path


def test_grid_expands_in_order_with_the_last_key_fastest(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path))
    assert sweep.out == (tmp_path / "sweeps" / "objectives").resolve()
    assert len(sweep.runs) == 8
    assert [(r.params["objective"], r.params["seed"], r.params["temperature"]) for r in sweep.runs[:3]] == [
        ("rkl", 0, 300.0), ("rkl", 0, 600.0), ("rkl", 1, 300.0)]
    assert sweep.runs[0].name == "objective-rkl_seed-0_temperature-300.0"
    assert sweep.runs[-1].name == "objective-fab_seed-1_temperature-600.0"
    assert sweep.run_dir(sweep.runs[0]) == sweep.out / sweep.runs[0].name


def test_train_arguments_use_options_where_they_exist_and_set_otherwise(tmp_path):
    run = load_sweep(sweep_file(tmp_path)).runs[-1]
    assert run.args == ("alanine-dipeptide", "--steps", "2000", "--config", str((tmp_path / "base.toml").resolve()),
                        "--objective", "fab", "--seed", "1", "--set", "fab.n_intermediate=8",
                        "--set", "temperature=600.0")


@pytest.mark.parametrize("value", [8, 600.0, 1e-5, True, "openmm", "600", [256, 256], "a b"])
def test_set_values_read_back_as_the_trainer_parses_them(value):
    args = train_args({"system": "x", "energy.backend": value}, Path("."))
    assert args[1] == "--set"
    assert parse_assignment(args[2]) == {"energy": {"backend": value}}


def test_out_defaults_to_the_file_name_and_can_be_overridden(tmp_path):
    path = sweep_file(tmp_path, '[train]\nsystem = "alanine-dipeptide"\n', "tiny.toml")
    sweep = load_sweep(path)
    assert sweep.out == (tmp_path / "runs" / "tiny").resolve()
    assert [r.name for r in sweep.runs] == ["run"]
    assert sweep.slurm.job_name == "tiny"
    assert load_sweep(path, out=tmp_path / "elsewhere").out == (tmp_path / "elsewhere").resolve()


def test_grid_tables_and_systems_in_the_grid(tmp_path):
    text = '[grid]\nsystem = ["alanine-dipeptide", "alanine-tetrapeptide"]\n[grid.fab]\nn_intermediate = [4, 8]\n'
    sweep = load_sweep(sweep_file(tmp_path, text))
    assert [r.name for r in sweep.runs][:2] == ["system-alanine-dipeptide_fab.n_intermediate-4",
                                               "system-alanine-dipeptide_fab.n_intermediate-8"]
    assert sweep.runs[3].args == ("alanine-tetrapeptide", "--set", "fab.n_intermediate=8")


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[train]\nsystem = "a"\n', "unknown key(s) name"),
    ('train = 3\n', "'train' must be a table"),
    ('out = 3\n[train]\nsystem = "a"\n', "out = 3 must be a directory path"),
    ('[train]\nsteps = 5\n', "no system"),
    ('[train]\nsystem = "a"\n[grid]\nseed = 1\n', "grid key 'seed' must be a non-empty list"),
    ('[train]\nsystem = "a"\n[grid]\nseed = []\n', "grid key 'seed' must be a non-empty list"),
    ('[train]\nsystem = "a"\nseed = 0\n[grid]\nseed = [1]\n', "seed given both in [train] and in [grid]"),
    ('[train]\nsystem = "a"\n[grid]\ndata = ["a b", "a/b"]\n', "share the directory name 'data-a-b'"),
    ('[train]\nsystem = "a"\n[grid]\nsteps = [10, 0]\n', "run steps-0: setting 'steps' = 0: expected a positive"),
    ('[train]\nsystem = "a"\n[grid]\n"fab.n_intermediat" = [4]\n', "unknown setting 'fab.n_intermediat'"),
    ('[train]\nsystem = "a"\nsteps = 1.5\n', "'steps' must be int"),
    ('[train]\nsystem = "a"\n[slurm]\nwalltime = "1:00:00"\n', "unknown [slurm] key 'walltime'"),
    ('[train]\nsystem = "a"\n[slurm]\ncpus_per_task = 0\n', "cpus_per_task = 0 must be an integer >= 1"),
    ('[train]\nsystem = "a"\n[slurm]\ngpus = "1"\n', "gpus = '1' must be an integer >= 0"),
    ('[train]\nsystem = "a"\n[slurm]\nsetup = "module load cuda"\n', "must be a list of strings"),
    ('[train]\nsystem = "a"\n[slurm]\npartition = 3\n', "partition = 3 must be a string"),
])
def test_mistakes_in_a_sweep_file_are_user_errors(tmp_path, text, message):
    with pytest.raises(BoltzflowError) as info:
        load_sweep(sweep_file(tmp_path, text))
    assert message in str(info.value)


def test_array_script_matches_the_golden_file_and_parses(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path))
    script = array_script(sweep).replace(str(tmp_path.resolve()), "/TMP")
    assert script == GOLDEN.read_text()
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_dry_run_writes_only_the_script_and_a_full_run_the_run_directories(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path))
    script = write_sweep(sweep, dry_run=True)
    assert script == sweep.out / "array.sbatch" and (sweep.out / "logs").is_dir()
    assert sorted(p.name for p in sweep.out.iterdir()) == ["array.sbatch", "logs"]
    write_sweep(sweep)
    record = json.loads((sweep.run_dir(sweep.runs[5]) / "sweep.json").read_text())
    assert record["params"] == sweep.runs[5].params and record["args"] == list(sweep.runs[5].args)
    write_sweep(sweep)  # again: same directories, same script
    assert len([p for p in sweep.out.iterdir() if p.is_dir()]) == 8 + 1


def fake_sbatch(folder: Path, monkeypatch, status: int = 0) -> Path:
    """An ``sbatch`` on PATH that records its arguments and answers like ``--parsable``."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    answer = 'echo "4242;cluster"' if status == 0 else 'echo "sbatch: error: invalid partition" >&2'
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {folder}/sbatch.log\n{answer}\nexit {status}\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return folder / "sbatch.log"


def test_sweep_command_writes_and_submits(tmp_path, monkeypatch):
    log = fake_sbatch(tmp_path, monkeypatch)
    path = sweep_file(tmp_path)
    result = runner.invoke(app, ["sweep", str(path), "--submit"])
    assert result.exit_code == 0, result.output
    assert "submitted array job 4242" in result.output and "objective-fab_seed-1_temperature-600.0" in result.output
    script = tmp_path / "sweeps" / "objectives" / "array.sbatch"
    assert log.read_text().split() == ["--parsable", str(script.resolve())]

    result = runner.invoke(app, ["sweep", str(path), "--dry-run", "--out", str(tmp_path / "other")])
    assert result.exit_code == 0, result.output
    assert f"sbatch {(tmp_path / 'other' / 'array.sbatch').resolve()}" in result.output.replace("\n", "")
    assert len(log.read_text().splitlines()) == 1


def test_sweep_command_reports_sbatch_failures_and_conflicting_flags(tmp_path, monkeypatch):
    fake_sbatch(tmp_path, monkeypatch, status=1)
    path = sweep_file(tmp_path)
    result = runner.invoke(app, ["sweep", str(path), "--submit"])
    assert isinstance(result.exception, BoltzflowError)
    assert "invalid partition" in str(result.exception)
    result = runner.invoke(app, ["sweep", str(path), "--submit", "--dry-run"])
    assert "exclude each other" in str(result.exception)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig, requeued", [(signal.SIGUSR1, True), (signal.SIGTERM, False)])
def test_array_task_passes_signals_on_and_requeues_after_the_warning(tmp_path, sig, requeued):
    """The generated script outside Slurm: a fake trainer and an ``scontrol`` that records."""
    text = (f'[train]\nsystem = "toy"\nsteps = 40\n[grid]\nseed = [0, 1]\n'
            f'[slurm]\ncommand = "{sys.executable} {FAKE_TRAIN}"\n')
    sweep = load_sweep(sweep_file(tmp_path, text))
    script = write_sweep(sweep)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_JOB_ID": "77", "SLURM_JOB_ID": "79"}
    run = sweep.run_dir(sweep.runs[1])
    job = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size, 20,
                 "the fake training to start")
        job.send_signal(sig)
        output, _ = job.communicate(timeout=20)
    finally:
        job.kill()
    assert job.returncode == 75, output
    assert json.loads((run / "summary.json").read_text())["stopped"] == "signal"
    calls = (tmp_path / "scontrol.log").read_text() if requeued else ""
    assert calls == ("requeue 77_1\n" if requeued else "")
    assert not (sweep.run_dir(sweep.runs[0])).joinpath("metrics.jsonl").exists()

    # the requeued task runs the same script again and resumes its run
    again = subprocess.run(["bash", str(script)], env={**env, "SLURM_RESTART_COUNT": "1"},
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 0, again.stdout + again.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))
    assert "restart 1" in again.stdout
