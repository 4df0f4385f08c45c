"""Training runs of alanine dipeptide end to end: CLI, run directory, exact resume, signals,
time limit, maximum likelihood from a trajectory file, loading a trained run."""

import json
import os
import signal
import subprocess
import sys
import time

import mdtraj
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError
from boltzflow.io import load_checkpoint, read_toml, write_toml
from boltzflow.reference.trajectory import append_frames, create_trajectory
from boltzflow.systems import load_system
from boltzflow.training.config import resolve_config
from boltzflow.training.run import EARLY_STOP_EXIT_CODE, build_run, load_run, train
from boltzflow.training.settings import Settings

TINY = ["log_every=1", "eval_batch_size=32", "final_samples=64", "model.layers=2", "model.hidden=[16]"]


def tiny(objective="rkl", *extra):
    return resolve_config("alanine-dipeptide", options={"objective": objective, "steps": 6, "batch_size": 16},
                          assignments=TINY + list(extra))


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_smoke_writes_the_run_directory(tmp_path):
    out = tmp_path / "tmp"
    result = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "3", "--batch-size", "16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("config.toml", "metrics.jsonl", "checkpoints/last.pt", "model.pt", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "done" and summary["step"] == 3 and summary["evaluations"] == 3 * 16
    assert "ESS" in result.output
    again = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "3", "--out", str(out)])
    assert again.exit_code != 0 and "pass --resume" in str(again.exception)


@pytest.mark.parametrize("objective, extra", [
    ("rkl", ()),
    ("fab", ("fab.n_intermediate=2", "fab.n_leapfrog=2", "fab.buffer_batches=4", "fab.updates_per_ais=2")),
    ("snf", ("snf.layers=2",)),
    ("rkl", ("anneal.start=900.0", "anneal.stages=3", "anneal.samples=64", 'anneal.refit="ml"')),
    ("rkl", ("anneal.start=900.0", "anneal.stages=3", 'anneal.refit="objective"', "rkl.forward_weight=0.5")),
])
def test_resumed_run_equals_uninterrupted_run(tmp_path, objective, extra):
    config = tiny(objective, *extra)
    whole = train(config, tmp_path / "whole")
    assert whole["stopped"] == "done"

    def stop_at_3(step, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)

    first = train(config, tmp_path / "split", on_step=stop_at_3)
    assert first["stopped"] == "signal" and first["step"] == 3
    second = train(config, tmp_path / "split", resume=True)
    assert second["stopped"] == "done" and second["evaluations"] == whole["evaluations"]
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_configuration(tmp_path):
    config = tiny()
    train(config, tmp_path, on_step=lambda step, _: step == 2 and os.kill(os.getpid(), signal.SIGUSR1))
    with pytest.raises(BoltzflowError, match="differs in lr"):
        train(dict(config, lr=1.0), tmp_path, resume=True)
    assert train(dict(config, steps=8), tmp_path, resume=True)["step"] == 8


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    summary = train(tiny("rkl", 'time_limit="1s"'), tmp_path)
    assert summary["stopped"] == "time-limit" and summary["step"] < 6
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == summary["step"]
    assert not (tmp_path / "model.pt").exists()


def test_sigterm_leaves_a_loadable_checkpoint_and_exit_code_75(tmp_path):
    command = [sys.executable, "-m", "boltzflow.cli.app", "train", "alanine-dipeptide", "--steps", "100000",
               "--batch-size", "16", "--out", str(tmp_path)] + [a for s in TINY for a in ("--set", s)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "metrics.jsonl").is_file():
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == EARLY_STOP_EXIT_CODE, err
    step = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"]
    assert step >= 1
    assert json.loads((tmp_path / "summary.json").read_text())["stopped"] == "signal"


@pytest.mark.parametrize("name", ["md.h5", "md.dcd"])
def test_maximum_likelihood_from_a_trajectory_file(tmp_path, name):
    system = load_system("alanine-dipeptide")
    rng = np.random.default_rng(0)
    frames = (system.positions[None] + 0.002 * rng.standard_normal((40, system.n_atoms, 3))).astype(np.float32)
    if name.endswith(".h5"):   # the format of boltzflow md
        create_trajectory(tmp_path / name, system.topology)
        append_frames(tmp_path / name, frames, np.arange(40.0), np.zeros(40))
    else:
        mdtraj.Trajectory(frames, system.topology).save_dcd(str(tmp_path / name))
    config = tiny("ml", f'data="{tmp_path / name}"')
    summary = train(config, tmp_path / "run")
    assert summary["stopped"] == "done"
    assert all(np.isfinite(losses(tmp_path / "run")))
    with pytest.raises(BoltzflowError, match="not found"):
        train(tiny("ml", f'data="{tmp_path / "none.h5"}"'), tmp_path / "run2")


def test_load_run_rebuilds_the_trained_model(tmp_path):
    config = tiny()
    train(config, tmp_path)
    run = load_run(tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in state.items())
    samples = run.draw_batches(40, 16)
    assert samples["xyz"].shape == (40, 22, 3) and samples["log_w"].shape == (40,)
    with pytest.raises(BoltzflowError, match="not a run directory"):
        load_run(tmp_path / "checkpoints")


def test_a_run_from_before_the_thermal_base_loads_as_it_was_trained(tmp_path):
    """config.toml files written before ``model.base`` existed describe uniform-base runs,
    and those written before ``model.rotor_sectors`` runs over the methyls' full turn."""
    train(tiny("rkl", 'model.base="uniform"', "model.rotor_sectors=true"), tmp_path)
    config = read_toml(tmp_path / "config.toml")
    assert config["model"]["rotor_sectors"] is True
    del config["model"]["base"], config["model"]["rotor_sectors"]
    write_toml(tmp_path / "config.toml", config)
    run = load_run(tmp_path)
    assert run.config["model"]["base"] == "uniform" and run.config["model"]["rotor_sectors"] is False
    assert run.coordinates.rotors == [] and build_run(Settings.from_config(tiny())).coordinates.rotors == []
    assert run.flow.base.families["interval"] == "uniform"
    scale = run.coordinates.normalization.bond_scale
    assert scale.std() == 0 and scale[0].item() == pytest.approx(0.004, rel=1e-6)  # float32 run
    thermal = load_run_with_base(tmp_path, "thermal")
    assert thermal.flow.base.families["interval"] == "normal"
    assert thermal.coordinates.normalization.bond_scale.std() > 0


def load_run_with_base(run_dir, base):
    config = read_toml(run_dir / "config.toml")
    config["model"]["base"] = base
    write_toml(run_dir / "config.toml", config)
    return load_run(run_dir)


def test_literature_preset_targets_cuda_and_runs_on_the_cpu_when_told(tmp_path):
    """The published model and budget ask for CUDA and the compiled force field; here it is
    refused with a one-line error, and runs (two steps, eager energies) with --device cpu."""
    if not torch.cuda.is_available():
        refused = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--preset", "literature",
                                           "--out", str(tmp_path / "gpu")])
        assert refused.exit_code != 0 and "CUDA is not available" in str(refused.exception)
        assert not (tmp_path / "gpu").exists()
    config = resolve_config("alanine-dipeptide", "literature", options={"device": "cpu", "steps": 2, "batch_size": 16},
                            assignments=["energy.compile=false", "eval_batch_size=32", "final_samples=64"])
    assert config["model"]["layers"] == 12 and config["model"]["hidden"] == [256, 256]
    summary = train(config, tmp_path / "cpu")
    assert summary["stopped"] == "done" and summary["evaluations"] == 32


def test_progress_without_a_terminal_is_plain_log_lines(tmp_path):
    """Output to a file or a Slurm log gets a line per logged step (at most every 30 s, and the
    last), with the held-out ESS labelled by its sample count."""
    result = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "4", "--batch-size", "16",
                                      "--out", str(tmp_path / "run"), "--set", "log_every=2",
                                      "--set", "eval_batch_size=32", "--set", "final_samples=64"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 2/4") and lines[-1].startswith("step 4/4")
    assert "ESS" in lines[-1] and "of 32" in lines[-1] and "evals 64" in lines[-1]
    # four steps leave the ESS low: the answer names the correction that improves it
    assert f"boltzflow sample {tmp_path / 'run'} -n 100000 --ais 16" in result.output


@pytest.mark.parametrize("args, message", [
    (["alanine-dipeptid"], "unknown system 'alanine-dipeptid'"),
    (["alanine-dipeptide", "--time-limit", "3 hours"], "cannot read the duration"),
    (["alanine-dipeptide", "--device", "cuda"], "CUDA is not available"),
])
def test_bad_input_fails_before_anything_is_announced_or_written(tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", *args, "--steps", "1", "--out", str(out)])
    assert result.exit_code != 0 and message in str(result.exception)
    assert "training" not in result.output and not out.exists()


def test_training_on_an_openmm_worker_pool(tmp_path):
    """``energy.backend = "openmm"`` with ``energy.workers``: the same run on OpenMM contexts in
    worker processes, the pool closed with the run; a negative count is refused."""
    config = tiny("rkl", 'energy.backend="openmm"', "energy.workers=2")
    summary = train(config, tmp_path / "run")
    assert summary["stopped"] == "done" and np.isfinite(losses(tmp_path / "run")).all()
    with pytest.raises(BoltzflowError, match="energy.workers"):
        tiny("rkl", "energy.workers=-1")


def test_threads_are_a_setting_that_may_change_on_resume(tmp_path):
    out = str(tmp_path / "run")
    common = ["train", "alanine-dipeptide", "--batch-size", "16", "--out", out, "--set", "final_samples=64",
              "--set", "eval_batch_size=32"]
    before = torch.get_num_threads()
    try:
        first = CliRunner().invoke(app, [*common, "--steps", "2", "--threads", "1"])
        assert first.exit_code == 0, first.output
        assert read_toml(tmp_path / "run" / "config.toml")["threads"] == 1 and torch.get_num_threads() == 1
        again = CliRunner().invoke(app, [*common, "--steps", "3", "--threads", "2", "--resume"])
        assert again.exit_code == 0, again.output
        assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 3
    finally:
        torch.set_num_threads(before)


def test_a_folder_of_the_users_is_never_written_into(tmp_path):
    """--out naming a non-empty folder that is not a run is refused before anything happens;
    a run's own folder (even one stopped before its first checkpoint) is accepted."""
    mine = tmp_path / "D"
    mine.mkdir()
    (mine / "config.toml").write_text("x\n")
    result = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "2", "--batch-size", "16",
                                      "--out", str(mine)])
    assert result.exit_code != 0 and "not a boltzflow run directory" in str(result.exception)
    assert (mine / "config.toml").read_text() == "x\n" and sorted(p.name for p in mine.iterdir()) == ["config.toml"]
    run = tmp_path / "run"
    write_toml(run / "config.toml", tiny())  # as a run killed before its first checkpoint leaves it
    assert train(tiny(), run)["stopped"] == "done"


def test_resume_continues_the_run_as_it_was_configured(tmp_path):
    """After 'train --steps 6 --batch-size 16 --time-limit 1s' stops early, the printed
    'continue with' command (no options) resumes a 6-step run of batch 16, not the preset's."""
    out = tmp_path / "H"
    first = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "6", "--batch-size", "16",
                                     "--time-limit", "1s", "--out", str(out), "--set", "checkpoint_every=1",
                                     "--set", "final_samples=64", "--set", "eval_batch_size=32"])
    assert first.exit_code == EARLY_STOP_EXIT_CODE, first.output
    hint = first.output.split("continue with: ", 1)[1].split()
    assert hint[:2] == ["boltzflow", "train"] and hint[-1] == "--resume"
    again = CliRunner().invoke(app, hint[1:])
    assert again.exit_code == 0, again.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["evaluations"] == 6 * 16


def test_learning_rates_that_break_training_are_refused_or_reported(tmp_path):
    with pytest.raises(BoltzflowError, match="'lr' = inf: expected a finite number"):
        resolve_config("alanine-dipeptide", assignments=["lr=inf"])
    # lr 1 without warm-up: the steps that are not finite make the run fail, never 'done'
    config = tiny("rkl", "lr=1.0", "warmup=0", "anneal.start=0")
    config["steps"] = 20
    try:
        summary = train(config, tmp_path)
    except BoltzflowError as error:
        assert "training failed" in str(error)
    else:  # clipped in float64, every step stayed finite: the model must be too
        assert summary["skipped"] <= summary["step"] / 2
        assert all(torch.isfinite(v).all() for v in torch.load(tmp_path / "model.pt", weights_only=True).values())


def test_a_broken_model_or_mostly_skipped_steps_fail_the_run():
    from boltzflow.training.run import _check_trained

    model = torch.nn.Linear(2, 2)
    _check_trained(model, {"step": 100, "skipped": 50})
    with pytest.raises(BoltzflowError, match="98 of 100 steps were skipped"):
        _check_trained(model, {"step": 100, "skipped": 98})
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(BoltzflowError, match="no longer finite"):
        _check_trained(model, {"step": 100, "skipped": 0})


def test_one_writer_per_run_directory(tmp_path):
    """While a process holds the run directory, a second training into it stops at once with
    an error naming the holder; the lock goes with its holder."""
    from boltzflow.io.lock import directory_lock

    with directory_lock(tmp_path / "run"):
        with pytest.raises(BoltzflowError, match=f"in use by process {os.getpid()}"):
            train(tiny(), tmp_path / "run", resume=True)
    assert train(tiny(), tmp_path / "run", resume=True)["stopped"] == "done"


@pytest.mark.parametrize("moment", ["start-up", "final evaluation"])
def test_a_stop_signal_outside_the_training_loop_exits_75(tmp_path, monkeypatch, moment):
    """Slurm's warning (SIGUSR1) or SIGTERM may come while the run is built or while the final
    samples are evaluated; the command must still exit 75 so that the batch script requeues it."""
    import boltzflow.cli.train as cli_train
    import boltzflow.training.run as run_module

    def signalled(function):
        def wrapper(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGUSR1)
            return function(*args, **kwargs)
        return wrapper

    if moment == "start-up":
        monkeypatch.setattr(run_module, "build_run", signalled(run_module.build_run))
    else:
        monkeypatch.setattr(cli_train, "_final_report", signalled(cli_train._final_report))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "2", "--batch-size", "16", "--out",
                                      str(out)] + [a for s in TINY for a in ("--set", s)])
    assert result.exit_code == EARLY_STOP_EXIT_CODE, result.output
    assert "stopped by SIGUSR1" in result.output and f"--out {out} --resume" in result.output
    assert not (out / "summary.json").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handlers are given back
    if moment == "final evaluation":  # the model is kept; --resume only evaluates it again
        assert (out / "model.pt").is_file()
        monkeypatch.undo()
        again = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--out", str(out), "--resume"])
        assert again.exit_code == 0, again.output
        assert json.loads((out / "summary.json").read_text())["step"] == 2


def test_one_draw_of_final_samples_serves_the_summary_and_the_report(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "alanine-dipeptide", "--steps", "2", "--batch-size", "16", "--out",
                                      str(out)] + [a for s in TINY for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert summary["ess"] == report["ess"] and summary["log_z"] == report["log_z"]["value"]
    assert summary["pop_phi_positive"] == report["populations"]["phi_positive"]["value"]
    assert report["n"] == 64
    # the reference shipped with alanine-dipeptide, printed beside the estimate
    assert report["comparison"]["delta_f"]["phi_negative -> phi_positive"]["value"] == pytest.approx(5.83, abs=0.005)
    assert "reference 5.830 [5.750, 5.910]" in " ".join(result.output.replace("│", " ").split())  # cells wrap


def test_damaged_or_foreign_model_files_are_user_errors(tmp_path):
    train(tiny(), tmp_path / "run")
    good = (tmp_path / "run" / "model.pt").read_bytes()
    (tmp_path / "run" / "model.pt").write_bytes(good[:1000])
    with pytest.raises(BoltzflowError, match="not a complete PyTorch file") as err:
        load_run(tmp_path / "run")
    assert "weights_only" not in str(err.value)  # never advise unsafe loading
    train(tiny("rkl", "model.hidden=[8]"), tmp_path / "other")
    (tmp_path / "run" / "model.pt").write_bytes((tmp_path / "other" / "model.pt").read_bytes())
    with pytest.raises(BoltzflowError, match="does not hold a model of the architecture in .*config.toml"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "model.pt").unlink()  # then the last checkpoint is used
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:3000])
    with pytest.raises(BoltzflowError, match="last.pt: not a complete PyTorch file"):
        load_run(tmp_path / "run")


def test_a_bad_config_toml_is_blamed_on_that_file(tmp_path):
    train(tiny(), tmp_path / "run")
    config = tmp_path / "run" / "config.toml"
    config.write_text(config.read_text().replace("\nlr = ", '\nlr = "fast"\n# was: ', 1))
    with pytest.raises(BoltzflowError, match=f"^{config}: 'lr' must be float"):
        load_run(tmp_path / "run")
