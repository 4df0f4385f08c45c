"""Batched torch energy terms with OpenMM's functional forms (kJ/mol, nm, radians).

Each term maps positions ``xyz`` [batch, n_atoms, 3] to energies [batch] and is built
from plain parameter tensors (registered as buffers, so ``.to(device, dtype)`` works).
"""

from __future__ import annotations

import torch
from torch import nn

# OpenMM's Coulomb constant 1/(4π ε0) in kJ·nm/(mol·e²) (NonbondedForce, GBSAOBCForce)
ONE_4PI_EPS0 = 138.93545764438198


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis with a finite gradient at zero."""
    return torch.sqrt((v * v).sum(-1).clamp_min(torch.finfo(v.dtype).tiny))


def bond_lengths(xyz: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Distances [batch, M] between atom pairs [M, 2]."""
    return _safe_norm(xyz[:, pairs[:, 1]] - xyz[:, pairs[:, 0]])


def bond_angles(xyz: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    """Angles i-j-k in [0, π], shape [batch, M], for triples [M, 3] (vertex in the middle)."""
    u = xyz[:, triples[:, 0]] - xyz[:, triples[:, 1]]
    v = xyz[:, triples[:, 2]] - xyz[:, triples[:, 1]]
    return torch.atan2(_safe_norm(torch.cross(u, v, dim=-1)), (u * v).sum(-1))


def dihedral_angles(xyz: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """IUPAC dihedrals in [-π, π] of quadruples [M, 4] (same sign as OpenMM and mdtraj)."""
    b1 = xyz[:, quads[:, 1]] - xyz[:, quads[:, 0]]
    b2 = xyz[:, quads[:, 2]] - xyz[:, quads[:, 1]]
    b3 = xyz[:, quads[:, 3]] - xyz[:, quads[:, 2]]
    n1 = torch.cross(b1, b2, dim=-1)
    n2 = torch.cross(b2, b3, dim=-1)
    y = (torch.cross(n1, n2, dim=-1) * b2).sum(-1) / _safe_norm(b2)
    x = (n1 * n2).sum(-1)
    return torch.atan2(y, x)


class _Term(nn.Module):
    def _buffers_from(self, **tensors: torch.Tensor) -> None:
        for name, value in tensors.items():
            self.register_buffer(name, value, persistent=False)


class HarmonicBonds(_Term):
    """E = ½ k (r - r0)² per bond."""

    def __init__(self, pairs, r0, k):
        super().__init__()
        self._buffers_from(pairs=pairs, r0=r0, k=k)

    def forward(self, xyz):
        return (0.5 * self.k * (bond_lengths(xyz, self.pairs) - self.r0) ** 2).sum(-1)


class HarmonicAngles(_Term):
    """E = ½ k (θ - θ0)² per angle."""

    def __init__(self, triples, theta0, k):
        super().__init__()
        self._buffers_from(triples=triples, theta0=theta0, k=k)

    def forward(self, xyz):
        return (0.5 * self.k * (bond_angles(xyz, self.triples) - self.theta0) ** 2).sum(-1)


class PeriodicTorsions(_Term):
    """E = k (1 + cos(n φ - φ0)) per torsion term."""

    def __init__(self, quads, periodicity, phase, k):
        super().__init__()
        self._buffers_from(quads=quads, periodicity=periodicity, phase=phase, k=k)

    def forward(self, xyz):
        phi = dihedral_angles(xyz, self.quads)
        return (self.k * (1 + torch.cos(self.periodicity * phi - self.phase))).sum(-1)


class PairCoulombLJ(_Term):
    """Coulomb + Lennard-Jones over an explicit pair list (no cutoff).

    E = ONE_4PI_EPS0 · qq / r + 4 ε ((σ/r)¹² - (σ/r)⁶) for pairs [M, 2] with per-pair
    charge products qq (e²), σ (nm) and ε (kJ/mol).
    """

    def __init__(self, pairs, charge_prod, sigma, epsilon):
        super().__init__()
        self._buffers_from(pairs=pairs, charge_prod=charge_prod, sigma=sigma, epsilon=epsilon)

    def forward(self, xyz):
        r = bond_lengths(xyz, self.pairs)
        s6 = (self.sigma / r) ** 6
        return (ONE_4PI_EPS0 * self.charge_prod / r + 4 * self.epsilon * (s6 * s6 - s6)).sum(-1)


class OBCGeneralizedBorn(_Term):
    """Onufriev-Bashford-Case GB solvation with the ACE surface-area term, no cutoff.

    Per atom: charge q (e), offset radius ``or`` = radius - 0.009 nm, scaled offset radius
    ``sr`` (nm). Born radii B = 1/(1/or - tanh(α ψ - β ψ² + γ ψ³)/radius), ψ = I·or, with
    the HCT integral I over all other atoms. Energy:
    ``prefactor · (Σ_i q_i²/(2 B_i) + Σ_{i<j} q_i q_j / f_ij)`` with
    ``f_ij = sqrt(r² + B_i B_j exp(-r²/(4 B_i B_j)))``, plus
    ``sa_factor · (radius + probe)² (radius/B)⁶`` per atom when ``sa_factor`` is nonzero.

    ``inside_correction`` adds OpenMM's built-in GBSAOBCForce term for an atom buried
    inside another's scaled sphere; the CustomGBForce variants do not have it.
    """

    def __init__(self, charge, offset_radius, scaled_radius, offset, alpha, beta, gamma,
                 prefactor, sa_factor, probe, inside_correction):
        super().__init__()
        self._buffers_from(charge=charge, offset_radius=offset_radius, scaled_radius=scaled_radius)
        self.offset, self.alpha, self.beta, self.gamma = offset, alpha, beta, gamma
        self.prefactor, self.sa_factor, self.probe = prefactor, sa_factor, probe
        self.inside_correction = inside_correction

    def forward(self, xyz):
        n = xyz.shape[1]
        eye = torch.eye(n, dtype=torch.bool, device=xyz.device)
        diff = xyz[:, :, None, :] - xyz[:, None, :, :]
        r2 = torch.where(eye, torch.ones_like(diff[..., 0]), (diff * diff).sum(-1))
        r = torch.sqrt(r2)
        or_i = self.offset_radius[:, None]          # [N, 1] row atom i
        sr_j = self.scaled_radius[None, :]          # [1, N] column atom j
        upper = r + sr_j
        lower = torch.maximum(or_i.expand_as(r), torch.abs(r - sr_j))
        term = (1 / lower - 1 / upper + 0.25 * (r - sr_j * sr_j / r) * (1 / upper**2 - 1 / lower**2)
                + 0.5 * torch.log(lower / upper) / r)
        if self.inside_correction:
            term = term + torch.where(or_i < sr_j - r, 2 * (1 / or_i - 1 / lower), torch.zeros_like(r))
        active = (upper > or_i) & ~eye
        integral = 0.5 * torch.where(active, term, torch.zeros_like(term)).sum(-1)
        psi = integral * self.offset_radius
        radius = self.offset_radius + self.offset
        born = 1 / (1 / self.offset_radius
                    - torch.tanh(self.alpha * psi - self.beta * psi**2 + self.gamma * psi**3) / radius)
        q = self.charge
        bb = born[:, :, None] * born[:, None, :]
        f = torch.sqrt(r2 + bb * torch.exp(-r2 / (4 * bb)))
        pair = torch.where(eye, torch.zeros_like(f), q[:, None] * q[None, :] / f)
        energy = self.prefactor * (0.5 * (q * q / born).sum(-1) + 0.5 * pair.sum((-1, -2)))
        if self.sa_factor:
            energy = energy + (self.sa_factor * (radius + self.probe) ** 2 * (radius / born) ** 6).sum(-1)
        return energy
