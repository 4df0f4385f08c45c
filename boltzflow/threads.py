"""How many CPU threads boltzflow computes with, and setting PyTorch's and OpenMM's alike.

PyTorch's default is a thread per core of the whole machine. On a shared node, where other
jobs hold some of those cores, its OpenMP threads wait on each other and a run becomes 4–5
times slower than with one thread. boltzflow therefore takes, in this order: an explicit
number (``--threads``), ``OMP_NUM_THREADS`` when set (by the user, or by torchrun for each of
its processes), Slurm's ``SLURM_CPUS_PER_TASK``, and else the CPUs this process may run on
(its affinity: taskset, cgroups, a batch system's binding).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import openmm
import torch

from .errors import BoltzflowError


def available_cpus(env: Mapping[str, str] = os.environ) -> int:
    """Threads to use when none are asked for: OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else the
    number of CPUs in this process's affinity."""
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def use_threads(threads: Optional[int] = None) -> int:
    """Set PyTorch's intra-op threads and OpenMM's CPU-platform threads to ``threads``, or to
    ``available_cpus()`` when it is None or 0; returns the number used. OpenMM's is set as the
    platform's default for contexts created from now on, and as ``OPENMM_CPU_THREADS`` for
    worker processes started from now on."""
    if threads is not None and threads < 0:
        raise BoltzflowError(f"threads must be a positive number (0 or none: automatic), got {threads}")
    count = threads or available_cpus()
    torch.set_num_threads(count)
    os.environ["OPENMM_CPU_THREADS"] = str(count)
    platforms = [openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms())]
    for platform in platforms:
        if platform.getName() == "CPU":
            platform.setPropertyDefaultValue("Threads", str(count))
    return count
