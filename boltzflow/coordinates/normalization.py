"""Normalised internal coordinates around a reference, and their domains for the flow.

With a reference (one structure, or data frames) and scales s::

    bond      u = (b - b_ref) / s_b     Interval: b in [max(b_ref - h s_b, b_ref / 2), b_ref + h s_b]
    angle     u = (θ - θ_ref) / s_θ     Interval: θ in [max(θ_ref - h s_θ, δ), min(θ_ref + h s_θ, π - δ)]
    dihedral  u = wrap(φ - φ_ref)       Circle: [-π, π)
    branch dihedral                     Interval: u in [-h_br, h_br]

* reference: the mean bond and angle over the frames and the circular mean dihedral
  (one structure: its own values).
* scales: the frames' standard deviation when there are at least two frames (floored at
  ``MIN_BOND_SCALE`` and ``MIN_ANGLE_SCALE``), otherwise ``bond_scale`` and ``angle_scale``:
  one number for all (default 0.004 nm and 0.1 rad, about the thermal spread of Amber bonds,
  0.0023-0.0031 nm, and angles, 0.06-0.10 rad, at 300 K, rounded up) or one per coordinate,
  e.g. the force field's thermal widths √(kT/k) (``boltzflow.energy.harmonic``).
* half-width h = max(``width``, 1.25 × the largest |u| of any reference frame), default
  ``width`` = 8 scales: thermal fluctuations fill about an eighth of each half-interval,
  and a harmonic bond or angle at the edge costs 8²/2 = 32 kT, so no conformation of the
  target temperature falls outside while the data all lie well inside.
* branch dihedrals (``ZMatrix.branch_dihedrals``: an atom placed against a sibling
  substituent, e.g. Cβ–Cα–N–C′) are stiff, a few degrees around ±120° or 180°; h_br =
  max(``BRANCH_WIDTH`` = 0.8 rad, 1.25 × the largest |u| of any frame). A tetrahedral
  branch sits 55–65° from the plane of the others, so ±0.8 rad (46°, 6–9 thermal standard
  deviations) keeps every substituent on its side. This fixes the handedness of chiral centres
  (no mirror images: L-alanine stays L) and the labelling of equivalent hydrogens. Frames
  that span more than ±π/1.25 leave it a circle.
* angles stay δ = ``ANGLE_MARGIN`` (0.05 rad) away from 0 and π, where the dihedral of the
  next atom is undefined; bonds stay above half their reference length.

The map u → (b, θ, φ) has log|det| = Σ log s_b + Σ log s_θ (dihedrals: 0). Values outside
the intervals are still mapped (finitely) both ways; the flow gives them ``log_prob = -inf``.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor, nn

from ..domains import Circle, Domain, Interval, wrap

BOND_SCALE = 0.004       # nm
ANGLE_SCALE = 0.1        # rad
MIN_BOND_SCALE = 1e-4    # nm
MIN_ANGLE_SCALE = 1e-3   # rad
ANGLE_MARGIN = 0.05      # rad
WIDTH = 8.0              # scales
BRANCH_WIDTH = 0.8       # rad


Scale = Union[float, Sequence[float], Tensor]


def _per_coordinate(scale: Scale, like: Tensor, name: str) -> Tensor:
    """``scale`` (one number, or one per coordinate) as a float64 tensor shaped like ``like``."""
    values = torch.as_tensor(scale, dtype=torch.float64)
    if values.dim() > 1 or (values.dim() == 1 and values.shape != like.shape):
        raise ValueError(f"{name} must be one number or {len(like)} numbers, got shape {list(values.shape)}")
    if not bool((values > 0).all()):
        raise ValueError(f"{name} must be positive, got {scale}")
    return values.expand_as(like).clone()


def circular_mean(angles: Tensor, dim: int = 0) -> Tensor:
    """Circular mean of angles (radians) along ``dim``, in [-π, π)."""
    return wrap(torch.atan2(torch.sin(angles).mean(dim), torch.cos(angles).mean(dim)))


class Normalization(nn.Module):
    """Shift-and-scale of bonds and angles, rotation of dihedrals, and the resulting domains.

    Args:
        bonds, angles, dihedrals: reference values [frames, n_bonds] (nm), [frames, n_angles]
            and [frames, n_dihedrals] (rad).
        width, bond_scale, angle_scale: see the module docstring.
        angle_names: one label per angle, for error messages.
        branch: per dihedral, whether it is a branch dihedral (interval domain).
    """

    def __init__(self, bonds: Tensor, angles: Tensor, dihedrals: Tensor, width: float = WIDTH,
                 bond_scale: Scale = BOND_SCALE, angle_scale: Scale = ANGLE_SCALE,
                 angle_names: Sequence[str] = (), branch: Sequence[bool] = ()):
        super().__init__()
        bonds, angles, dihedrals = (v.to(torch.float64) for v in (bonds, angles, dihedrals))
        frames = len(bonds)
        b_ref, a_ref = bonds.mean(0), angles.mean(0)
        b_scale = _per_coordinate(bond_scale, b_ref, "bond_scale")
        a_scale = _per_coordinate(angle_scale, a_ref, "angle_scale")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        if frames > 1:
            b_scale = bonds.std(0).clamp_min(MIN_BOND_SCALE)
            a_scale = angles.std(0).clamp_min(MIN_ANGLE_SCALE)
        linear = ((a_ref <= ANGLE_MARGIN) | (a_ref >= math.pi - ANGLE_MARGIN)).nonzero()[:, 0].tolist()
        if linear:
            k = linear[0]
            name = angle_names[k] if angle_names else f"angle {k}"
            raise ValueError(f"{name} is {math.degrees(a_ref[k]):.2f}° in the reference: the atom is (nearly) "
                             "collinear with its bond and angle references, so its dihedral is undefined; "
                             "choose a Z-matrix with another angle reference")
        b_half = (1.25 * ((bonds - b_ref) / b_scale).abs().amax(0)).clamp_min(width)
        a_half = (1.25 * ((angles - a_ref) / a_scale).abs().amax(0)).clamp_min(width)
        b_low = torch.maximum(-b_half, -0.5 * b_ref / b_scale)
        a_low = torch.maximum(-a_half, (ANGLE_MARGIN - a_ref) / a_scale)
        a_high = torch.minimum(a_half, (math.pi - ANGLE_MARGIN - a_ref) / a_scale)
        self.domains: tuple[Domain, ...] = (
            tuple(Interval(lo, hi) for lo, hi in zip(b_low.tolist(), b_half.tolist()))
            + tuple(Interval(lo, hi) for lo, hi in zip(a_low.tolist(), a_high.tolist()))
            + tuple(self._dihedral_domains(dihedrals, branch)))
        self.n_bonds, self.n_angles = len(b_ref), len(a_ref)
        self.register_buffer("bond_ref", b_ref)
        self.register_buffer("bond_scale", b_scale)
        self.register_buffer("angle_ref", a_ref)
        self.register_buffer("angle_scale", a_scale)
        self.register_buffer("dihedral_ref", circular_mean(dihedrals))
        self.log_scale = float(b_scale.log().sum() + a_scale.log().sum())

    @staticmethod
    def _dihedral_domains(dihedrals: Tensor, branch: Sequence[bool]) -> list[Domain]:
        spread = wrap(dihedrals - circular_mean(dihedrals)).abs().amax(0)
        domains: list[Domain] = []
        for k, half in enumerate((1.25 * spread).clamp_min(BRANCH_WIDTH).tolist()):
            is_branch = k < len(branch) and branch[k] and half < math.pi
            domains.append(Interval(-half, half) if is_branch else Circle())
        return domains

    def normalize(self, bonds: Tensor, angles: Tensor, dihedrals: Tensor) -> Tensor:
        """Physical values [batch, n_*] (nm, rad) → normalised coordinates [batch, dim]."""
        return torch.cat([(bonds - self.bond_ref.to(bonds)) / self.bond_scale.to(bonds),
                          (angles - self.angle_ref.to(angles)) / self.angle_scale.to(angles),
                          wrap(dihedrals - self.dihedral_ref.to(dihedrals))], dim=-1)

    def physical(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised coordinates [batch, dim] → bonds (nm), angles and dihedrals in [-π, π) (rad)."""
        b, a, d = u.split([self.n_bonds, self.n_angles, u.shape[-1] - self.n_bonds - self.n_angles], dim=-1)
        return (self.bond_ref.to(u) + self.bond_scale.to(u) * b,
                self.angle_ref.to(u) + self.angle_scale.to(u) * a,
                wrap(self.dihedral_ref.to(u) + d))
