"""Atomic files and checkpoints: nothing half-written, RNG streams restored, safe loading."""

import os
import stat

import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.io import atomic_path, load_checkpoint, save_checkpoint


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    """Not tempfile's private 0600: results on a shared cluster are readable as usual."""
    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "result.json") as tmp:
            tmp.write_text("{}")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_checkpoint_round_trip_restores_the_random_stream(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                                  "step": 7, "config": {"lr": 1e-3, "name": "x"}})
    expected = torch.randn(5)
    torch.randn(100)  # move the stream on
    state = load_checkpoint(path, restore_rng=True)
    torch.testing.assert_close(torch.randn(5), expected)
    assert state["step"] == 7 and state["config"] == {"lr": 1e-3, "name": "x"}
    clone = torch.nn.Linear(3, 2)
    clone.load_state_dict(state["model"])
    torch.testing.assert_close(clone.weight, model.weight)
    torch.optim.Adam(clone.parameters()).load_state_dict(state["optimizer"])


def test_truncated_or_missing_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", {"step": 1})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(BoltzflowError, match="cannot read .*ckpt.pt: not a complete PyTorch file") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)  # torch's advice to load unsafely is not repeated
    with pytest.raises(BoltzflowError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoints_refuse_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": object()}, path)
    with pytest.raises(BoltzflowError, match="evil.pt holds objects other than tensors and plain data") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)


def test_temporary_files_are_unpredictable_and_a_killed_writers_are_removed(tmp_path):
    """The temporary name carries the pid and a random part; one left by a process that is
    gone (a kill between create and rename) is removed by the next write of the same file."""
    import subprocess
    import sys

    from boltzflow.io import atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    left = tmp_path / f".model.pt.{dead}.abc123.tmp"
    left.write_text("half")
    other = tmp_path / f".model.pt.{os.getpid()}.xyz789.tmp"  # a live writer's: kept
    other.write_text("busy")
    names = []
    for _ in range(2):
        with atomic_path(tmp_path / "model.pt") as tmp:
            names.append(tmp.name)
            tmp.write_text("done")
    assert names[0] != names[1] and all(n.startswith(f".model.pt.{os.getpid()}.") for n in names)
    assert not left.exists() and other.exists() and (tmp_path / "model.pt").read_text() == "done"
