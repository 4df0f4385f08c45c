"""A tiny trained alanine-dipeptide run (3 steps, 2 layers), trained once per test session and
shared by the sample-file, export, report and CLI tests; torch pinned to one thread."""

from pathlib import Path

import pytest
import torch

from boltzflow.training.config import resolve_config
from boltzflow.training.run import train

TINY = ["model.layers=2", "model.hidden=[16]", "final_samples=64", "eval_batch_size=32"]
_trained: dict = {}


def tiny_run(tmp_path_factory) -> Path:
    """The run directory (config.toml, model.pt, …); do not write into it."""
    if "run" not in _trained:
        out = tmp_path_factory.mktemp("tiny-run")
        train(resolve_config("alanine-dipeptide", options={"steps": 3, "batch_size": 16}, assignments=TINY), out)
        _trained["run"] = out
    return _trained["run"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
