"""Cartesian atoms whitened by PCA, with the six rigid-body directions removed (mixed layout).

The n atoms of the block have 3n coordinates; ``dim`` = 3n − 6 remain once translations and
rotations are removed. With m the mean structure (centroid at the origin), U [3n, 6] an
orthonormal basis of its rigid-body directions and V [3n, 3n − 6] orthonormal, orthogonal
to U::

    forward  z [B, 3n-6]  →  x = m + V (σ ⊙ z)                    [B, n, 3], nm
    inverse  x [B, n, 3]  →  z = Vᵀ (x' − m) / σ,   x' = x optimally superposed on m

The optimal superposition (Kabsch, proper rotation) leaves x' − m orthogonal to U (the
Eckart conditions), so ``forward(inverse(x))`` is x superposed on m for every x.

log|det|: the Jacobian of (translation, rotation, z) → x is [T, R(x), V diag σ], with T the
translations and R(x) the rotation generators e_k × x_i; its determinant is
Π σ · det(Uᵀ [T, R(x)]), a 6 × 6 determinant per sample. With the atoms built on the block
in internal coordinates, this is the physical measure with rigid-body motion integrated out.

PCA: the frames are superposed on their mean (twice), the covariance is restricted to the
complement of U, and its eigenvectors (largest variance first) give V and σ = √eigenvalue,
floored at ``MIN_CARTESIAN_SCALE``. With a single structure, V is an orthonormal basis of the
complement and σ = ``scale`` (default 0.02 nm).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CARTESIAN_SCALE = 0.02       # nm
MIN_CARTESIAN_SCALE = 1e-4   # nm


def fit_rotation(x: Tensor, target: Tensor) -> Tensor:
    """The proper rotation (Kabsch) that best fits ``x`` [..., n, 3], centred, onto ``target``
    [n, 3] (centroid at the origin), as the matrix Rᵀ [..., 3, 3] that moves rows: x' = xc Rᵀ."""
    xc = x - x.mean(-2, keepdim=True)
    u, _, vh = torch.linalg.svd(xc.transpose(-1, -2) @ target.to(x))
    # R = V diag(1, 1, d) Uᵀ with d = det(V Uᵀ) = ±1
    d = torch.where(torch.linalg.det(u @ vh) < 0, -1.0, 1.0).to(x)
    flip = torch.cat([torch.ones_like(u[..., 0, :2]), d[..., None]], dim=-1)
    return (u * flip[..., None, :]) @ vh


def superpose(x: Tensor, target: Tensor) -> Tensor:
    """``x`` [..., n, 3] moved by the translation and proper rotation that best fit ``target``
    [n, 3] (centroid at the origin); the result is centred at the origin."""
    return (x - x.mean(-2, keepdim=True)) @ fit_rotation(x, target)


def rigid_generators(x: Tensor) -> Tensor:
    """Rigid-body directions at ``x`` [..., n, 3]: [..., 3n, 6], columns translate along and
    rotate about the x, y and z axes (rotation k moves atom i along e_k × x_i)."""
    eye = torch.eye(3, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], 3, 3)
    rotations = torch.linalg.cross(eye, x[..., None, :].expand_as(eye), dim=-1)   # [..., n, k, j]
    columns = torch.cat([eye, rotations.transpose(-1, -2)], dim=-1)              # [..., n, j, 6]
    return columns.flatten(-3, -2)


class CartesianBlock(nn.Module):
    """PCA-whitened Cartesian coordinates of a few atoms without their rigid-body motion.

    Args:
        frames: positions of the block's atoms [frames, n, 3] (nm), n ≥ 3 not collinear.
        scale: σ (nm) of every direction when only one frame is given.
    """

    def __init__(self, frames: Tensor, scale: float = CARTESIAN_SCALE):
        super().__init__()
        frames = frames.to(torch.float64)
        n = frames.shape[-2]
        mean = frames[0] - frames[0].mean(0)
        for _ in range(2):
            mean = superpose(frames, mean).mean(0)
        q, r = torch.linalg.qr(rigid_generators(mean))
        if r.diagonal().abs().min() < 1e-6 * r.diagonal().abs().max():
            raise ValueError("the Cartesian atoms are (nearly) collinear in the reference, so their "
                             "rotations are not defined; choose at least 3 atoms that span a plane")
        _, basis = torch.linalg.eigh(torch.eye(3 * n, dtype=torch.float64) - q @ q.T)
        complement = basis[:, 6:]
        if len(frames) > 1:
            deviations = (superpose(frames, mean) - mean).flatten(-2)
            variance, vectors = torch.linalg.eigh(complement.T @ torch.cov(deviations.T) @ complement)
            vectors, variance = complement @ vectors.flip(-1), variance.flip(-1)
            sigma = variance.clamp_min(0).sqrt().clamp_min(MIN_CARTESIAN_SCALE)
        else:
            vectors, sigma = complement, torch.full((3 * n - 6,), float(scale), dtype=torch.float64)
        self.dim = 3 * n - 6
        self.register_buffer("mean", mean)
        self.register_buffer("rigid", q)              # U [3n, 6]
        self.register_buffer("vectors", vectors)      # V [3n, 3n - 6]
        self.register_buffer("sigma", sigma)
        self.log_scale = float(sigma.log().sum())

    def _log_det(self, x: Tensor) -> Tensor:
        return self.log_scale + torch.linalg.slogdet(self.rigid.to(x).T @ rigid_generators(x))[1]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Whitened coordinates [B, 3n − 6] → positions [B, n, 3] (nm) and log|det| [B]."""
        x = self.mean.to(z) + ((z * self.sigma.to(z)) @ self.vectors.to(z).T).unflatten(-1, (-1, 3))
        return x, self._log_det(x)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Positions [B, n, 3] → whitened coordinates [B, 3n − 6] and log|det| [B]."""
        aligned = superpose(x, self.mean)
        z = ((aligned - self.mean.to(x)).flatten(-2) @ self.vectors.to(x)) / self.sigma.to(x)
        return z, -self._log_det(aligned)
