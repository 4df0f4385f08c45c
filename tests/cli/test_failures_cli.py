"""Ways a command can end badly (a full or read-only disk, broken files, planted links, values
that cannot work): one ``error:`` line, no traceback, and the exit code that says what to do
(2: fix the input; 75: run the same command again once the disk is fixed)."""

import errno
import json
import shutil
import sys

import pytest

from boltzflow.cli.app import main
from boltzflow.training.run import EARLY_STOP_EXIT_CODE as EX_TEMPFAIL
from tests.io.runs import one_thread, tiny_run  # noqa: F401

TINY = ["--batch-size", "16", "--set", "model.layers=2", "--set", "model.hidden=[16]", "--set", "final_samples=64",
        "--set", "eval_batch_size=32", "--set", "log_every=1", "--set", "checkpoint_every=1", "--threads", "1"]
MD = ["md", "alanine-dipeptide-vacuum", "--ns", "0.0004", "--report-interval", "100", "--threads", "1"]


def boltzflow(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the ``boltzflow`` entry point in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["boltzflow", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def one_error_line(err: str, *texts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for text in texts:
        assert text in lines[0], (text, lines[0])


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def samples_file(tmp_path_factory):
    """A copy of the tiny run with 32 samples in samples.h5."""
    run = tmp_path_factory.mktemp("failures") / "run"
    shutil.copytree(tiny_run(tmp_path_factory), run)
    from boltzflow.runs import write_samples
    from boltzflow.training.run import load_run

    return write_samples(load_run(run), run / "samples.h5", 32, run_dir=run)


def test_a_full_disk_during_training_exits_75_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """The disk fills up while the third checkpoint is written (torch writes it through a Python
    file, whose writes then fail with ENOSPC): one error line, exit 75, the second checkpoint
    kept; the same command with --resume finishes the run without logging a step twice."""
    import builtins
    import io

    import boltzflow.io.checkpoints as checkpoints

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    opened = []

    def filling_up(path, mode="r"):
        opened.append(path)
        return FullDisk(path, mode) if len(opened) > 2 else builtins.open(path, mode)

    monkeypatch.setattr(checkpoints, "open", filling_up, raising=False)
    out = tmp_path / "run"
    code, _, err = boltzflow(monkeypatch, capsys, "train", "alanine-dipeptide", "--steps", "3", "--out", out, *TINY)
    assert code == EX_TEMPFAIL
    one_error_line(err, "No space left on device", "--resume")
    assert not list((out / "checkpoints").glob(".*.tmp"))
    monkeypatch.delattr(checkpoints, "open")
    code, _, err = boltzflow(monkeypatch, capsys, "train", "alanine-dipeptide", "--out", out, "--resume")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_during_md_exits_75_and_md_runs_again(tmp_path, monkeypatch, capsys, number):
    import os

    import boltzflow.reference.md as md

    def fails(*args):
        raise OSError(number, os.strerror(number))

    append = md.append_frames
    monkeypatch.setattr(md, "append_frames", fails)
    out = tmp_path / "md.h5"
    code, _, err = boltzflow(monkeypatch, capsys, *MD, "--out", out)
    assert code == EX_TEMPFAIL
    one_error_line(err, os.strerror(number), str(out))
    monkeypatch.setattr(md, "append_frames", append)
    code, out_text, err = boltzflow(monkeypatch, capsys, *MD, "--out", out)
    assert code == 0 and "wrote 4 frames" in out_text, err


@pytest.mark.parametrize("command", ["sample", "export"])
def test_a_full_disk_while_writing_samples_or_a_trajectory_exits_75(samples_file, tmp_path, monkeypatch, capsys,
                                                                    command):
    import h5py

    import boltzflow.runs.export as export

    if command == "sample":
        monkeypatch.setattr(h5py.Dataset, "__setitem__", disk_full)
        args = ["sample", samples_file.parent, "-n", "8", "--out", tmp_path / "s.h5"]
    else:
        monkeypatch.setattr(export, "_save", disk_full)
        args = ["export", samples_file, "--out", tmp_path / "s.pdb"]
    code, _, err = boltzflow(monkeypatch, capsys, *args)
    assert code == EX_TEMPFAIL
    one_error_line(err, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("output", ["--json", "--plots"])
def test_a_full_disk_while_free_energy_writes_exits_75(samples_file, tmp_path, monkeypatch, capsys, output):
    import boltzflow.io.atomic as atomic

    monkeypatch.setattr(atomic.os, "replace", disk_full)   # the last step of every atomic write
    target = tmp_path / ("report.json" if output == "--json" else "figures")
    code, _, err = boltzflow(monkeypatch, capsys, "free-energy", samples_file, output, target)
    assert code == EX_TEMPFAIL
    one_error_line(err, "No space left on device")


@pytest.mark.parametrize("ais", [[], ["--ais", "2", "--ais-warmup", "1", "--ais-warmup-size", "4"]])
def test_a_model_with_non_finite_parameters_is_not_sampled(tmp_path, tmp_path_factory, monkeypatch, capsys, ais):
    import torch

    run = tmp_path / "run"
    shutil.copytree(tiny_run(tmp_path_factory), run)
    state = torch.load(run / "model.pt", weights_only=True)
    torch.save({key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
                for key, value in state.items()}, run / "model.pt")
    code, out, err = boltzflow(monkeypatch, capsys, "sample", run, "-n", "8", *ais)
    assert code == 2 and "sampling" not in out
    one_error_line(err, "model.pt holds a model whose parameters are not all finite")
    assert not (run / "samples.h5").exists()


@pytest.mark.parametrize("args, message", [
    (["sample", "{tmp}/no-run", "-n", "8", "--ais", "1000000000"], "--ais must be at most 10,000 levels"),
    (["systems", "new", "{tmp}/new", "--sequence", "A", "--temperature", "inf"], "must be a positive, finite number of K"),
    (["md", "alanine-dipeptide-vacuum", "--ns", "inf", "--out", "{tmp}/md.h5"], "positive, finite number of ns"),
    (["train", "alanine-dipeptide", "--time-limit", "0s", "--out", "{tmp}/run"], "'time_limit' = '0s'"),
])
def test_values_that_cannot_work_are_refused_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    code, out, err = boltzflow(monkeypatch, capsys, *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out.strip() == ""
    one_error_line(err, message)
    assert list(tmp_path.iterdir()) == []


def test_resuming_from_a_checkpoint_of_another_architecture_changes_nothing(tmp_path, monkeypatch, capsys):
    """A last.pt holding another model (as one copied from another run): one error line; config.toml
    is not rewritten with the new --steps before the checkpoint is found not to fit."""
    import torch

    from boltzflow.io import load_checkpoint, save_checkpoint

    code, _, err = boltzflow(monkeypatch, capsys, "train", "alanine-dipeptide", "--steps", "1", "--out",
                             tmp_path / "run", *TINY)
    assert code == 0, err
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(checkpoint, {**load_checkpoint(checkpoint), "model": torch.nn.Linear(2, 2).state_dict()})
    config = (tmp_path / "run" / "config.toml").read_bytes()
    code, _, err = boltzflow(monkeypatch, capsys, "train", "alanine-dipeptide", "--out", tmp_path / "run", "--resume",
                             "--steps", "3")
    assert code == 2
    one_error_line(err, "last.pt: it does not hold a model of this run's architecture")
    assert (tmp_path / "run" / "config.toml").read_bytes() == config


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("damage", ["truncated partial", "broken checkpoint", "checkpoint with a broken state"])
def test_md_from_a_damaged_partial_or_checkpoint_is_one_error_line(tmp_path, monkeypatch, capsys, damage):
    from boltzflow.reference import run_md
    from boltzflow.reference.md import md_paths
    from boltzflow.systems import load_system

    def stop(done, total):
        if done == 3:
            raise Interrupt

    out = tmp_path / "md.h5"
    with pytest.raises(Interrupt):  # the settings of MD below, with a checkpoint after frame 2
        run_md(load_system("alanine-dipeptide-vacuum"), 0.0004, out, report_interval=100, checkpoint_interval=2,
               properties={"Threads": "1"}, progress=stop)
    _, partial, checkpoint = md_paths(out)
    if damage == "truncated partial":
        partial.write_bytes(partial.read_bytes()[:2000])
        broken = partial
    elif damage == "broken checkpoint":
        checkpoint.write_text(checkpoint.read_text()[:100])
        broken = checkpoint
    else:
        checkpoint.write_text(json.dumps({**json.loads(checkpoint.read_text()), "state": "<State"}))
        broken = checkpoint
    code, _, err = boltzflow(monkeypatch, capsys, *MD, "--out", out)
    assert code == 2
    one_error_line(err, f"cannot resume from {broken}: it is damaged", f"remove {partial} and {checkpoint}")


def test_the_run_lock_does_not_follow_a_planted_link(tmp_path):
    from boltzflow.errors import BoltzflowError
    from boltzflow.io.lock import directory_lock

    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(victim)
    with pytest.raises(BoltzflowError, match="run/.lock is a symbolic link"):
        with directory_lock(tmp_path / "run"):
            pass
    assert victim.read_text() == "mine\n"


def test_md_does_not_write_through_a_planted_partial_link(tmp_path, monkeypatch, capsys):
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    (tmp_path / "md.h5.partial").symlink_to(victim)
    code, _, err = boltzflow(monkeypatch, capsys, *MD, "--out", tmp_path / "md.h5")
    assert code == 2
    one_error_line(err, "md.h5.partial is a symbolic link")
    assert victim.read_text() == "mine\n"
