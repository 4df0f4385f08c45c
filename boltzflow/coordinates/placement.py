"""Placing atoms from a Z-matrix: bonds, angles and dihedrals (physical units) → positions.

Internal layout: the first row's atom at the origin, the second on +x, the third in the
xy plane (y > 0). Mixed layout: the Cartesian atoms are given. Every other atom is placed
by NeRF (natural extension reference frame) from its three references, level by level:
all atoms whose references are already placed go in one batched step, so the Python loop
runs over levels (about 6 for alanine dipeptide), never over atoms or samples.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .zmatrix import ZMatrix


def _unit(v: Tensor) -> Tensor:
    """v / |v| along the last axis; a zero vector stays zero (finite value and gradient)."""
    return v * torch.rsqrt((v * v).sum(-1, keepdim=True).clamp_min(torch.finfo(v.dtype).eps ** 2))


class Placement(nn.Module):
    """``placement(bonds, angles, dihedrals, cartesian=None) -> xyz`` for one ``ZMatrix``.

    Inputs follow the Z-matrix's coordinate order: bonds [batch, n_bonds] (nm), angles
    [batch, n_angles] and dihedrals [batch, n_dihedrals] (rad); in the mixed layout
    ``cartesian`` [batch, n_cartesian, 3] (nm) gives the Cartesian atoms. Differentiable.
    """

    def __init__(self, zmatrix: ZMatrix):
        super().__init__()
        rows = zmatrix.rows
        self.n_atoms = zmatrix.n_atoms
        first = 0 if zmatrix.is_mixed else 3      # internal layout: rows 0-2 seed the frame
        level = {a: 0 for a in zmatrix.cartesian}
        level.update({r[0]: 0 for r in rows[:first]})
        for r in rows[first:]:
            level[r[0]] = 1 + max(level[i] for i in r[1:])
        placed = sorted(range(len(rows) - first), key=lambda k: (level[rows[first + k][0]], k))
        depth = [level[rows[first + k][0]] for k in placed]
        self.levels = [(depth.index(d), len(depth) - depth[::-1].index(d)) for d in sorted(set(depth))]
        self.seeded = bool(first)
        long = dict(dtype=torch.long)
        self.register_buffer("order", torch.tensor(placed, **long), persistent=False)
        self.register_buffer("atoms", torch.tensor([rows[first + k][0] for k in placed], **long), persistent=False)
        # NeRF references (dihedral, angle, bond), one row per placed atom
        self.register_buffer("references", torch.tensor([rows[first + k][:0:-1] for k in placed], **long)
                             .reshape(-1, 3), persistent=False)
        self.register_buffer("cartesian_atoms", torch.tensor(zmatrix.cartesian, **long), persistent=False)
        self.register_buffer("seeds", torch.tensor([r[0] for r in rows[1:3]] if first else [], **long),
                             persistent=False)
        self.third_on_first = bool(first) and rows[2][1] == rows[0][0]

    def _place_seeds(self, xyz: Tensor, r: Tensor, theta: Tensor) -> Tensor:
        """Second seed atom at (r₁, 0, 0), third in the xy plane with y > 0; the first stays at the origin."""
        zero = torch.zeros_like(theta)
        x3 = r[:, 1] * torch.cos(theta)
        second = torch.stack([r[:, 0], zero, zero], dim=-1)
        third = torch.stack([x3 if self.third_on_first else r[:, 0] - x3, r[:, 1] * torch.sin(theta), zero], dim=-1)
        return xyz.index_copy(1, self.seeds, torch.stack([second, third], dim=1))

    def forward(self, bonds: Tensor, angles: Tensor, dihedrals: Tensor,
                cartesian: Optional[Tensor] = None) -> Tensor:
        xyz = bonds.new_zeros(len(bonds), self.n_atoms, 3)
        if self.seeded:
            xyz = self._place_seeds(xyz, bonds[:, :2], angles[:, 0])
            bonds, angles = bonds[:, 2:], angles[:, 1:]
        else:
            if cartesian is None:
                raise ValueError("this Z-matrix has Cartesian atoms: pass their positions as `cartesian`")
            xyz = xyz.index_copy(1, self.cartesian_atoms, cartesian)
        r = bonds[:, self.order, None]
        theta, phi = angles[:, self.order, None], dihedrals[:, self.order, None]
        local = (-r * torch.cos(theta), r * torch.sin(theta) * torch.cos(phi), r * torch.sin(theta) * torch.sin(phi))
        for start, end in self.levels:
            a, b, c = xyz[:, self.references[start:end]].unbind(2)
            bc = _unit(c - b)
            normal = _unit(torch.linalg.cross(b - a, bc, dim=-1))
            in_plane = torch.linalg.cross(normal, bc, dim=-1)
            position = (c + local[0][:, start:end] * bc + local[1][:, start:end] * in_plane
                        + local[2][:, start:end] * normal)
            xyz = xyz.index_copy(1, self.atoms[start:end], position)
        return xyz
