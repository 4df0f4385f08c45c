"""CPU threads: which number boltzflow takes, and that PyTorch and OpenMM get the same."""

import os

import openmm
import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.threads import available_cpus, use_threads


def test_precedence_omp_then_slurm_then_affinity():
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus({}) == affinity
    assert available_cpus({"SLURM_CPUS_PER_TASK": "3"}) == 3
    assert available_cpus({"OMP_NUM_THREADS": "5", "SLURM_CPUS_PER_TASK": "3"}) == 5
    assert available_cpus({"OMP_NUM_THREADS": "", "SLURM_CPUS_PER_TASK": "x"}) == affinity


def test_torch_and_openmm_get_the_same_number(monkeypatch):
    before = torch.get_num_threads()
    platform = openmm.Platform.getPlatformByName("CPU")
    openmm_before = platform.getPropertyDefaultValue("Threads")
    monkeypatch.setenv("OPENMM_CPU_THREADS", os.environ.get("OPENMM_CPU_THREADS", ""))  # restored afterwards
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
        system = openmm.System()
        system.addParticle(1.0)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
        assert platform.getPropertyValue(context, "Threads") == "1"
        with pytest.raises(BoltzflowError, match="threads must be"):
            use_threads(-1)
    finally:
        torch.set_num_threads(before)
        platform.setPropertyDefaultValue("Threads", openmm_before)
