"""Energies and forces from OpenMM contexts, in-process or in a pool of worker processes.

Workers are started with ``spawn`` (safe with CUDA and threads), each holding its own
``Context`` built from the serialised System. A batch is split into contiguous chunks,
one per worker, and reassembled in order. A crashed worker raises ``RuntimeError``
instead of hanging.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Optional

import numpy as np
import openmm
import openmm.unit as unit

_KJ = unit.kilojoule_per_mole
_FORCE = unit.kilojoule_per_mole / unit.nanometer


class OpenMMEvaluator:
    """One OpenMM Context: ``evaluate(xyz [B, N, 3] nm) -> (energies [B] kJ/mol, forces [B, N, 3])``.

    Non-finite energies or an OpenMM exception for a conformation give energy ``inf``
    and zero forces for that conformation; the others are unaffected.
    """

    def __init__(self, system_xml: str, platform: str = "CPU", properties: Optional[dict] = None):
        system = openmm.XmlSerializer.deserialize(system_xml)
        integrator = openmm.VerletIntegrator(0.001)
        platform_ = openmm.Platform.getPlatformByName(platform)
        if platform == "CPU" and not properties:
            properties = {"Threads": "1"}
        self.context = openmm.Context(system, integrator, platform_, properties or {})
        self.n_atoms = system.getNumParticles()

    def evaluate(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        energies = np.empty(len(xyz))
        forces = np.zeros((len(xyz), self.n_atoms, 3))
        for b, x in enumerate(xyz):
            try:
                self.context.setPositions(x)
                state = self.context.getState(getEnergy=True, getForces=True)
                energies[b] = state.getPotentialEnergy().value_in_unit(_KJ)
                forces[b] = state.getForces(asNumpy=True).value_in_unit(_FORCE)
            except openmm.OpenMMException:
                energies[b] = np.inf
            if not np.isfinite(energies[b]) or not np.isfinite(forces[b]).all():
                energies[b], forces[b] = np.inf, 0.0
        return energies, forces


_worker: Optional[OpenMMEvaluator] = None


def _init_worker(system_xml: str, platform: str, properties: Optional[dict]) -> None:
    global _worker
    _worker = OpenMMEvaluator(system_xml, platform, properties)


def _evaluate_in_worker(xyz: np.ndarray):
    return _worker.evaluate(xyz)


class OpenMMPool:
    """Evaluate batches with ``workers`` OpenMM contexts in parallel (0 = in this process).

    Use as a context manager or call ``close()``; the pool also closes when collected.
    """

    def __init__(self, system: openmm.System, workers: int = 0, platform: str = "CPU",
                 properties: Optional[dict] = None):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        if platform not in names:
            raise ValueError(f"OpenMM platform {platform!r} is not available here; available: {', '.join(names)}")
        xml = openmm.XmlSerializer.serialize(system)
        self.workers = workers
        self.n_atoms = system.getNumParticles()
        self._local = OpenMMEvaluator(xml, platform, properties) if workers == 0 else None
        self._pool = None
        if workers:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(xml, platform, properties))

    def evaluate(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies [B] (kJ/mol) and forces [B, N, 3] (kJ/mol/nm), in batch order."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if self._local is not None:
            return self._local.evaluate(xyz)
        if self._pool is None:
            raise RuntimeError("this OpenMM pool is closed")
        chunks = [c for c in np.array_split(xyz, self.workers) if len(c)]
        try:
            results = list(self._pool.map(_evaluate_in_worker, chunks))
        except BrokenProcessPool as exc:
            self.close()
            raise RuntimeError("an OpenMM worker process died (crash or out of memory); "
                               "the pool is closed, create a new energy to continue") from exc
        return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
