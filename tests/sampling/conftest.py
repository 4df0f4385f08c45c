"""The sampling tests take many steps on small batches: at these sizes one intra-op thread is
faster (waking a second thread costs more than it saves, milliseconds when the CPU is shared)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
