"""Data-parallel training: 2 processes (torchrun, gloo on the CPU) train the model that 1
process with 2 shards trains; shards resume exactly; launch environments are read right."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.io import load_checkpoint
from boltzflow.training.config import resolve_config
from boltzflow.training.settings import Settings
from boltzflow.training.distributed import Launch, environment, first_host
from boltzflow.training.run import _shard_sizes, train

# annealing off: its stages, like the learning-rate schedule, follow the total steps, which
# the resume below changes (the test stays within the warm-up for the same reason)
TINY = ["log_every=1", "eval_batch_size=32", "final_samples=64", "model.layers=2", "model.hidden=[16]",
        "anneal.start=0"]


def tiny(steps, shards, objective="rkl", *extra):
    return resolve_config("alanine-dipeptide", options={"objective": objective, "steps": steps, "batch_size": 16},
                          assignments=TINY + [f"shards={shards}", *extra])


def metrics(run_dir):
    """metrics.jsonl without wall times."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


def model(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, timeout=180):
    """``boltzflow train ARGS`` as 2 processes under torchrun; returns (exit code, output)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "boltzflow.cli.app", "train", "alanine-dipeptide", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out


def test_two_processes_train_what_one_process_with_two_shards_trains(tmp_path):
    one = train(tiny(4, 2), tmp_path / "one")
    code, out = torchrun("--steps", "4", "--batch-size", "16", "--out", str(tmp_path / "two"),
                         *[a for s in TINY for a in ("--set", s)])
    assert code == 0, out
    assert out.count("target evaluations") == 1  # rank 0 alone prints
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in b] == [1, 2, 3, 4]  # one writer
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
        assert y["evaluations"] == x["evaluations"] == 16 * x["step"]  # global counts
    for key, value in model(tmp_path / "one").items():
        torch.testing.assert_close(model(tmp_path / "two")[key], value, rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["stopped"] == "done" and summary["evaluations"] == one["evaluations"] == 64
    streams = [s["rng"]["cpu"] for s in load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["shards"]]
    assert len(streams) == 2 and not torch.equal(*streams)

    # the 2-process checkpoint resumes in 1 process × 2 shards (steps within the warm-up: same learning rates)
    resumed = train(tiny(6, 2), tmp_path / "two", resume=True)
    whole = train(tiny(6, 2), tmp_path / "whole")
    assert resumed["evaluations"] == whole["evaluations"] == 96
    assert [r["loss"] for r in metrics(tmp_path / "two")] == pytest.approx([r["loss"] for r in metrics(tmp_path / "whole")],
                                                                        rel=1e-5)
    for key, value in model(tmp_path / "whole").items():
        torch.testing.assert_close(model(tmp_path / "two")[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("objective, extra", [
    ("rkl", ()),
    ("fab", ("fab.n_intermediate=2", "fab.n_leapfrog=2", "fab.buffer_batches=4", "fab.updates_per_ais=2")),
    ("snf", ("snf.layers=2",)),
    ("rkl", ("anneal.start=900.0", "anneal.stages=3", "anneal.samples=64")),
])
def test_two_shards_resume_exactly(tmp_path, objective, extra):
    config = tiny(6, 2, objective, *extra)
    whole = train(config, tmp_path / "whole")
    first = train(config, tmp_path / "split", on_step=lambda step, _: step == 3 and os.kill(os.getpid(), signal.SIGUSR1))
    assert first["stopped"] == "signal" and first["step"] == 3
    second = train(config, tmp_path / "split", resume=True)
    assert second["evaluations"] == whole["evaluations"]
    steps = lambda run_dir: [(r["loss"], r["evaluations"], r["eval_ess"]) for r in metrics(run_dir)]  # noqa: E731
    assert steps(tmp_path / "split") == steps(tmp_path / "whole")
    a, b = model(tmp_path / "whole"), model(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_needs_as_many_shards(tmp_path):
    assert train(tiny(2, 2), tmp_path)["evaluations"] == 32
    with pytest.raises(BoltzflowError, match=r"holds 2 shard\(s\), this run has 1 process\(es\) × 1 shard"):
        train(tiny(4, 1), tmp_path, resume=True)


def test_a_batch_must_divide_into_the_shards():
    with pytest.raises(BoltzflowError, match="batch_size"):
        tiny(2, 3)
    config = Settings.from_config(tiny(2, 2, "rkl", "batch_size=18", "anneal.samples=65"))
    assert _shard_sizes(config, 1) == (9, 33)
    with pytest.raises(BoltzflowError, match=r"not divisible by 2 process\(es\) × 2 shard"):
        _shard_sizes(config, 2)


def test_launch_environments():
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    assert environment(torchrun) == Launch(1, 2, 1, "10.0.0.1", "29400")
    srun = {"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
            "SLURM_STEP_NODELIST": "gpu[07-08,11]", "SLURM_JOB_ID": "123456"}
    assert environment(srun) == Launch(5, 8, 1, "gpu07", str(20000 + 123456 % 20000))
    assert environment(dict(srun, MASTER_ADDR="head", MASTER_PORT="1234")).master_addr == "head"
    batch_shell = {"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert environment(batch_shell) is None and environment({}) is None
    assert environment(dict(torchrun, RANK="0", WORLD_SIZE="1")) is None
    assert first_host("node01") == "node01"
    assert first_host("rack[2-3]-n[010,012],login1") == "rack2-n010"
