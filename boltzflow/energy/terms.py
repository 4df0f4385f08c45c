"""Batched torch energy terms with OpenMM's functional forms (kJ/mol, nm, radians).

Each term maps positions ``xyz`` [batch, n_atoms, 3] to energies [batch] and is built
from plain parameter tensors (registered as buffers, so ``.to(device, dtype)`` works).

The displacement vectors a term needs (bond vectors, angle arms, torsion axes, pair
separations) come from one matrix product with a signed incidence matrix
``[n_atoms, K]`` (column k is e_head − e_tail), not from fancy indexing: the product and
its transpose in the backward pass are much faster than gathers and scatter-adds, and a
difference x_head − x_tail computed this way is exact. Vectors are then handled as
triples of [batch, K] component tensors.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..geometry import Vector, angle, dihedral, dot, norm
from ..units import ONE_4PI_EPS0

def incidence(heads: Sequence[int], tails: Sequence[int], n_atoms: int) -> Tensor:
    """Signed incidence matrix [n_atoms, K] (float64): column k is e_heads[k] − e_tails[k]."""
    heads, tails = torch.as_tensor(heads, dtype=torch.long), torch.as_tensor(tails, dtype=torch.long)
    columns = torch.arange(len(heads))
    matrix = torch.zeros(n_atoms, len(heads), dtype=torch.float64)
    matrix[heads, columns] = 1.0
    matrix[tails, columns] -= 1.0
    return matrix


def displacements(xyz: Tensor, matrix: Tensor) -> Vector:
    """Vectors x_head − x_tail, one per incidence column: components, each [batch, K]."""
    return (xyz.transpose(1, 2) @ matrix).unbind(1)


class _Term(nn.Module):
    def _buffers_from(self, **tensors: Tensor) -> None:
        for name, value in tensors.items():
            self.register_buffer(name, value, persistent=False)


class HarmonicBonds(_Term):
    """E = ½ k (r - r0)² per bond; ``pairs`` [M, 2], r0 (nm), k (kJ/mol/nm²)."""

    def __init__(self, pairs: Tensor, r0: Tensor, k: Tensor, n_atoms: int):
        super().__init__()
        self._buffers_from(vectors=incidence(pairs[:, 1], pairs[:, 0], n_atoms), r0=r0, k=k)

    def forward(self, xyz: Tensor) -> Tensor:
        r = norm(displacements(xyz, self.vectors))
        return (0.5 * self.k * (r - self.r0) ** 2).sum(-1)


class HarmonicAngles(_Term):
    """E = ½ k (θ - θ0)² per angle; ``triples`` [M, 3] with the vertex in the middle."""

    def __init__(self, triples: Tensor, theta0: Tensor, k: Tensor, n_atoms: int):
        super().__init__()
        arms = incidence(torch.cat([triples[:, 0], triples[:, 2]]), triples[:, 1].repeat(2), n_atoms)
        self._buffers_from(arms=arms, theta0=theta0, k=k)

    def forward(self, xyz: Tensor) -> Tensor:
        m = len(self.theta0)
        u, v = zip(*(c.split(m, -1) for c in displacements(xyz, self.arms)))
        return (0.5 * self.k * (angle(u, v) - self.theta0) ** 2).sum(-1)


class PeriodicTorsions(_Term):
    """E = k (1 + cos(n φ - φ0)) per torsion term; ``quads`` [M, 4]."""

    def __init__(self, quads: Tensor, periodicity: Tensor, phase: Tensor, k: Tensor, n_atoms: int):
        super().__init__()
        q = quads.unbind(-1)
        axes = incidence(torch.cat([q[1], q[2], q[3]]), torch.cat([q[0], q[1], q[2]]), n_atoms)
        self._buffers_from(axes=axes, periodicity=periodicity, phase=phase, k=k)

    def forward(self, xyz: Tensor) -> Tensor:
        m = len(self.k)
        b1, b2, b3 = zip(*(c.split(m, -1) for c in displacements(xyz, self.axes)))
        phi = dihedral(b1, b2, b3)
        return (self.k * (1 + torch.cos(self.periodicity * phi - self.phase))).sum(-1)


class PairCoulombLJ(_Term):
    """Coulomb + Lennard-Jones over an explicit pair list (no cutoff).

    E = ONE_4PI_EPS0 · qq / r + 4 ε ((σ/r)¹² - (σ/r)⁶) for pairs [M, 2] with per-pair
    charge products qq (e²), σ (nm) and ε (kJ/mol).
    """

    def __init__(self, pairs: Tensor, charge_prod: Tensor, sigma: Tensor, epsilon: Tensor, n_atoms: int):
        super().__init__()
        self._buffers_from(separations=incidence(pairs[:, 1], pairs[:, 0], n_atoms),
                           coulomb=ONE_4PI_EPS0 * charge_prod, sigma2=sigma**2, four_epsilon=4 * epsilon)

    def forward(self, xyz: Tensor) -> Tensor:
        d = displacements(xyz, self.separations)
        r2 = dot(d, d).clamp_min(torch.finfo(xyz.dtype).tiny)
        s6 = (self.sigma2 / r2) ** 3
        return (self.coulomb * torch.rsqrt(r2) + self.four_epsilon * (s6 * s6 - s6)).sum(-1)


class OBCGeneralizedBorn(_Term):
    """Onufriev-Bashford-Case GB solvation with the ACE surface-area term, no cutoff.

    Per atom: charge q (e), offset radius ``or`` = radius - offset (nm), scaled offset
    radius ``sr`` (nm). Born radii B = 1/(1/or - tanh(α ψ - β ψ² + γ ψ³)/radius), ψ = I·or,
    with the HCT integral I_i = ½ Σ_j h(r_ij, or_i, sr_j) over all other atoms. Energy:
    ``prefactor · (Σ_i q_i²/(2 B_i) + Σ_{i<j} q_i q_j / f_ij)`` with
    ``f_ij = sqrt(r² + B_i B_j exp(-r²/(4 B_i B_j)))``, plus
    ``sa_factor · (radius + probe)² (radius/B)⁶`` per atom when ``sa_factor`` is nonzero.

    ``inside_correction`` adds OpenMM's built-in GBSAOBCForce term for an atom buried
    inside another's scaled sphere; the CustomGBForce variants do not have it.

    Every unordered pair i < j is evaluated once; the integral's two directions (i
    feeling j, j feeling i) are stacked side by side and summed onto atoms by one product
    with a 0/1 matrix.
    """

    def __init__(self, charge: Tensor, offset_radius: Tensor, scaled_radius: Tensor, offset: float,
                 alpha: float, beta: float, gamma: float, prefactor: float, sa_factor: float,
                 probe: float, inside_correction: bool):
        super().__init__()
        n = len(charge)
        i, j = torch.triu_indices(n, n, 1)
        receiver, sender = torch.cat([i, j]), torch.cat([j, i])   # both directions of each pair
        to_atoms = torch.zeros(len(receiver), n, dtype=torch.float64)
        to_atoms[torch.arange(len(receiver)), receiver] = 0.5      # I = ½ Σ h
        pick_i = torch.zeros(n, len(i), dtype=torch.float64)
        pick_i[i, torch.arange(len(i))] = 1.0
        pick_j = torch.zeros(n, len(j), dtype=torch.float64)
        pick_j[j, torch.arange(len(j))] = 1.0
        radius = offset_radius + offset
        self._buffers_from(
            separations=incidence(j, i, n), to_atoms=to_atoms, pick_i=pick_i, pick_j=pick_j,
            or_receiver=offset_radius[receiver], sr_sender=scaled_radius[sender],
            offset_radius=offset_radius, radius=radius,
            self_charge=0.5 * prefactor * charge**2, pair_charge=prefactor * charge[i] * charge[j],
            surface=sa_factor * (radius + probe) ** 2,
        )
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.has_surface = sa_factor != 0
        self.inside_correction = inside_correction

    def _integrand(self, r: Tensor) -> Tensor:
        """h(r, or_i, sr_j) for both directions of every pair: [batch, 2P]."""
        r = torch.cat([r, r], -1)
        or_i, sr_j = self.or_receiver, self.sr_sender
        upper = r + sr_j
        lower = torch.maximum(or_i.expand_as(r), torch.abs(r - sr_j))
        inv_l, inv_u = 1 / lower, 1 / upper
        inv_r = 1 / r
        h = (inv_l - inv_u + 0.25 * (r - sr_j * sr_j * inv_r) * (inv_u * inv_u - inv_l * inv_l)
             + 0.5 * torch.log(lower * inv_u) * inv_r)
        if self.inside_correction:
            h = h + torch.where(or_i < sr_j - r, 2 * (1 / or_i - inv_l), torch.zeros_like(r))
        return torch.where(upper > or_i, h, torch.zeros_like(h))

    def forward(self, xyz: Tensor) -> Tensor:
        d = displacements(xyz, self.separations)
        r2 = dot(d, d).clamp_min(torch.finfo(xyz.dtype).tiny)
        psi = (self._integrand(torch.sqrt(r2)) @ self.to_atoms) * self.offset_radius
        tanh = torch.tanh(psi * (self.alpha - psi * (self.beta - self.gamma * psi)))
        born = 1 / (1 / self.offset_radius - tanh / self.radius)
        bb = (born @ self.pick_i) * (born @ self.pick_j)
        f = torch.sqrt(r2 + bb * torch.exp(-r2 / (4 * bb)))
        energy = (self.self_charge / born).sum(-1) + (self.pair_charge / f).sum(-1)
        if self.has_surface:
            energy = energy + (self.surface * (self.radius / born) ** 6).sum(-1)
        return energy
