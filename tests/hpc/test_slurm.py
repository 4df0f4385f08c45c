"""On a real (throwaway, one-node) Slurm cluster: a sweep's array job of two tiny training runs,
one warned as before its time limit (it checkpoints and requeues itself), one requeued by
Slurm as by preemption; both resume and finish, then ``collect``. And the train → sample →
free-energy chain of dependent jobs."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boltzflow.cli.app import app

from .slurm_cluster import slurm_cluster, unavailable
from .test_templates import WORKFLOWS

runner = CliRunner()

# How the jobs call boltzflow: this interpreter, so that they need no `boltzflow` on PATH.
BOLTZFLOW = f"{sys.executable} -m boltzflow.cli.app"
STEPS = 30
SWEEP = f"""
[train]
system = "alanine-dipeptide"
steps = {STEPS}
batch_size = 16
eval_batch_size = 64
final_samples = 256
log_every = 5
model.layers = 2
model.hidden = [32]

[grid]
seed = [0, 1]

[slurm]
time = "10:00"
command = "{BOLTZFLOW}"
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture
def on_cluster(slurm, tmp_path, monkeypatch):
    """Run from ``tmp_path`` with Slurm commands pointed at the test cluster."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    monkeypatch.chdir(tmp_path)
    return slurm


def test_array_tasks_resume_after_a_warning_signal_and_a_preemption_then_collect(on_cluster, tmp_path):
    slurm = on_cluster
    (tmp_path / "tiny.toml").write_text(SWEEP)
    result = runner.invoke(app, ["sweep", "tiny.toml", "--submit"])
    assert result.exit_code == 0, result.output
    job = re.search(r"submitted array job (\d+)", result.output).group(1)
    sweep = tmp_path / "runs" / "tiny"
    runs = [sweep / "seed-0", sweep / "seed-1"]

    # once both train (their signal handlers are set): task 0 gets what --signal=B:USR1@120
    # sends before the time limit, and requeues itself; task 1 is requeued by Slurm, as by
    # preemption (TERM, then KILL after KillWait)
    for run in runs:
        metrics = run / "metrics.jsonl"
        slurm.wait(lambda: metrics.is_file() and metrics.stat().st_size > 0, 120, f"{run.name} to log a step")
    slurm("scancel", "--signal=USR1", "--batch", f"{job}_0")
    slurm("scontrol", "requeue", f"{job}_1")
    tasks = [f"{job}_0", f"{job}_1"]
    states = slurm.wait_for_jobs(tasks, timeout=240)
    logs = [(sweep / "logs" / f"{i}.out").read_text() for i in (0, 1)]
    assert set(states.values()) == {"COMPLETED"}, (states, logs)

    assert [slurm.job(task)["Restarts"] for task in tasks] == ["1", "1"]
    assert f"requeueing job {job}_0" in logs[0] and "requeueing" not in logs[1], logs
    for run, log in zip(runs, logs):
        assert "restart 1:" in log, log
        summary = json.loads((run / "summary.json").read_text())
        assert (summary["stopped"], summary["step"]) == ("done", STEPS), summary
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(5, STEPS + 1, 5)), steps  # resumed from the checkpoint, not restarted

    result = runner.invoke(app, ["collect", str(sweep), "-m", "loss", "-m", "evaluations"])
    assert result.exit_code == 0, result.output
    # the final loss differs between the seeds; both runs drew STEPS batches of 16, across the requeue too
    assert re.search(rf"\| alanine-dipeptide \| rkl \| 2 \| \S+ ± \S+ \| {STEPS * 16} \|", result.stdout), result.stdout


def test_chain_runs_train_sample_and_free_energy_in_order_as_the_user(on_cluster, tmp_path):
    slurm = on_cluster
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a stand-in boltzflow: records who ran which command; free-energy writes JSON to its --json
    # file, the last argument (the real commands are run in tests/hpc/test_templates.py)
    (bin_dir / "boltzflow").write_text(f'#!/bin/bash\necho "$(id -u) $1" >> {tmp_path}/calls.log\n'
                                       '[ "$1" != free-energy ] || echo \'{"ok": true}\' > "${@: -1}"\n')
    (bin_dir / "boltzflow").chmod(0o755)
    env = {**slurm.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SAMPLES": "10"}
    proc = subprocess.run(["bash", str(WORKFLOWS / "chain.sh"), "ala", "alanine-dipeptide"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    jobs = re.findall(r"\d+", proc.stdout)
    assert len(jobs) == 3, proc.stdout
    states = slurm.wait_for_jobs(jobs, timeout=60)
    assert set(states.values()) == {"COMPLETED"}, states
    uid = os.getuid()
    assert all(Path(f"/proc/{pid}").stat().st_uid == 0 for pid in slurm.pids)  # the daemons run as root
    assert (tmp_path / "calls.log").read_text().split("\n")[:3] == [f"{uid} train", f"{uid} sample", f"{uid} free-energy"]
    assert json.loads((tmp_path / "runs" / "ala" / "free-energy.json").read_text()) == {"ok": True}
    assert (tmp_path / "runs" / "ala" / "slurm.out").is_file()
