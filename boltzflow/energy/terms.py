"""Batched torch energy terms with OpenMM's functional forms (kJ/mol, nm, radians).

Each term is built from plain parameter tensors (registered as buffers, so
``.to(device, dtype)`` works) and maps one batch to energies [batch].

Bonded terms take positions ``xyz`` [batch, n_atoms, 3]. The vectors they need (bond
vectors, angle arms, torsion axes) come from one matrix product with a signed incidence
matrix ``[n_atoms, K]`` (column k is e_head − e_tail), not from fancy indexing: the product
and its transpose in the backward pass are much faster than gathers and scatter-adds, and a
difference x_head − x_tail computed this way is exact. Vectors are then handled as
triples of [batch, K] component tensors. Each bonded term has O(n_atoms) rows, so this is
O(n_atoms²) work.

Pair terms (``PairTerm``) take the squared distances of all atom pairs [batch, n_atoms,
n_atoms] from ``pair_squared_distances``, computed once for all of them, with per-pair
parameters as [n_atoms, n_atoms] matrices (zero where a pair does not interact): O(n_atoms²)
work, with sums over a matrix axis where an incidence product would cost O(n_atoms³).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..geometry import Vector, angle, dihedral, norm
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


def pair_squared_distances(xyz: Tensor) -> Tensor:
    """Squared distances r²_ij [batch, n_atoms, n_atoms] (nm²), zero on the diagonal.

    Formed from per-component differences (exact, unlike |x_i|² + |x_j|² − 2 x_i·x_j); the
    backward pass of a broadcast difference is a sum over one axis of the matrix.
    """
    x, y, z = xyz.transpose(1, 2).unbind(1)
    dx, dy, dz = (c[:, :, None] - c[:, None, :] for c in (x, y, z))
    return dx * dx + dy * dy + dz * dz


class PairTerm(_Term):
    """A term of all atom pairs, a function of the squared distances r² [batch, N, N].

    ``energy_and_gradient(r2)`` gives the energy [batch] and, analytically, its derivative
    with respect to every entry of ``r2`` [batch, N, N] (entries (i, j) and (j, i) taken as
    separate variables); ``forward(r2)`` is the energy alone, by operations autograd can
    differentiate (twice).
    """

    def forward(self, r2: Tensor) -> Tensor:
        return self.energy_and_gradient(r2, gradient=False)[0]

    def energy_and_gradient(self, r2: Tensor, gradient: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        raise NotImplementedError

    def _off_diagonal(self, r2: Tensor) -> Tensor:
        """r² with 1 on the diagonal (an atom and itself), so 1/r is finite there; the
        parameters of a pair term are zero on the diagonal."""
        eye = torch.eye(r2.shape[-1], dtype=r2.dtype, device=r2.device)
        return r2.clamp_min(torch.finfo(r2.dtype).tiny) + eye


class PairCoulombLJ(PairTerm):
    """Coulomb + Lennard-Jones over all atom pairs (no cutoff), from [N, N] parameter matrices.

    E = Σ_{i<j} ONE_4PI_EPS0 · qq_ij / r + 4 ε_ij ((σ_ij/r)¹² − (σ_ij/r)⁶), with per-pair charge
    products qq (e²), σ (nm) and ε (kJ/mol); the matrices hold each pair once (i < j) and are
    zero elsewhere, including excluded pairs.
    """

    def __init__(self, charge_prod: Tensor, sigma: Tensor, epsilon: Tensor):
        super().__init__()
        upper = torch.ones_like(charge_prod).triu(1)
        self._buffers_from(coulomb=ONE_4PI_EPS0 * charge_prod * upper, sigma2=sigma**2 * upper,
                           four_epsilon=4 * epsilon * upper)

    def energy_and_gradient(self, r2: Tensor, gradient: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        inv_r2 = 1 / self._off_diagonal(r2)
        s6 = (self.sigma2 * inv_r2) ** 3
        coulomb = self.coulomb * torch.sqrt(inv_r2)
        energy = (coulomb + self.four_epsilon * (s6 * s6 - s6)).sum((-2, -1))
        if not gradient:
            return energy, None
        # ∂/∂r² of C/r is −C/(2r³); of 4ε(s⁶² − s⁶) with s⁶ = (σ²/r²)³ it is −3·4ε(2s⁶² − s⁶)/r²
        return energy, -(0.5 * coulomb + 3 * self.four_epsilon * (2 * s6 * s6 - s6)) * inv_r2


class OBCGeneralizedBorn(PairTerm):
    """Onufriev-Bashford-Case GB solvation with the ACE surface-area term, no cutoff.

    Per atom: charge q (e), offset radius ``or`` = radius - offset (nm), scaled offset
    radius ``sr`` (nm). Born radii B = 1/(1/or - tanh(α ψ - β ψ² + γ ψ³)/radius), ψ = I·or,
    with the HCT integral I_i = ½ Σ_{j≠i} h(r_ij, or_i, sr_j). Energy:
    ``prefactor · Σ_i Σ_j q_i q_j / (2 f_ij)`` with ``f_ij = sqrt(r² + B_i B_j exp(-r²/(4 B_i B_j)))``
    (the diagonal, f_ii = B_i, is the self term q_i²/(2 B_i)), plus
    ``sa_factor · (radius + probe)² (radius/B)⁶`` per atom when ``sa_factor`` is nonzero.

    ``inside_correction`` adds OpenMM's built-in GBSAOBCForce term for an atom buried
    inside another's scaled sphere; the CustomGBForce variants do not have it.

    The gradient with respect to r²_ij has a direct part (through f_ij) and one through
    the Born radius of the receiving atom i (through h(r_ij)): the chain
    ∂E/∂B_i · dB_i/dψ_i · ½ or_i · dh/dr · 1/(2r).
    """

    def __init__(self, charge: Tensor, offset_radius: Tensor, scaled_radius: Tensor, offset: float,
                 alpha: float, beta: float, gamma: float, prefactor: float, sa_factor: float,
                 probe: float, inside_correction: bool):
        super().__init__()
        radius = offset_radius + offset
        others = 1 - torch.eye(len(charge), dtype=charge.dtype)
        self._buffers_from(
            or_receiver=offset_radius[:, None], sr_sender=scaled_radius[None, :], others=others,
            offset_radius=offset_radius, radius=radius,
            charge_products=0.5 * prefactor * charge[:, None] * charge[None, :],
            surface=sa_factor * (radius + probe) ** 2,
        )
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.has_surface = sa_factor != 0
        self.inside_correction = inside_correction

    def energy_and_gradient(self, r2: Tensor, gradient: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        or_i, sr_j = self.or_receiver, self.sr_sender
        # the HCT integrand h(r_ij, or_i, sr_j) [batch, N, N]: atom i (row) feeling atom j (column)
        r = torch.sqrt(self._off_diagonal(r2))
        inv_r = 1 / r
        upper, gap = r + sr_j, r - sr_j
        far = torch.abs(gap) > or_i                      # the lower limit is |r − sr_j|, not or_i
        lower = torch.where(far, torch.abs(gap), or_i)
        inv_l, inv_u = 1 / lower, 1 / upper
        span, log_ratio = r - sr_j * sr_j * inv_r, torch.log(lower * inv_u)
        h = inv_l - inv_u + 0.25 * span * (inv_u * inv_u - inv_l * inv_l) + 0.5 * log_ratio * inv_r
        inside = (or_i < -gap) if self.inside_correction else None
        if inside is not None:
            h = h + torch.where(inside, 2 * (1 / or_i - inv_l), torch.zeros_like(h))
        active = (upper > or_i) * self.others
        psi = 0.5 * (h * active).sum(-1) * self.offset_radius
        tanh = torch.tanh(psi * (self.alpha - psi * (self.beta - self.gamma * psi)))
        born = 1 / (1 / self.offset_radius - tanh / self.radius)
        bb = born[:, :, None] * born[:, None, :]
        decay = torch.exp(-r2 / (4 * bb))
        f2 = r2 + bb * decay
        pair = self.charge_products / torch.sqrt(f2)
        energy = pair.sum((-2, -1))
        if self.has_surface:
            surface = self.surface * (self.radius / born) ** 6
            energy = energy + surface.sum(-1)
        if not gradient:
            return energy, None
        # through f_ij: ∂(c/f)/∂r² = −(c/f)(1 − e/4)/(2f²), ∂(c/f)/∂(B_i B_j) = −(c/f) e (1 + r²/(4 B_i B_j))/(2f²)
        pair_over_f2 = pair / f2
        direct = -0.5 * pair_over_f2 * (1 - 0.25 * decay)
        by_bb = -0.5 * pair_over_f2 * decay * (1 + r2 / (4 * bb))
        d_born = 2 * (by_bb * born[:, None, :]).sum(-1)  # bb_ij and bb_ji both hold B_i
        if self.has_surface:
            d_born = d_born - 6 * surface / born
        d_psi = d_born * born * born * (1 - tanh * tanh) / self.radius * (
            self.alpha - psi * (2 * self.beta - 3 * self.gamma * psi))
        # dh/dr, with d lower/dr = sign(r − sr_j) where the lower limit is |r − sr_j|
        d_lower = torch.where(far, torch.sign(gap), torch.zeros_like(gap))
        inv_l2, inv_u2 = inv_l * inv_l, inv_u * inv_u
        dh = (-inv_l2 * d_lower + inv_u2 + 0.25 * (1 + sr_j * sr_j * inv_r * inv_r) * (inv_u2 - inv_l2)
              + 0.5 * span * (inv_l2 * inv_l * d_lower - inv_u2 * inv_u)
              + 0.5 * inv_r * (d_lower * inv_l - inv_u - log_ratio * inv_r))
        if inside is not None:
            dh = dh + torch.where(inside, 2 * inv_l2 * d_lower, torch.zeros_like(dh))
        through_born = (0.25 * d_psi * self.offset_radius)[:, :, None] * dh * active * inv_r
        return energy, direct + through_born
