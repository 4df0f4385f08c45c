"""Molecular systems: a folder with ``system.toml`` and a structure, loaded into a ``System``.

Shipped systems live in the package data (``boltzflow.system_files``, the repository's
``systems/`` folder); a user's own system is a folder or a TOML path given in place of a
name. See ``systems/README.md`` for the TOML keys.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .catalog import available_systems
from .errors import BoltzflowError
from .geometry import dihedral_angles
from .io.toml import tomllib
from .units import thermal_energy

NONBONDED_METHODS = ("NoCutoff",)
CONSTRAINTS = {"none": None, "hbonds": "HBonds", "allbonds": "AllBonds", "hangles": "HAngles"}


class SystemFileError(BoltzflowError):
    """A system.toml that cannot be read or misses / misuses a key."""


def _line_of(text: str, key: str) -> Optional[int]:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", line) or re.match(rf"\s*\[+\s*{re.escape(key)}\s*\]+", line):
            return number
    return None


@dataclass(frozen=True)
class State:
    """A named region of collective-variable space: ``ranges[cv] = (low, high)`` in radians.

    A range with ``low > high`` wraps through ±π (e.g. ψ from 50° through 180° to -100°).
    """

    name: str
    ranges: dict

    def contains(self, cvs: dict) -> torch.Tensor:
        """Bool [batch] of which points, given their CV values [batch], lie in the state."""
        inside = None
        for cv, (low, high) in self.ranges.items():
            v = cvs[cv]
            m = (v >= low) & (v < high) if low <= high else (v >= low) | (v < high)
            inside = m if inside is None else inside & m
        return inside


def _disjoint(a: State, b: State) -> bool:
    """Whether two states share no point: some common CV has non-overlapping ranges."""

    def arcs(low: float, high: float) -> list:
        return [(low, high)] if low <= high else [(low, math.pi), (-math.pi, high)]

    return any(all(max(p[0], q[0]) >= min(p[1], q[1]) for p in arcs(*a.ranges[cv]) for q in arcs(*b.ranges[cv]))
               for cv in set(a.ranges) & set(b.ranges))


def disjoint_groups(states) -> list:
    """Names of ``states`` (an iterable of ``State``) in groups of mutually disjoint states,
    each state in the first group it is disjoint from every member of."""
    groups: list = []
    for state in states:
        group = next((g for g in groups if all(_disjoint(state, other) for other in g)), None)
        if group is None:
            groups.append([state])
        else:
            group.append(state)
    return [[state.name for state in group] for group in groups]


def covers(states) -> bool:
    """Whether ``states`` (an iterable of ``State``) together hold every point of the CVs they
    constrain, each over [-π, π). Exact for boxes: the range ends cut each CV into arcs that lie
    wholly inside or outside every range, so one point per cell of that grid decides."""
    states = list(states)
    if any(not state.ranges for state in states):  # a state with no range holds everything
        return True
    names = sorted({cv for state in states for cv in state.ranges})
    if not names:
        return False
    axes = []
    for cv in names:
        ends = {min(max(end, -math.pi), math.pi) for state in states if cv in state.ranges for end in state.ranges[cv]}
        cuts = sorted(ends | {-math.pi, math.pi})
        axes.append(torch.tensor([(a + b) / 2 for a, b in zip(cuts, cuts[1:]) if b > a], dtype=torch.float64))
    grid = torch.cartesian_prod(*axes).reshape(-1, len(names))
    points = {cv: grid[:, i] for i, cv in enumerate(names)}
    inside = torch.zeros(len(grid), dtype=torch.bool)
    for state in states:
        inside |= state.contains(points)
    return bool(inside.all())


@dataclass
class System:
    """A molecular system ready for sampling.

    Attributes:
        name, description: from system.toml.
        folder: where system.toml lives.
        topology: mdtraj Topology.
        openmm_system: the OpenMM System (energies in kJ/mol).
        positions: reference structure, numpy [n_atoms, 3] in nm.
        temperature: K; ``kT``: kJ/mol.
        dihedrals: named dihedral CVs, name → 4 atom indices (0-based).
        states: named regions of the CVs (``State``).
        chiral_centers: list of dicts from system.toml (centre atom, substituents, label).
        zmatrix: explicit Z-matrix rows [atom, bond, angle, dihedral] or None.
    """

    name: str
    description: str
    folder: Path
    topology: object
    openmm_system: object
    positions: np.ndarray
    temperature: float
    dihedrals: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    chiral_centers: list = field(default_factory=list)
    zmatrix: Optional[list] = None

    @property
    def kT(self) -> float:
        return thermal_energy(self.temperature)

    @property
    def n_atoms(self) -> int:
        return self.topology.n_atoms

    @property
    def constrained_bonds(self) -> list[tuple[int, int, float]]:
        """(atom, atom, length nm) of every distance constraint of the OpenMM System
        (``forcefield.constraints`` of system.toml; OpenMM leaves these pairs out of its bond
        force). The internal coordinates hold them fixed."""
        import openmm.unit as unit

        constraints = [self.openmm_system.getConstraintParameters(k)
                       for k in range(self.openmm_system.getNumConstraints())]
        return [(int(i), int(j), float(d.value_in_unit(unit.nanometer))) for i, j, d in constraints]

    def energy(self, backend: str = "torch", platform: str = "CPU", workers: int = 0,
               compile: bool = False):
        """Reduced energy u = E/kT of positions [batch, n_atoms, 3] (nm) → [batch].

        ``backend="torch"``: the torch force field built from the OpenMM System (any device:
        ``.to(device, dtype)``); ``compile=True`` fuses it with ``torch.compile``.
        ``backend="openmm"``: OpenMM contexts on ``platform``; ``workers`` > 0 starts that
        many worker processes (close them with ``.close()``).
        """
        from .energy.reduced import OpenMMEnergy, TorchEnergy

        if backend == "torch":
            return TorchEnergy(self.openmm_system, self.temperature, compile=compile)
        if backend == "openmm":
            return OpenMMEnergy(self.openmm_system, self.temperature, platform, workers)
        raise ValueError(f"backend must be 'torch' or 'openmm', got {backend!r}")

    def internal_coordinates(self, reference=None, cartesian_atoms=None, **options):
        """The ``InternalCoordinates`` bijection of this system (``boltzflow.coordinates``).

        Z-matrix: the ``zmatrix`` of system.toml (internal layout), else built from the bond
        graph; ``cartesian_atoms`` keeps those atoms Cartesian (PCA-whitened). ``reference``:
        a structure [n_atoms, 3] or data frames [frames, n_atoms, 3] (nm); default the
        system's structure. ``options`` go to ``boltzflow.coordinates.for_system``.
        """
        from .coordinates import for_system

        return for_system(self, reference, cartesian_atoms, **options)

    def collective_variables(self, xyz: torch.Tensor) -> dict:
        """The named dihedrals (radians, [-π, π]) of positions [batch, n_atoms, 3]."""
        if not self.dihedrals:
            return {}
        quads = torch.tensor(list(self.dihedrals.values()), device=xyz.device)
        values = dihedral_angles(xyz, quads)
        return {name: values[:, i] for i, name in enumerate(self.dihedrals)}


def _require(table: dict, key: str, kind, path: Path, text: str, where: str = ""):
    if key not in table:
        raise SystemFileError(f"{path}: missing key '{where}{key}'")
    value = table[key]
    if not isinstance(value, kind):
        expected = {str: "a string", list: "a list", dict: "a table"}.get(kind, "a number")
        raise _bad(path, text, f"{where}{key}", f"must be {expected}, got {value!r}")
    return value


def _bad(path: Path, text: str, key: str, message: str) -> SystemFileError:
    line = _line_of(text, key.split(".")[-1])
    at = f", line {line}" if line else ""
    return SystemFileError(f"{path}{at}: key '{key}' {message}")


def system_file(name_or_path: Union[str, Path]) -> Path:
    """The system.toml of a shipped system's name, a folder or a TOML path; a one-line
    ``BoltzflowError`` naming the known systems otherwise (nothing is loaded)."""
    known = available_systems()
    if str(name_or_path) in known:
        return known[str(name_or_path)] / "system.toml"
    path = Path(name_or_path)
    if path.is_dir() and (path / "system.toml").is_file():
        return path / "system.toml"
    if path.is_file() and path.suffix == ".toml":
        return path
    raise BoltzflowError(
        f"unknown system {str(name_or_path)!r}: not a shipped system, nor a folder with "
        f"system.toml, nor a .toml file. Known systems: {', '.join(known) or 'none'}")


def load_system(name_or_path: Union[str, Path]) -> System:
    """Load a shipped system by name, or a user's system from a folder or TOML file."""
    import mdtraj
    import openmm.app as app

    path = system_file(name_or_path)
    text = path.read_text()
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SystemFileError(f"{path}: invalid TOML: {exc}") from None
    name = _require(spec, "name", str, path, text)
    description = spec.get("description", "")
    temperature = float(_require(spec, "temperature", (int, float), path, text))
    if temperature <= 0:
        raise _bad(path, text, "temperature", f"must be positive (K), got {temperature}")
    structure = path.parent / _require(spec, "structure", str, path, text)
    if not structure.is_file():
        raise _bad(path, text, "structure", f"names {structure.name}, which does not exist next to system.toml")
    ff = _require(spec, "forcefield", dict, path, text)
    files = _require(ff, "files", list, path, text, "forcefield.")
    method = ff.get("nonbonded_method", "NoCutoff")
    if method not in NONBONDED_METHODS:
        raise _bad(path, text, "forcefield.nonbonded_method", f"must be one of {NONBONDED_METHODS}, got {method!r}")
    constraints = ff.get("constraints", "none")
    if constraints not in CONSTRAINTS:
        raise _bad(path, text, "forcefield.constraints", f"must be one of {tuple(CONSTRAINTS)}, got {constraints!r}")

    try:
        pdb = app.PDBFile(str(structure))
    except Exception as exc:  # OpenMM's PDB reader fails with bare assertions and index errors
        raise _bad(path, text, "structure", f"{structure.name} is not a readable PDB file "
                   f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})") from None
    if pdb.topology.getNumAtoms() == 0:
        raise _bad(path, text, "structure", f"{structure.name} holds no atoms")
    try:
        forcefield = app.ForceField(*[str(path.parent / f) if (path.parent / f).is_file() else f for f in files])
    except Exception as exc:  # a malformed or unknown XML file
        raise _bad(path, text, "forcefield.files", f"cannot read the force field: {exc}") from None
    try:
        omm_constraints = getattr(app, CONSTRAINTS[constraints]) if CONSTRAINTS[constraints] else None
        openmm_system = forcefield.createSystem(pdb.topology, nonbondedMethod=getattr(app, method),
                                                constraints=omm_constraints, removeCMMotion=False)
    except ValueError as exc:
        raise _bad(path, text, "forcefield.files", f"cannot parametrise {structure.name}: {exc}") from None
    positions = np.array(pdb.getPositions(asNumpy=True)._value, dtype=np.float64)

    n = pdb.topology.getNumAtoms()
    dihedrals = {}
    for cv, atoms in spec.get("dihedrals", {}).items():
        if not (isinstance(atoms, list) and len(atoms) == 4 and all(isinstance(a, int) and 0 <= a < n for a in atoms)):
            raise _bad(path, text, f"dihedrals.{cv}", f"must list 4 atom indices in [0, {n}), got {atoms!r}")
        dihedrals[cv] = tuple(atoms)
    states = {}
    for state, ranges in spec.get("states", {}).items():
        if not isinstance(ranges, dict) or not ranges:
            raise _bad(path, text, f"states.{state}", "must map dihedral names to [low, high] in degrees")
        parsed = {}
        for cv, bounds in ranges.items():
            if cv not in dihedrals:
                raise _bad(path, text, f"states.{state}", f"uses '{cv}', which is not in [dihedrals] ({', '.join(dihedrals)})")
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) and -180 <= b <= 180 for b in bounds)):
                raise _bad(path, text, f"states.{state}", f"range of '{cv}' must be [low, high] in degrees within [-180, 180], got {bounds!r}")
            parsed[cv] = tuple(math.radians(b) for b in bounds)
        states[state] = State(state, parsed)
    chiral_centers = spec.get("chiral_centers", [])
    for k, center in enumerate(chiral_centers if isinstance(chiral_centers, list) else [None]):
        atoms = [center.get("center")] + list(center.get("substituents", [])) if isinstance(center, dict) else []
        if not (len(atoms) == 5 and all(isinstance(a, int) and 0 <= a < n for a in atoms)
                and center.get("expected", "L") in ("L", "D")):
            raise _bad(path, text, "chiral_centers", f"entry {k} must give 'center' and 4 'substituents' "
                       f"(atom indices in [0, {n}), listed as N, C', side chain, HA) and 'expected' = \"L\" or \"D\", got {center!r}")
    return System(
        name=name, description=description, folder=path.parent,
        topology=mdtraj.Topology.from_openmm(pdb.topology), openmm_system=openmm_system,
        positions=positions, temperature=temperature, dihedrals=dihedrals, states=states,
        chiral_centers=chiral_centers, zmatrix=spec.get("zmatrix"),
    )
