"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint holds whatever the trainer puts in it (model, optimiser and scheduler state
dicts, step, resolved config) plus the random-number state, so that a resumed run draws
the same numbers as an uninterrupted one. Loading uses ``torch.load(weights_only=True)``:
no pickled code runs from a checkpoint file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Union

import torch

from ..errors import BoltzflowError
from .atomic import atomic_path


LAST_CHECKPOINT = Path("checkpoints") / "last.pt"  # inside a run directory: where training resumes from


def rng_state() -> dict[str, Any]:
    """Torch's CPU generator state and, when CUDA is in use, every device's."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_tensors(path: Union[str, Path], data: Any) -> Path:
    """``torch.save(data)`` to ``path`` atomically, through a Python file: a full or read-only disk
    is then an ``OSError`` with its errno (torch writing to a path raises a bare RuntimeError)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(data, f)
    return path


def save_checkpoint(path: Union[str, Path], state: dict[str, Any]) -> Path:
    """Write ``state`` plus the RNG state to ``path`` atomically; returns ``path``."""
    return save_tensors(path, {**state, "rng": rng_state()})


def read_tensors(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one clear error for a file that is not a whole,
    plain PyTorch save (truncated, corrupted, foreign, or holding pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise BoltzflowError(f"{path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise BoltzflowError(f"{path} holds objects other than tensors and plain data; boltzflow reads only "
                             "files it wrote itself") from None
    except Exception:  # truncated or not a PyTorch file: torch's own message advises unsafe loading
        raise BoltzflowError(f"cannot read {path}: not a complete PyTorch file (truncated or corrupted); "
                             "restore it or train the run again") from None


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu",
                    restore_rng: bool = False) -> dict[str, Any]:
    """Read a checkpoint (safely: tensors and plain data only); optionally restore its RNG state."""
    state = read_tensors(path, map_location)
    if not isinstance(state, dict) or "rng" not in state:
        raise BoltzflowError(f"{path} is not a boltzflow checkpoint")
    if restore_rng:
        set_rng_state({k: (v.cpu() if k == "cpu" else [t.cpu() for t in v]) for k, v in state["rng"].items()})
    return state
