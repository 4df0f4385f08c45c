"""The sampling tests take many steps on small batches: at these sizes one intra-op thread is
faster (waking a second thread costs more than it saves, milliseconds when the CPU is shared)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
