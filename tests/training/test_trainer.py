"""The trainer: exact resume, stop signals, time limit, non-finite steps; reverse KL on the cylinder."""

import json
import math
import os
import signal

import pytest
import torch

from boltzflow.energy.toys import Cylinder, ShiftedGaussian
from boltzflow.errors import BoltzflowError
from boltzflow.flows import spline_flow
from boltzflow.io import load_checkpoint
from boltzflow.training import Schedule, Trainer, forward_kl, parse_duration, reverse_kl


def make_trainer(run_dir, steps=12, seed=0, **schedule):
    torch.manual_seed(seed)
    target = ShiftedGaussian()
    flow = spline_flow(target.domains, layers=2, bins=4, hidden=(16,))
    loss_fn = lambda step: reverse_kl(flow, lambda x: -target(x), 32)
    options = {"checkpoint_every": 5, "log_every": 1, **schedule}
    return Trainer(flow, loss_fn, Schedule(steps=steps, lr=1e-2, warmup=3, **options), run_dir,
                   config={"seed": seed})


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Crash(Exception):
    pass


def crash_at(step):
    def on_step(current, _):
        if current == step:
            raise Crash
    return on_step


@pytest.mark.parametrize("stop", ["signal", "crash"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, stop):
    whole = make_trainer(tmp_path / "whole")
    assert whole.run()["stopped"] == "done"
    split = make_trainer(tmp_path / "split")
    if stop == "signal":     # checkpoint written at step 7
        split.run(on_step=lambda step, _: step == 7 and os.kill(os.getpid(), signal.SIGUSR1))
    else:                    # dies at step 7: the checkpoint of step 5 is what is left
        with pytest.raises(Crash):
            split.run(on_step=crash_at(7))
    assert not (tmp_path / "split" / "model.pt").exists()
    resumed = make_trainer(tmp_path / "split", seed=99)  # state must come from disk, not the seed
    assert resumed.run(resume=True)["step"] == 12
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert (tmp_path / "split" / "model.pt").is_file()


def test_metrics_are_logged_once_after_a_kill_before_the_first_checkpoint(tmp_path):
    """Killed at step 3, before the first checkpoint (step 5): starting again logs steps 1…12 once."""
    with pytest.raises(Crash):
        make_trainer(tmp_path).run(on_step=crash_at(3))
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    make_trainer(tmp_path).run()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_resume_cuts_a_torn_last_metrics_line(tmp_path):
    """A kill in the middle of a write leaves half a line; resuming cuts it with the later steps."""
    with pytest.raises(Crash):
        make_trainer(tmp_path).run(on_step=crash_at(7))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "loss": 1.2')
    assert make_trainer(tmp_path).run(resume=True)["step"] == 12
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BoltzflowError, match="no checkpoint"):
        make_trainer(tmp_path).run(resume=True)


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, steps=1000)
    summary = trainer.run(on_step=lambda step, _: step == 4 and os.kill(os.getpid(), signal.SIGTERM))
    assert summary["stopped"] == "signal" and summary["signal"] == "SIGTERM" and summary["step"] == 4
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4
    assert not (tmp_path / "model.pt").exists()


def test_time_limit_stops_cleanly(tmp_path):
    trainer = make_trainer(tmp_path, steps=10**6, time_limit=5.5)
    summary = trainer.run()
    assert summary["stopped"] == "time-limit" and summary["wall_time"] < 5.5
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == summary["step"]


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    trainer = make_trainer(tmp_path, steps=6)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.loss_fn = lambda step: (sum(p.sum() for p in trainer.model.parameters()) * math.nan, {})
    summary = trainer.run()
    assert summary["skipped"] == 6
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_forward_kl_excludes_points_outside_the_support():
    flow = spline_flow([Cylinder().domains[0], Cylinder().domains[1]], layers=1, bins=4, hidden=(8,))
    data = torch.tensor([[0.0, 0.5], [1.0, float("nan")]])
    loss, stats = forward_kl(flow, data)
    assert torch.isfinite(loss) and stats["excluded"] == 1


@pytest.mark.parametrize("text, seconds", [("3h50m", 13800), ("90m", 5400), ("45s", 45), ("1:30:00", 5400), ("600", 600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_a_finite_gradient_whose_norm_overflows_float32_is_clipped_not_skipped():
    from boltzflow.training.trainer import clip_gradients

    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3e38, 3e38, 1.0, 1.0])       # float32 norm: inf
    assert clip_gradients([p], 100.0)
    torch.testing.assert_close(p.grad.double().norm(), torch.tensor(100.0, dtype=torch.float64))
    p.grad = torch.tensor([math.inf, 1.0, 1.0, 1.0])
    assert not clip_gradients([p], 100.0)
