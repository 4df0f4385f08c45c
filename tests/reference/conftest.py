"""Reference simulations run the vacuum alanine dipeptide on one OpenMM CPU thread."""

import openmm
import pytest

from boltzflow.systems import load_system


@pytest.fixture(autouse=True)
def one_cpu_thread():
    platform = openmm.Platform.getPlatformByName("CPU")
    before = platform.getPropertyDefaultValue("Threads")
    platform.setPropertyDefaultValue("Threads", "1")
    yield
    platform.setPropertyDefaultValue("Threads", before)


@pytest.fixture(scope="session")
def system():
    return load_system("alanine-dipeptide-vacuum")
