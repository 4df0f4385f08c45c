"""Z-matrices: which earlier atoms define each atom's bond, angle and dihedral.

A row ``[atom, bond_ref, angle_ref, dihedral_ref]`` (0-based atom indices) places ``atom``
at distance r (nm) from ``bond_ref``, with angle θ = ∠ atom–bond_ref–angle_ref in [0, π]
and IUPAC dihedral φ of atom–bond_ref–angle_ref–dihedral_ref in [-π, π) (the sign of
``boltzflow.energy.terms.dihedral_angles``, OpenMM and mdtraj). Every reference must be
placed earlier, and the four atoms of a row are distinct.

Two layouts:

* internal (``cartesian=()``): the first three rows fix the frame and have fewer references,
  ``[a]``, ``[b, a]``, ``[c, a or b, b or a]``; missing references may also be written as
  -1 (``[a, -1, -1, -1]``). This is the form ``system.toml``'s ``zmatrix`` key takes::

      zmatrix = [[1], [4, 1], [6, 4, 1], [8, 6, 4, 1], [14, 8, 6, 4], ...]

* mixed: the ``cartesian`` atoms are placed first (whitened Cartesian coordinates); every
  row then has three references, which may be Cartesian atoms or earlier rows.

``build_zmatrix`` derives a Z-matrix from a topology's bond graph: heavy-atom backbone
first, then the other heavy atoms breadth-first, then the hydrogens grouped by their heavy
atom. Each atom is bonded to its bond reference, its angle reference is the bond
reference's own bond reference (so backbone torsions such as φ and ψ of a peptide are
coordinates), and the dihedral reference is, in order of preference, an earlier sibling
sharing the same bond and angle references (a stiff, relative torsion: methyl hydrogens
move as one rotor, branches such as Cβ keep their handedness), the angle reference's own
bond reference, or the placed atom nearest in the bond graph (heavy atoms first).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from numbers import Integral
from typing import Iterable, Optional, Sequence

from ..errors import BoltzflowError

NONE = -1


class ZMatrixError(BoltzflowError, ValueError):
    """A Z-matrix that does not define every atom exactly once from earlier atoms."""


@dataclass(frozen=True)
class ZMatrix:
    """Validated Z-matrix rows ``(atom, bond_ref, angle_ref, dihedral_ref)``, -1 where absent.

    Build one with ``ZMatrix.from_rows`` (explicit rows) or ``build_zmatrix`` (from a
    topology). ``order`` is the placement order: Cartesian atoms, then the rows' atoms.
    """

    n_atoms: int
    rows: tuple[tuple[int, int, int, int], ...]
    cartesian: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _validate(self.n_atoms, self.rows, self.cartesian)

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]], n_atoms: int,
                  cartesian: Sequence[int] = ()) -> "ZMatrix":
        """Rows of 1 to 4 atom indices (missing references -1 or left out) → ``ZMatrix``."""
        parsed = []
        for k, row in enumerate(rows):
            row = list(row) if isinstance(row, (list, tuple)) else row
            if not (isinstance(row, list) and 1 <= len(row) <= 4
                    and all(isinstance(i, Integral) and not isinstance(i, bool) for i in row)):
                raise ZMatrixError(f"zmatrix row {k} must be a list of 1 to 4 atom indices "
                                   f"[atom, bond_ref, angle_ref, dihedral_ref], got {row!r}")
            parsed.append(tuple(int(i) for i in row + [NONE] * (4 - len(row))))
        return cls(int(n_atoms), tuple(parsed), tuple(int(a) for a in cartesian))

    @property
    def is_mixed(self) -> bool:
        return bool(self.cartesian)

    @property
    def order(self) -> tuple[int, ...]:
        return self.cartesian + tuple(r[0] for r in self.rows)

    @property
    def bonds(self) -> list[tuple[int, int]]:
        """(atom, bond_ref) of every row that has a bond coordinate, in coordinate order."""
        return [r[:2] for r in self.rows if r[1] != NONE]

    @property
    def angles(self) -> list[tuple[int, int, int]]:
        """(atom, bond_ref, angle_ref): the angle's vertex is in the middle."""
        return [r[:3] for r in self.rows if r[2] != NONE]

    @property
    def dihedrals(self) -> list[tuple[int, int, int, int]]:
        return [r for r in self.rows if r[3] != NONE]

    @property
    def branch_dihedrals(self) -> list[bool]:
        """Per dihedral: its dihedral reference is bonded (by a row) to its bond reference.

        Such a dihedral a-b-c-d places a relative to a sibling substituent d of b: it is
        stiff (fixed by b's geometry, ±120° or 180°) and its sign fixes the handedness of b.
        """
        bonded = {frozenset(pair) for pair in self.bonds}
        return [frozenset((r[1], r[3])) in bonded for r in self.dihedrals]

    def dihedral_index(self, atoms: Sequence[int]) -> int:
        """Position among ``dihedrals`` of the torsion over ``atoms`` (either direction)."""
        quad = tuple(atoms)
        for k, row in enumerate(self.dihedrals):
            if quad in (row, row[::-1]):
                return k
        raise KeyError(f"dihedral {list(quad)} is not a coordinate of this Z-matrix; its torsions "
                       f"are rows [atom, bond_ref, angle_ref, dihedral_ref] such as {list(self.dihedrals[:1])}")


def _check_cartesian(n_atoms: int, cartesian: Sequence[int]) -> set[int]:
    if n_atoms < 3:
        raise ZMatrixError(f"internal coordinates need at least 3 atoms, got {n_atoms}")
    if cartesian and len(set(cartesian)) < 3:
        raise ZMatrixError(f"mixed coordinates need at least 3 distinct Cartesian atoms, got {list(cartesian)}")
    placed: set[int] = set()
    for a in cartesian:
        if not 0 <= a < n_atoms or a in placed:
            raise ZMatrixError(f"Cartesian atom {a} is out of range [0, {n_atoms}) or repeated")
        placed.add(a)
    return placed


def _validate(n_atoms: int, rows: tuple, cartesian: tuple) -> None:
    placed = _check_cartesian(n_atoms, cartesian)
    for k, row in enumerate(rows):
        atom, refs = row[0], [r for r in row[1:] if r != NONE]
        # internal layout: rows 0, 1, 2 carry 0, 1, 2 references; every other row three
        expected = 3 if cartesian else min(k, 3)
        if len(row) != 4 or row[1:] != tuple(refs) + (NONE,) * (3 - len(refs)) or len(refs) != expected:
            form = ", ".join(["atom", "bond_ref", "angle_ref", "dihedral_ref"][: expected + 1])
            seeds = " (rows 0-2 seed the frame)" if not cartesian and k < 3 else ""
            raise ZMatrixError(f"zmatrix row {k} {list(row)}: expected [{form}]{seeds}")
        if not 0 <= atom < n_atoms:
            raise ZMatrixError(f"zmatrix row {k} {list(row)}: atom {atom} is out of range [0, {n_atoms})")
        if atom in placed:
            raise ZMatrixError(f"zmatrix row {k} {list(row)}: atom {atom} is defined twice")
        if len(set(refs) | {atom}) != len(refs) + 1:
            raise ZMatrixError(f"zmatrix row {k} {list(row)}: the atom and its references must be distinct")
        late = [r for r in refs if r not in placed]
        if late:
            raise ZMatrixError(f"zmatrix row {k} {list(row)}: reference(s) {late} are not placed "
                               "before this row")
        placed.add(atom)
    missing = sorted(set(range(n_atoms)) - placed)
    if missing:
        raise ZMatrixError(f"the zmatrix does not place atom(s) {missing[:10]}{' …' if len(missing) > 10 else ''}; "
                           f"every one of the {n_atoms} atoms needs a row")


def _graph(topology) -> tuple[int, list[list[int]], list[bool]]:
    """Atom count, sorted neighbour lists and hydrogen flags of an mdtraj or OpenMM topology."""
    if hasattr(topology, "getNumAtoms"):
        import mdtraj

        topology = mdtraj.Topology.from_openmm(topology)
    n = topology.n_atoms
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for bond in topology.bonds:
        i, j = bond.atom1.index, bond.atom2.index
        neighbours[i].add(j)
        neighbours[j].add(i)
    hydrogen = [a.element is not None and a.element.symbol in ("H", "D") for a in topology.atoms]
    return n, [sorted(s) for s in neighbours], hydrogen


def _distances(neighbours: list[list[int]], start: int, allowed: Optional[set] = None) -> list[int]:
    """Graph distances from ``start`` (−1 where unreachable), optionally within ``allowed``."""
    dist = [-1] * len(neighbours)
    dist[start] = 0
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in neighbours[i]:
            if dist[j] < 0 and (allowed is None or j in allowed):
                dist[j] = dist[i] + 1
                queue.append(j)
    return dist


def _path(neighbours: list[list[int]], start: int, end: int, allowed: set) -> list[int]:
    """A shortest path start → end within ``allowed`` (lowest indices on ties)."""
    dist = _distances(neighbours, end, allowed)
    if dist[start] < 0:
        return [start]
    path = [start]
    while path[-1] != end:
        path.append(min(j for j in neighbours[path[-1]] if dist[j] == dist[path[-1]] - 1))
    return path


def _default_backbone(topology, neighbours: list[list[int]], hydrogen: list[bool]) -> list[int]:
    heavy = [i for i in range(len(neighbours)) if not hydrogen[i]] or list(range(len(neighbours)))
    allowed = set(heavy)
    if getattr(topology, "n_residues", 1) > 1:
        # a polymer in residue order: its main chain runs from the first to the last heavy atom
        return _path(neighbours, heavy[0], heavy[-1], allowed)
    dist = _distances(neighbours, heavy[0], allowed)
    far = max(heavy, key=lambda i: (dist[i], -i))
    dist = _distances(neighbours, far, allowed)
    other = max(heavy, key=lambda i: (dist[i], -i))
    return _path(neighbours, min(far, other), max(far, other), allowed)


def build_zmatrix(topology, cartesian: Sequence[int] = (),
                  backbone: Optional[Sequence[int]] = None) -> ZMatrix:
    """A Z-matrix from the bond graph of an mdtraj (or OpenMM) topology.

    Args:
        topology: needs bonds; hydrogens are recognised by element.
        cartesian: atoms to keep Cartesian (mixed layout); they are placed first.
        backbone: bonded path placed first (internal layout only). Default: for several
            residues the heavy-atom path from the first to the last heavy atom (a peptide's
            main chain), otherwise the longest heavy-atom path found by a double
            breadth-first search.
    """
    n, neighbours, hydrogen = _graph(topology)
    if cartesian:
        start = [int(a) for a in cartesian]
        _check_cartesian(n, start)
    else:
        start = list(backbone) if backbone is not None else _default_backbone(topology, neighbours, hydrogen)
        for a, b in zip(start, start[1:]):
            if b not in neighbours[a]:
                raise ZMatrixError(f"backbone {list(start)} is not a bonded path: atoms {a} and {b} are not bonded")
    order: list[int] = []
    position: dict[int, int] = {}
    heap: list[tuple[bool, int, int]] = []

    def place(atom: int) -> None:
        position[atom] = len(order)
        order.append(atom)
        for j in neighbours[atom]:
            if j not in position:
                heapq.heappush(heap, (hydrogen[j], position[atom], j))

    for atom in start:
        place(atom)
    while heap:
        _, _, atom = heapq.heappop(heap)
        if atom not in position:
            place(atom)
    if len(order) < n:
        missing = sorted(set(range(n)) - set(order))
        raise ZMatrixError(f"the bond graph is not connected: atoms {missing[:10]} cannot be reached "
                           f"from atom {start[0]}; give an explicit zmatrix")

    rows: dict[int, tuple[int, int, int, int]] = {}
    pair_rows: dict[tuple[int, int], int] = {}   # (bond_ref, angle_ref) → first atom defined by it
    n_seed = len(start) if cartesian else 0

    def nearest(source: int, exclude: set, before: int) -> int:
        dist = _distances(neighbours, source)
        found = [i for i in range(n) if i not in exclude and position[i] < before and dist[i] >= 0]
        if not found:
            raise ZMatrixError(f"no reference atom for atom {order[before]} is placed before it")
        return min(found, key=lambda i: (dist[i], hydrogen[i], position[i]))

    for k, atom in enumerate(order[n_seed:], start=n_seed):
        if not cartesian and k == 0:
            rows[atom] = (atom, NONE, NONE, NONE)
            continue
        bond = min((j for j in neighbours[atom] if position.get(j, n) < k), key=position.get, default=None)
        if bond is None:
            bond = nearest(atom, {atom}, k)
        if not cartesian and k == 1:
            rows[atom] = (atom, bond, NONE, NONE)
            continue
        parent = rows.get(bond, (NONE, NONE))[1]
        angle = parent if parent != NONE else nearest(bond, {atom, bond}, k)
        if not cartesian and k == 2:
            rows[atom] = (atom, bond, angle, NONE)
            continue
        sibling = pair_rows.get((bond, angle))
        grand = rows.get(angle, (NONE, NONE))[1]
        if sibling is not None:
            dihedral = sibling
        elif grand not in (NONE, atom, bond):
            dihedral = grand
        else:
            dihedral = nearest(angle, {atom, bond, angle}, k)
        rows[atom] = (atom, bond, angle, dihedral)
        pair_rows.setdefault((bond, angle), atom)
    return ZMatrix(n, tuple(rows[a] for a in order[n_seed:]), tuple(start) if cartesian else ())
