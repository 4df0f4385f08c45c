"""Shared fixtures: every numerical test runs over a device × dtype matrix; thread pinning for
tests of many small operations (one thread is faster there, and fair to a shared CPU)."""

import openmm
import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread for the test, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_openmm_thread():
    """OpenMM's CPU platform on one thread for the module, restored afterwards."""
    platform = openmm.Platform.getPlatformByName("CPU")
    before = platform.getPropertyDefaultValue("Threads")
    platform.setPropertyDefaultValue("Threads", "1")
    yield
    platform.setPropertyDefaultValue("Threads", before)
