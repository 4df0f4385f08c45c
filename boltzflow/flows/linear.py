"""Volume-preserving and linear layers: permutations, circular shifts, ActNorm, LU-linear."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .bijection import Bijection, RealBijection
from ..domains import Domain, domain_masks, wrap


class Permutation(Bijection):
    """Reorders dimensions (and their domains): ``y = x[:, permutation]``."""

    def __init__(self, domains: Sequence[Domain], permutation: Optional[Sequence[int]] = None,
                 generator: Optional[torch.Generator] = None):
        super().__init__(domains)
        perm = (torch.randperm(self.dim, generator=generator) if permutation is None
                else torch.as_tensor(list(permutation), dtype=torch.long))
        if sorted(perm.tolist()) != list(range(self.dim)):
            raise ValueError(f"permutation must reorder range({self.dim}), got {perm.tolist()}")
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv_perm", torch.argsort(perm), persistent=False)

    @property
    def out_domains(self):
        return tuple(self.domains[i] for i in self.perm.tolist())

    def forward(self, x, context=None):
        return x[..., self.perm], x.new_zeros(x.shape[:-1])

    def inverse(self, y, context=None):
        return y[..., self.inv_perm], y.new_zeros(y.shape[:-1])


class CircularShift(Bijection):
    """Learned rotation of every circle dimension: ``y = wrap(x + shift)``, log-det 0."""

    def __init__(self, domains: Sequence[Domain], shift: float = 0.0, trainable: bool = True):
        super().__init__(domains)
        circle = domain_masks(self.domains)["circle"]
        if not circle.any():
            raise ValueError("CircularShift acts on Circle() dimensions, but there are none")
        self.register_buffer("circle", circle, persistent=False)
        init = torch.full((self.dim,), float(shift))
        self.shift = nn.Parameter(init) if trainable else nn.Buffer(init)

    def _rotate(self, x, sign):
        return torch.where(self.circle, wrap(x + sign * self.shift), x), x.new_zeros(x.shape[:-1])

    def forward(self, x, context=None):
        return self._rotate(x, 1)

    def inverse(self, y, context=None):
        return self._rotate(y, -1)


class ActNorm(RealBijection):
    """Per-dimension affine map on real dimensions, ``y = x · exp(log_scale) + shift``.

    Initialised from data (Kingma & Dhariwal 2018) when its first call is an ``inverse``
    in training mode: the base-side batch then has zero mean and unit variance. A first
    ``forward`` call (sampling) keeps the parameters as they are.
    """

    def __init__(self, domains: Sequence[Domain]):
        super().__init__(domains)
        self.log_scale = nn.Parameter(torch.zeros(self.n))
        self.shift = nn.Parameter(torch.zeros(self.n))
        self.register_buffer("initialized", torch.tensor(False))

    def _map(self, v, inverse):
        if not self.initialized:
            if inverse and self.training and len(v) > 1:
                with torch.no_grad():
                    self.shift.copy_(v.mean(0))
                    self.log_scale.copy_(torch.log(v.std(0).clamp_min(1e-6)))
            self.initialized.fill_(True)
        log_det = self.log_scale.sum().expand(v.shape[:-1])
        if inverse:
            return (v - self.shift) * torch.exp(-self.log_scale), -log_det
        return v * torch.exp(self.log_scale) + self.shift, log_det


class LULinear(RealBijection):
    """Invertible linear map ``y = W x + b`` on real dimensions, ``W = L U`` with unit-lower
    ``L`` and upper ``U`` whose diagonal is positive (``exp`` of a parameter). Starts at
    the identity; pair with ``Permutation`` for a full PLU parametrisation."""

    def __init__(self, domains: Sequence[Domain]):
        super().__init__(domains)
        n = self.n
        self.lower = nn.Parameter(torch.zeros(n, n))
        self.upper = nn.Parameter(torch.zeros(n, n))
        self.log_diag = nn.Parameter(torch.zeros(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("eye", torch.eye(n), persistent=False)

    def _factors(self):
        L = torch.tril(self.lower, -1) + self.eye
        U = torch.triu(self.upper, 1) + torch.diag(torch.exp(self.log_diag))
        return L, U

    def _map(self, v, inverse):
        L, U = self._factors()
        log_det = self.log_diag.sum().expand(v.shape[:-1])
        if inverse:
            r = (v - self.bias).unsqueeze(-1)
            r = torch.linalg.solve_triangular(L, r, upper=False, unitriangular=True)
            r = torch.linalg.solve_triangular(U, r, upper=True)
            return r.squeeze(-1), -log_det
        return v @ (L @ U).T + self.bias, log_det
