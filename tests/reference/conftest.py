"""Reference simulations run the vacuum alanine dipeptide on one OpenMM CPU thread."""

import pytest

from boltzflow.systems import load_system


@pytest.fixture(autouse=True)
def _one_cpu_thread(one_openmm_thread):
    yield


@pytest.fixture(scope="session")
def system():
    return load_system("alanine-dipeptide-vacuum")
