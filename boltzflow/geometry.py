"""Geometry of positions [batch, n_atoms, 3] (nm): bond lengths, angles and IUPAC dihedrals.

Vectors are handled as triples of [batch, K] component tensors (``Vector``); the energy
terms build them from incidence matrices, the functions below by gathering atoms.
"""

from __future__ import annotations

import torch
from torch import Tensor

Vector = tuple[Tensor, Tensor, Tensor]


def dot(a: Vector, b: Vector) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def cross(a: Vector, b: Vector) -> Vector:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def norm(a: Vector) -> Tensor:
    """Euclidean norm with a finite gradient at zero."""
    return torch.sqrt(dot(a, a).clamp_min(torch.finfo(a[0].dtype).tiny))


def angle(u: Vector, v: Vector) -> Tensor:
    """Angle between u and v in [0, π] (atan2 form: accurate near 0 and π)."""
    return torch.atan2(norm(cross(u, v)), dot(u, v))


def dihedral(b1: Vector, b2: Vector, b3: Vector) -> Tensor:
    """IUPAC dihedral in [-π, π] of the bond vectors b1, b2, b3 (OpenMM's and mdtraj's sign)."""
    n1, n2 = cross(b1, b2), cross(b2, b3)
    return torch.atan2(norm(b2) * dot(b1, n2), dot(n1, n2))


def _gathered(xyz: Tensor, head: Tensor, tail: Tensor) -> Vector:
    return (xyz[:, head] - xyz[:, tail]).unbind(-1)


def bond_lengths(xyz: Tensor, pairs: Tensor) -> Tensor:
    """Distances [batch, M] between atom pairs [M, 2]."""
    return norm(_gathered(xyz, pairs[:, 1], pairs[:, 0]))


def bond_angles(xyz: Tensor, triples: Tensor) -> Tensor:
    """Angles i-j-k in [0, π], shape [batch, M], for triples [M, 3] (vertex in the middle)."""
    return angle(_gathered(xyz, triples[:, 0], triples[:, 1]), _gathered(xyz, triples[:, 2], triples[:, 1]))


def dihedral_angles(xyz: Tensor, quads: Tensor) -> Tensor:
    """IUPAC dihedrals in [-π, π] of quadruples [M, 4] (same sign as OpenMM and mdtraj)."""
    q = quads.unbind(-1)
    return dihedral(_gathered(xyz, q[1], q[0]), _gathered(xyz, q[2], q[1]), _gathered(xyz, q[3], q[2]))
