"""InternalCoordinates: the bijection between normalised internal coordinates and Cartesian positions.

Base side (the flow's side): a flat vector z [batch, dim] laid out as
``[bonds | angles | dihedrals | Cartesian PCA]``, normalised as in ``normalization``; its
``domains`` are ``Interval`` for bonds, angles and branch dihedrals, ``Circle`` for the other
dihedrals and ``Real`` for
the PCA coordinates of the mixed layout, so ``spline_flow(ic.domains)`` fits it directly.
Data side: positions [batch, n_atoms, 3] in nm, defined up to a rigid-body motion.

Fixed bonds (``fixed_bonds``, e.g. a system's X–H bonds constrained by OpenMM): each one must
be a Z-matrix bond (some row's atom and bond reference); it is not a coordinate of z (one
dimension fewer per bond), ``forward`` places it at its fixed length and ``inverse`` ignores
its measured length (positions are projected onto the constraint surface).

``forward`` (z → xyz) turns z into bonds, angles and dihedrals and places the atoms with
``Placement`` (level-wise batched NeRF; the mixed layout's Cartesian block first).

Rotor sectors (``rotors``, ``boltzflow.coordinates.rotors``): the free torsion of each
methyl / NH₃⁺ rotor's first hydrogen is replaced in z by θ = 3(τ̄ − c), which confines the
rotor to one of its three equivalent sectors; log|det J| gains −log 3 per rotor and
``log_sectors`` = n_rotors · log 3 is what log Z of the full space adds to the sector's.

log|det J| is the physical one: of (translation, rotation, z) → xyz at the identity rotation
(rotation vector, whose Haar density is 1 there), so that exp(−u(x(z))) |det J| is the
Boltzmann density of z with rigid-body motion integrated out::

    log|det J| = Σ_bonds 2 log r + Σ_angles log sin θ          (r₁², r₂² sin θ₂ of the seeds included)
               + Σ log s_bond + Σ log s_angle                  (normalisation)
               + Σ log σ + log|det Uᵀ[T, R(x)]|                (mixed layout: Cartesian block)

With fixed bonds the sum over bonds still runs over every Z-matrix bond: a fixed bond adds the
constant 2 log r⁰. log|det J| is then that of (translation, rotation, z, r_fixed) → xyz at
r_fixed = r⁰, so exp(−u) |det J| is the Boltzmann density of z with rigid bonds, normalised by

    Z = ∫ exp(−u(x)) Π_fixed δ(r_c(x) − r⁰_c) dx / (rigid-body volume),

the stiff-bond limit of the flexible molecule (each bond's δ in its length, no mass metric).
MD with the same constraints (SHAKE / RATTLE) samples another density on the same surface:
this one times det(Z_m(x))^½, Z_m,ab = Σ_i ∇ᵢσ_a·∇ᵢσ_b / m_i over the constraints σ (Fixman's
mass-metric factor, ``fixman.fixman_log_factor``; for X–H bonds it depends only on the H–X–H
angles of one heavy atom).

``inverse`` returns −log|det J| at the same point. The Cartesian side is not a flat vector
of ``dim`` numbers over domains (3 n_atoms coordinates, 6 of them rigid-body), so this is
not a ``flows.Bijection``: apply it to a ``Flow``'s samples (z = flow sample, xyz = ic(z))
rather than composing it into the flow's layers.

Degenerate geometry: reference frames whose atoms are (nearly) collinear in the reference
structure are rejected at construction with an error naming the atoms. At run time a
collinear frame gives finite positions (its normalisations are clamped), and an angle of
exactly 0 or π gives log|det| = −inf; nothing returns NaN for finite input.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..energy.harmonic import harmonic_widths
from ..geometry import bond_angles, bond_lengths, dihedral_angles
from ..domains import Domain, Real, check_domains
from .cartesian import CARTESIAN_SCALE, CartesianBlock
from .normalization import ANGLE_MARGIN, ANGLE_SCALE, BOND_SCALE, WIDTH, Normalization, Scale
from .placement import Placement
from .rotors import Rotor, RotorSectors, find_rotors, placed_rotors
from .zmatrix import ZMatrix, ZMatrixError, build_zmatrix

Positions = Union[Tensor, np.ndarray]


class InternalCoordinates(nn.Module):
    """Normalised internal coordinates [batch, dim] over ``domains`` ⇄ Cartesian positions
    [batch, n_atoms, 3] (nm), with the log-Jacobian determinant of each direction.

    Args:
        zmatrix: a ``ZMatrix`` (internal or mixed layout).
        reference: one structure [n_atoms, 3] or data frames [frames, n_atoms, 3] (nm):
            sets the normalisation (and the PCA of the Cartesian block).
        width, bond_scale, angle_scale: interval widths and scales for a single reference
            structure (one number, or one per bond / angle), see ``boltzflow.coordinates.normalization``.
        cartesian_scale: σ (nm) of the Cartesian block when ``reference`` is one structure.
        fixed_bonds: (atom, atom, length nm) of bonds held at a fixed length (not coordinates);
            ``bond_scale`` then gives one number per remaining bond.
        rotors: (heavy atom, its three hydrogens) of the rotors confined to one sector
            (``rotors.find_rotors``); each must be placed as a rotor by the Z-matrix.
    """

    def __init__(self, zmatrix: ZMatrix, reference: Positions, width: float = WIDTH,
                 bond_scale: Scale = BOND_SCALE, angle_scale: Scale = ANGLE_SCALE,
                 cartesian_scale: float = CARTESIAN_SCALE, fixed_bonds: Sequence[tuple[int, int, float]] = (),
                 rotors: Sequence[Rotor] = ()):
        n = zmatrix.n_atoms
        ref = torch.as_tensor(reference, dtype=torch.float64)
        ref = ref[None] if ref.dim() == 2 else ref
        if ref.dim() != 3 or ref.shape[1:] != (n, 3) or len(ref) == 0:
            raise ValueError(f"reference must have shape [{n}, 3] or [frames, {n}, 3], got {list(ref.shape)}")
        fixed = fixed_bond_lengths(zmatrix, fixed_bonds)
        free = [k for k in range(len(zmatrix.bonds)) if k not in fixed]
        bonds = torch.tensor([zmatrix.bonds[k] for k in free], dtype=torch.long, device=ref.device).reshape(-1, 2)
        angles = torch.tensor(zmatrix.angles, dtype=torch.long, device=ref.device).reshape(-1, 3)
        dihedrals = torch.tensor(zmatrix.dihedrals, dtype=torch.long, device=ref.device).reshape(-1, 4)
        _check_frames(ref, dihedrals)
        reference_dihedrals = dihedral_angles(ref, dihedrals)
        normalization = Normalization(
            bond_lengths(ref, bonds), bond_angles(ref, angles), reference_dihedrals,
            width, bond_scale, angle_scale, [f"angle {'-'.join(map(str, a))}" for a in zmatrix.angles],
            zmatrix.branch_dihedrals)
        widths = [d.high if d.kind == "interval" else None
                  for d in normalization.domains[normalization.n_bonds + normalization.n_angles:]]
        sectors = RotorSectors(zmatrix, rotors, reference_dihedrals, widths)
        block = None
        if zmatrix.is_mixed:
            block = CartesianBlock(ref[:, list(zmatrix.cartesian)], cartesian_scale)
        super().__init__()
        self.domains: tuple[Domain, ...] = check_domains(
            normalization.domains + (Real(),) * (block.dim if block else 0))
        self.zmatrix = zmatrix
        self.n_atoms = n
        self.normalization = normalization
        self.cartesian_block = block
        self.n_internal = len(normalization.domains)
        self.register_buffer("bonds", bonds, persistent=False)
        self.fixed_bonds = [zmatrix.bonds[k] for k in fixed]
        self.register_buffer("fixed_length", torch.tensor(list(fixed.values()), dtype=torch.float64,
                                                          device=ref.device), persistent=False)
        # Z-matrix bond order of [free bonds | fixed bonds]
        self.register_buffer("bond_order", torch.tensor(free + list(fixed), device=ref.device).argsort(),
                             persistent=False)
        self.register_buffer("angles", angles, persistent=False)
        self.register_buffer("dihedrals", dihedrals, persistent=False)
        self.placement = Placement(zmatrix)
        self.sectors = sectors
        self.register_buffer("rotor_slots", self.n_bonds + self.n_angles + sectors.columns[:, 0], persistent=False)
        self.to(ref.device)

    @property
    def dim(self) -> int:
        """Number of internal coordinates (the flow's dimension)."""
        return len(self.domains)

    @property
    def n_bonds(self) -> int:
        """Number of bond coordinates of z (fixed bonds excluded)."""
        return len(self.bonds)

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    @property
    def rotors(self) -> list:
        """(heavy atom, (h₁, h₊, h₋)) of each rotor confined to one sector."""
        return self.sectors.rotors

    @property
    def log_sectors(self) -> float:
        """n_rotors · log 3: log Z of the full space = log Z of these coordinates + this."""
        return self.sectors.log_sectors

    def dihedral_index(self, atoms: Sequence[int]) -> int:
        """Index in z of the dihedral over ``atoms`` (4 indices, either direction), e.g. φ."""
        return self.n_bonds + self.n_angles + self.zmatrix.dihedral_index(atoms)

    @property
    def labels(self) -> list[str]:
        """One name per dimension of z, e.g. ``"bond 4-1"``, ``"dihedral 14-8-6-4"``, ``"pca 0"``;
        a rotor's θ is named after its first hydrogen's torsion, ``"rotor 0-1-4-6"``."""
        rotor_rows = set(self.sectors.columns[:, 0].tolist())
        names = ([f"bond {'-'.join(map(str, b))}" for b in self.bonds.tolist()]
                 + [f"angle {'-'.join(map(str, a))}" for a in self.zmatrix.angles]
                 + [f"{'rotor' if k in rotor_rows else 'dihedral'} {'-'.join(map(str, d))}"
                    for k, d in enumerate(self.zmatrix.dihedrals)])
        return names + [f"pca {k}" for k in range(self.dim - len(names))]

    def physical(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Free bonds (nm), angles and dihedrals in [-π, π) (rad) of normalised z [batch, dim]."""
        self._check_flat(z)
        bonds, angles, dihedrals = self.normalization.physical(z[:, : self.n_internal])
        return bonds, angles, self.sectors.place(z[:, self.rotor_slots], dihedrals)

    def _check_flat(self, z: Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected internal coordinates of shape [batch, {self.dim}], got {list(z.shape)}")

    def _all_bonds(self, bonds: Tensor) -> Tensor:
        """Free bonds [batch, n_bonds] → every Z-matrix bond [batch, n_bonds + n_fixed] (nm)."""
        fixed = self.fixed_length.to(bonds).expand(len(bonds), -1)
        return torch.cat([bonds, fixed], dim=-1)[:, self.bond_order]

    def _log_det(self, bonds: Tensor, angles: Tensor) -> Tensor:
        """log|det J| of z → xyz from every Z-matrix bond (nm) and angle (rad), [batch]."""
        return (self.normalization.log_scale + 2 * bonds.abs().log().sum(-1)
                + torch.sin(angles).abs().log().sum(-1))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z [batch, dim] → positions [batch, n_atoms, 3] (nm) and log|det J| [batch]."""
        bonds, angles, dihedrals = self.physical(z)
        bonds = self._all_bonds(bonds)
        log_det = self._log_det(bonds, angles) - self.log_sectors
        block = None
        if self.cartesian_block is not None:
            block, block_log_det = self.cartesian_block(z[:, self.n_internal:])
            log_det = log_det + block_log_det
        xyz = self.placement(bonds, angles, dihedrals, block)
        return xyz, log_det

    def inverse(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """Positions [batch, n_atoms, 3] (nm) → z [batch, dim] and log|det ∂z/∂x| [batch]; each
        rotor's hydrogens are relabelled into its sector first."""
        if xyz.dim() != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"expected positions of shape [batch, {self.n_atoms}, 3], got {list(xyz.shape)}")
        xyz = self.sectors.relabel(xyz)
        bonds, angles = bond_lengths(xyz, self.bonds), bond_angles(xyz, self.angles)
        dihedrals = dihedral_angles(xyz, self.dihedrals)
        z = self.normalization.normalize(bonds, angles, dihedrals)
        z = z.index_copy(1, self.rotor_slots, self.sectors.theta(dihedrals))
        log_det = self.log_sectors - self._log_det(self._all_bonds(bonds), angles)
        if self.cartesian_block is not None:
            block, block_log_det = self.cartesian_block.inverse(xyz[:, self.placement.cartesian_atoms])
            z = torch.cat([z, block], dim=-1)
            log_det = log_det + block_log_det
        return z, log_det


def fixed_bond_lengths(zmatrix: ZMatrix, fixed_bonds: Sequence[tuple[int, int, float]]) -> dict[int, float]:
    """Position in ``zmatrix.bonds`` → length (nm) of each fixed bond (atom, atom, length);
    a ``ZMatrixError`` naming the pair if it is not a bond of the Z-matrix."""
    position = {frozenset(bond): k for k, bond in enumerate(zmatrix.bonds)}
    fixed: dict[int, float] = {}
    for i, j, length in fixed_bonds:
        k = position.get(frozenset((int(i), int(j))))
        if k is None:
            raise ZMatrixError(f"constrained bond {i}-{j} is not a bond of the Z-matrix: every constrained pair "
                               "must be some row's [atom, bond_ref]; give a zmatrix that places one atom of "
                               "the pair from the other, or remove the constraint")
        if not length > 0:
            raise ValueError(f"constrained bond {i}-{j} must have a positive length (nm), got {length}")
        fixed[k] = float(length)
    return fixed


def _check_frames(ref: Tensor, dihedrals: Tensor) -> None:
    """Reject rows whose three references are (nearly) collinear in some reference frame."""
    if not len(dihedrals):
        return
    frame = bond_angles(ref, dihedrals[:, [3, 2, 1]])      # angle dihedral_ref–angle_ref–bond_ref
    bad = (torch.sin(frame) < math.sin(ANGLE_MARGIN)).any(0).nonzero()[:, 0].tolist()
    if bad:
        row = dihedrals[bad[0]].tolist()
        raise ValueError(f"zmatrix row {row}: its references {row[3]}, {row[2]}, {row[1]} are (nearly) collinear "
                         "in the reference structure, so the dihedral is undefined; choose another "
                         "dihedral reference")


SCALES = ("fixed", "force-field")


def for_system(system, reference: Optional[Positions] = None, cartesian_atoms: Optional[Sequence[int]] = None,
               zmatrix: Union[ZMatrix, Sequence[Sequence[int]], None] = None, scales: str = "fixed",
               rotor_sectors: bool = False, **options) -> InternalCoordinates:
    """``InternalCoordinates`` of a ``System``: its Z-matrix (``zmatrix`` argument, else the
    system's ``zmatrix`` in the internal layout, else built from the bond graph) and its
    structure as reference unless ``reference`` (a structure or data frames) is given.

    ``scales``: how a single reference structure scales bonds and angles: ``"fixed"`` (one
    number each, ``BOND_SCALE`` and ``ANGLE_SCALE``) or ``"force-field"`` (each one's thermal
    width √(kT/k) from the system's harmonic terms at its temperature; the fixed number where
    no harmonic term holds it).

    The system's constrained bonds (``System.constrained_bonds``) are fixed bonds: not
    coordinates, placed at their constraint length. ``rotor_sectors``: confine every rotor
    the topology and force field show (``rotors.find_rotors``) and the Z-matrix places as one
    to a third of its turn (log Z of the full space: add ``log_sectors``)."""
    if scales not in SCALES:
        raise ValueError(f"scales must be one of {SCALES}, got {scales!r}")
    cartesian = tuple(cartesian_atoms or ())
    if zmatrix is None and not cartesian and system.zmatrix is not None:
        zmatrix = system.zmatrix
    if zmatrix is None:
        zmatrix = build_zmatrix(system.topology, cartesian)
    elif not isinstance(zmatrix, ZMatrix):
        zmatrix = ZMatrix.from_rows(zmatrix, system.n_atoms, cartesian)
    fixed_bonds = system.constrained_bonds
    if scales == "force-field":
        fixed = fixed_bond_lengths(zmatrix, fixed_bonds)
        free = [bond for k, bond in enumerate(zmatrix.bonds) if k not in fixed]
        bond_widths, angle_widths = harmonic_widths(system.openmm_system, system.kT, free, zmatrix.angles)
        options.setdefault("bond_scale", [BOND_SCALE if w is None else w for w in bond_widths])
        options.setdefault("angle_scale", [ANGLE_SCALE if w is None else w for w in angle_widths])
    rotors = placed_rotors(zmatrix, find_rotors(system.topology, system.openmm_system)) if rotor_sectors else ()
    return InternalCoordinates(zmatrix, system.positions if reference is None else reference,
                               fixed_bonds=fixed_bonds, rotors=rotors, **options)
