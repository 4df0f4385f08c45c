"""The ``Example:`` sections of the public docstrings run as written (doctest)."""

import doctest
import importlib

import pytest
import torch

MODULES = ["boltzflow.flows.builders", "boltzflow.flows.flow", "boltzflow.flows.base", "boltzflow.training.settings"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
