"""Energies and forces from OpenMM contexts, in-process or in a pool of worker processes.

Workers are started with ``spawn`` (safe with CUDA and threads), each holding its own
``Context`` built from the serialised System and talking through a pipe. A batch is split
into contiguous chunks, one per worker, and reassembled in order. A crashed worker raises
``RuntimeError`` instead of hanging.
"""

from __future__ import annotations

import multiprocessing
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


def _serve(connection, system_xml: str, platform: str, properties: Optional[dict]) -> None:
    """Worker process: evaluate the batches it receives until it receives ``None``."""
    evaluator = OpenMMEvaluator(system_xml, platform, properties)
    connection.send("ready")
    while (xyz := connection.recv()) is not None:
        connection.send(evaluator.evaluate(xyz))


class OpenMMPool:
    """Evaluate batches with ``workers`` OpenMM contexts in parallel (0 = in this process).

    Each worker is a spawned process with its own Context, fed through a pipe; a batch is
    split into contiguous chunks, one per worker, and reassembled in order. A worker that
    dies (crash, out of memory, killed) makes ``evaluate`` raise ``RuntimeError`` within a
    fraction of a second, never hang. Use as a context manager or call ``close()``.
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
        self._processes, self._connections = [], []
        spawn = multiprocessing.get_context("spawn")
        for _ in range(workers):
            ours, theirs = spawn.Pipe()
            process = spawn.Process(target=_serve, args=(theirs, xml, platform, properties), daemon=True)
            process.start()
            theirs.close()
            self._processes.append(process)
            self._connections.append(ours)
        for k in range(workers):
            self._receive(k)  # "ready": the Context was created

    def _receive(self, k: int):
        connection, process = self._connections[k], self._processes[k]
        try:
            while not connection.poll(0.05):
                if not process.is_alive():
                    raise EOFError
            return connection.recv()
        except (EOFError, OSError):
            process.join(timeout=1)
            self.close()
            raise RuntimeError(f"an OpenMM worker process died (exit code {process.exitcode}: crash, out of "
                               "memory or killed); the pool is closed, create a new energy to continue") from None

    def evaluate(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies [B] (kJ/mol) and forces [B, N, 3] (kJ/mol/nm), in batch order."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if self._local is not None:
            return self._local.evaluate(xyz)
        if not self._processes:
            raise RuntimeError("this OpenMM pool is closed")
        chunks = [c for c in np.array_split(xyz, self.workers) if len(c)]
        for k, chunk in enumerate(chunks):
            try:
                self._connections[k].send(chunk)
            except OSError:
                self._receive(k)  # the worker is gone: raises the error that says so
        results = [self._receive(k) for k in range(len(chunks))]
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def close(self) -> None:
        """Stop the workers: ask politely, then terminate whoever does not leave within 5 s."""
        for connection in self._connections:
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self._connections:
            connection.close()
        self._processes, self._connections = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
