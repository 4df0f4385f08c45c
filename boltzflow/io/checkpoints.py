"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint holds whatever the trainer puts in it (model, optimiser and scheduler state
dicts, step, resolved config) plus the random-number state, so that a resumed run draws
the same numbers as an uninterrupted one. Loading uses ``torch.load(weights_only=True)``:
no pickled code runs from a checkpoint file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch

from ..errors import BoltzflowError
from .atomic import atomic_path


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


def save_checkpoint(path: Union[str, Path], state: dict[str, Any]) -> Path:
    """Write ``state`` plus the RNG state to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**state, "rng": rng_state()}, tmp)
    return path


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu",
                    restore_rng: bool = False) -> dict[str, Any]:
    """Read a checkpoint (safely: tensors and plain data only); optionally restore its RNG state."""
    path = Path(path)
    if not path.is_file():
        raise BoltzflowError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise BoltzflowError(f"cannot read checkpoint {path}: {exc}") from None
    if restore_rng:
        set_rng_state({k: (v.cpu() if k == "cpu" else [t.cpu() for t in v]) for k, v in state["rng"].items()})
    return state
