"""Methyl and NH₃⁺ rotors confined to one of their three equivalent sectors.

A rotor is a heavy atom X with exactly three hydrogens whose per-particle force-field
parameters are identical, and one other neighbour Y: the energy does not change when the
three hydrogens are relabelled cyclically. In the Z-matrix (``build_zmatrix``) the first
hydrogen has a free torsion τ₁ (row ``[h₁, X, Y, W]``) and its siblings are placed by branch
dihedrals δ against it (rows ``[h, X, Y, h₁]``), so that τ_k = τ₁ + δ_k. With the siblings
ordered h₊ (δ₊ ≈ +2π/3) and h₋ (δ₋ ≈ −2π/3), the rotor angle is

    τ̄ = τ₁ + g(δ),   g(δ) = arg(1 + exp(i(δ₊ − 2π/3)) + exp(i(δ₋ + 2π/3))).

A cyclic relabelling (h₁, h₊, h₋) → (h₊, h₋, h₁) shifts τ̄ by exactly 2π/3, so the sector
τ̄ ∈ [c − π/3, c + π/3) holds exactly one of the three labellings of every structure; c
is the reference's τ̄ (frames: the circular mean of 3τ̄ over 3, in the first frame's sector),
so the reference keeps its labelling. (τ₁, δ) → (τ̄, δ) is a shear (unit Jacobian) and the
flow's coordinate is θ = 3(τ̄ − c) on the circle, so log|det ∂τ₁/∂θ| = −log 3 per rotor.
``inverse`` relabels each rotor's hydrogens into the sector first (a permutation of atoms:
no Jacobian), so all three labellings of a structure map to the same z.

Normalisation: exp(−u)|det J| over the sector chart integrates to Z / 3 per rotor, where Z
is the integral over the structures some relabelling of which the full chart covers: the
full chart's, except for distortions that take a relabelled branch dihedral out of its
±0.8 rad interval (``normalization.BRANCH_WIDTH``: ≥ 6 thermal standard deviations,
≥ 18 kT). log Z of the full space = log Z(sector) + log 3 per rotor (``log_sectors``).
g is smooth: δ± stay within π/2 of ±2π/3 on their intervals, so the sum has a positive
real part. At the seam θ = ±π the two sides are neighbouring labellings with the same δ: the
target on the circle is continuous there for a symmetric rotor (δ± = ±2π/3) and otherwise
jumps by the small energy difference its distortion makes; the map stays exact.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..domains import wrap
from ..geometry import dihedral_angles
from .normalization import circular_mean
from .zmatrix import ZMatrix, ZMatrixError

THIRD = 2 * math.pi / 3
# a rotor's siblings must sit within this of ±2π/3 in the reference (tetrahedral geometry)
SIBLING_TOLERANCE = math.pi / 6

Rotor = tuple[int, tuple[int, int, int]]   # (heavy atom, its three hydrogens)


def find_rotors(topology, openmm_system) -> list[Rotor]:
    """Rotors of an mdtraj topology: every heavy atom bonded to exactly three hydrogens and
    one other atom, whose hydrogens have identical per-particle parameters in every force of
    ``openmm_system`` (charges, Lennard-Jones and GB parameters)."""
    neighbours: dict[int, list[int]] = {a.index: [] for a in topology.atoms}
    for bond in topology.bonds:
        neighbours[bond.atom1.index].append(bond.atom2.index)
        neighbours[bond.atom2.index].append(bond.atom1.index)
    hydrogen = {a.index for a in topology.atoms if a.element is not None and a.element.symbol in ("H", "D")}
    forces = [f for f in openmm_system.getForces()
              if hasattr(f, "getParticleParameters") and hasattr(f, "getNumParticles")]
    rotors = []
    for atom in sorted(set(neighbours) - hydrogen):
        hs = sorted(set(neighbours[atom]) & hydrogen)
        if len(hs) != 3 or len(neighbours[atom]) != 4:
            continue
        if all(len({str(f.getParticleParameters(h)) for h in hs}) == 1 for f in forces):
            rotors.append((atom, tuple(hs)))
    return rotors


def _g(plus: Tensor, minus: Tensor) -> Tensor:
    """g(δ₊, δ₋) of the module docstring (radians), elementwise."""
    a, b = plus - THIRD, minus + THIRD
    return torch.atan2(torch.sin(a) + torch.sin(b), 1 + torch.cos(a) + torch.cos(b))


def _rotor_rows(zmatrix: ZMatrix, rotor: Rotor) -> Optional[tuple[int, list[int]]]:
    """(first hydrogen, its two siblings) if the Z-matrix places ``rotor`` as the module
    docstring says (rows [h₁, X, Y, W], [h, X, Y, h₁]), else None."""
    heavy, hydrogens = rotor
    rows = {row[0]: row for row in zmatrix.dihedrals}
    if any(h not in rows for h in hydrogens) or len({rows[h][1:3] for h in hydrogens}) != 1:
        return None
    first = [h for h in hydrogens if rows[h][3] not in hydrogens]
    siblings = [h for h in hydrogens if h not in first]
    if len(first) != 1 or rows[first[0]][1] != heavy or any(rows[h][3] != first[0] for h in siblings):
        return None
    return first[0], siblings


def placed_rotors(zmatrix: ZMatrix, rotors: Sequence[Rotor]) -> list[Rotor]:
    """The ``rotors`` that ``zmatrix`` places as rotors (the others stay as they are)."""
    return [rotor for rotor in rotors if _rotor_rows(zmatrix, rotor) is not None]


class RotorSectors(nn.Module):
    """τ₁ ⇄ θ = wrap(3(τ₁ + g(δ) − c)) for each rotor, and the relabelling into the sector.

    Args:
        zmatrix: places each rotor's hydrogens as the module docstring says.
        rotors: (heavy atom, three hydrogens) each.
        dihedrals: reference dihedrals [frames, n_dihedrals] (rad) of the Z-matrix.
        half_widths: per dihedral, the half-width (rad) of its interval domain, or None for a
            circle; a sibling must stay within π/2 of ±2π/3 on it.
    """

    def __init__(self, zmatrix: ZMatrix, rotors: Sequence[Rotor], dihedrals: Tensor,
                 half_widths: Sequence[Optional[float]]):
        super().__init__()
        rows = {row[0]: (k, row) for k, row in enumerate(zmatrix.dihedrals)}
        columns, atoms = [], []
        for heavy, hydrogens in rotors:
            where = f"rotor at atom {heavy} (hydrogens {list(hydrogens)})"
            found = _rotor_rows(zmatrix, (heavy, hydrogens))
            if found is None:
                raise ZMatrixError(f"{where}: the zmatrix does not place it as a rotor (rows [h1, X, Y, W], "
                                   "[h2, X, Y, h1], [h3, X, Y, h1]); use such rows or turn rotor sectors off")
            first, siblings = found
            reference = {h: circular_mean(dihedrals[:, rows[h][0]]).item() for h in siblings}
            plus, minus = sorted(siblings, key=lambda h: -reference[h])
            for h, target in ((plus, THIRD), (minus, -THIRD)):
                off = abs(wrap(torch.tensor(reference[h] - target)).item())
                half = half_widths[rows[h][0]]
                if off > SIBLING_TOLERANCE or half is None or off + half >= math.pi / 2:
                    raise ZMatrixError(f"{where}: hydrogen {h} sits {math.degrees(off):.0f}° from ±120° in the "
                                       "reference or has too wide a branch interval; not a tetrahedral rotor "
                                       "(turn rotor sectors off)")
            columns.append([rows[h][0] for h in (first, plus, minus)])
            atoms.append([first, plus, minus])
        self.n_rotors = len(columns)
        long = dict(dtype=torch.long, device=dihedrals.device)
        self.register_buffer("columns", torch.tensor(columns, **long).reshape(-1, 3), persistent=False)
        self.register_buffer("atoms", torch.tensor(atoms, **long).reshape(-1, 3), persistent=False)
        self.register_buffer("quads", torch.tensor([rows[h][1] for row in atoms for h in row], **long)
                             .reshape(-1, 3, 4), persistent=False)
        bar = self._bar(dihedrals.to(torch.float64))
        # the circular mean of 3τ̄, over 3, turned by a multiple of 2π/3 to the first frame's τ̄
        center = torch.atan2(torch.sin(3 * bar).mean(0), torch.cos(3 * bar).mean(0)) / 3
        center = center + THIRD * torch.round(wrap(bar[0] - center) / THIRD)
        self.register_buffer("center", center, persistent=False)
        self.rotors = [(heavy, tuple(row)) for (heavy, _), row in zip(rotors, atoms)]

    @property
    def log_sectors(self) -> float:
        """n_rotors · log 3: log Z of the full space minus log Z of the sector chart."""
        return self.n_rotors * math.log(3)

    def _bar(self, dihedrals: Tensor) -> Tensor:
        """τ̄ [batch, n_rotors] (rad, not wrapped) of dihedrals [batch, n_dihedrals]."""
        tau, plus, minus = dihedrals[:, self.columns].unbind(-1)
        return tau + _g(plus, minus)

    def theta(self, dihedrals: Tensor) -> Tensor:
        """θ [batch, n_rotors] in [-π, π) of physical dihedrals [batch, n_dihedrals] (rad)."""
        return wrap(3 * (self._bar(dihedrals) - self.center.to(dihedrals)))

    def place(self, theta: Tensor, dihedrals: Tensor) -> Tensor:
        """Dihedrals [batch, n_dihedrals] with each rotor's τ₁ set from θ [batch, n_rotors]
        and its siblings' δ (already in ``dihedrals``)."""
        _, plus, minus = dihedrals[:, self.columns].unbind(-1)
        tau = wrap(self.center.to(theta) + theta / 3 - _g(plus, minus))
        return dihedrals.index_copy(1, self.columns[:, 0], tau)

    def relabel(self, xyz: Tensor) -> Tensor:
        """Positions [batch, n_atoms, 3] with each rotor's hydrogens relabelled cyclically so
        that its τ̄ lies in the sector [c − π/3, c + π/3)."""
        if not self.n_rotors:
            return xyz
        tau, plus, minus = dihedral_angles(xyz, self.quads.reshape(-1, 4)).reshape(len(xyz), -1, 3).unbind(-1)
        offset = wrap(tau + _g(plus, minus) - self.center.to(xyz))
        # sector index j ∈ {−1, 0, 1}; moving slot m to the atom of slot m − j shifts τ̄ by −2πj/3
        shift = torch.floor((offset + math.pi / 3) / THIRD).clamp(-1, 1).long()
        source = (torch.arange(3, device=xyz.device) - shift[..., None]) % 3            # [batch, rotors, 3]
        atoms = self.atoms.expand(len(xyz), -1, -1)
        moved = xyz[torch.arange(len(xyz), device=xyz.device)[:, None, None], atoms.gather(-1, source)]
        return xyz.index_copy(1, self.atoms.flatten(), moved.flatten(1, 2))
