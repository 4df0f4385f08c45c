"""A tiny trained alanine-dipeptide run (3 steps, 2 layers), trained once per test session and
shared by the sample-file, export, report and CLI tests; torch pinned to one thread."""

from pathlib import Path

import pytest

from boltzflow.training.config import resolve_config
from boltzflow.training.run import load_run, train

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
def one_thread(one_torch_thread):
    """Importing this fixture pins torch to one thread in the importing module."""
    yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)
