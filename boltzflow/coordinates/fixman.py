"""Fixman's mass-metric factor: what constrained MD samples beyond the flow's rigid-bond target.

For distance constraints σ_a(x) = |x_i − x_j| − d_a, MD with the constraints (SHAKE /
RATTLE) samples exp(−u(x)) det(Z_m(x))^½ on the constraint surface, where

    Z_m,ab = Σ_s ∇_s σ_a · ∇_s σ_b / m_s,

while the flow's target (``InternalCoordinates`` with fixed bonds) is exp(−u(x)) on the same
surface with the Z-matrix measure: the stiff-bond limit, no mass metric. Weights
exp(−½ log det Z_m) turn constrained-MD frames into samples of the flow's target.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def fixman_log_factor(xyz: Tensor, pairs: Sequence[Sequence[int]], masses: Sequence[float]) -> Tensor:
    """½ log det Z_m [batch] of positions [batch, n_atoms, 3] (nm) for the distance
    constraints ``pairs`` [n_constraints, 2] and atom ``masses`` [n_atoms] (amu); the units
    only shift it by a constant."""
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"expected positions of shape [batch, n_atoms, 3], got {list(xyz.shape)}")
    pairs = torch.as_tensor(pairs, dtype=torch.long, device=xyz.device).reshape(-1, 2)
    inverse_mass = 1 / torch.as_tensor(masses, dtype=xyz.dtype, device=xyz.device)
    # ∇_i σ_a = +u_a, ∇_j σ_a = −u_a: Z_m = (S M⁻¹ Sᵀ) ∘ (u_a · u_b), S the signed incidence matrix
    incidence = xyz.new_zeros(len(pairs), xyz.shape[1])
    rows = torch.arange(len(pairs), device=xyz.device)
    incidence[rows, pairs[:, 0]] = 1.0
    incidence[rows, pairs[:, 1]] = -1.0
    directions = xyz[:, pairs[:, 0]] - xyz[:, pairs[:, 1]]
    directions = directions / directions.norm(dim=-1, keepdim=True)
    metric = (incidence * inverse_mass) @ incidence.T * (directions @ directions.transpose(-1, -2))
    return 0.5 * torch.linalg.slogdet(metric)[1]
