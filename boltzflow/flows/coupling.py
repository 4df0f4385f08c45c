"""Coupling layers: half the dimensions condition an elementwise transform of the rest."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .bijection import Bijection
from ..domains import Domain
from .nets import MLP, Embedding
from .transformers import AffineTransformer, SplineTransformer, Transformer


def alternating_mask(dim: int, parity: int = 0) -> torch.Tensor:
    """Bool mask [dim] that transforms every other dimension, starting at ``parity``."""
    return torch.arange(dim) % 2 == parity % 2


def random_mask(dim: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bool mask [dim] that transforms a random half (rounded up) of the dimensions."""
    perm = torch.randperm(dim, generator=generator)
    return torch.zeros(dim, dtype=torch.bool).index_fill(0, perm[: (dim + 1) // 2], True)


class Coupling(Bijection):
    """Transforms the dimensions where ``mask`` is True, conditioned on the others.

    The conditioning dimensions enter the network through their domain embedding
    (circles as cos/sin), concatenated with the optional context [batch, context_dim].
    ``transformer`` is a class from ``boltzflow.flows.transformers`` built for the
    transformed dimensions with ``transformer_kwargs``.
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        mask: torch.Tensor,
        transformer: type[Transformer],
        hidden: Sequence[int] = (128, 128),
        residual: bool = False,
        context_dim: int = 0,
        activation: type[nn.Module] = nn.GELU,
        **transformer_kwargs,
    ):
        super().__init__(domains)
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != (self.dim,):
            raise ValueError(f"mask must have shape [{self.dim}], got {list(mask.shape)}")
        if mask.all() or not mask.any():
            raise ValueError("a coupling mask must transform some dimensions and keep others")
        idx_tr = mask.nonzero()[:, 0]
        idx_id = (~mask).nonzero()[:, 0]
        self.register_buffer("idx_tr", idx_tr, persistent=False)
        self.register_buffer("idx_id", idx_id, persistent=False)
        self.embedding = Embedding([self.domains[i] for i in idx_id.tolist()])
        self.transformer = transformer(
            [self.domains[i] for i in idx_tr.tolist()], **transformer_kwargs
        )
        self.n_tr = len(idx_tr)
        self.context_dim = context_dim
        self.net = MLP(
            self.embedding.features + context_dim,
            self.n_tr * self.transformer.n_params,
            hidden,
            residual,
            activation,
        )
        # the network's outputs are [n_tr, n_params] per point; it computes them in
        # parameter-major order [n_params, n_tr], the layout the transformers work in
        n_params = self.transformer.n_params
        order = torch.arange(self.n_tr * n_params).view(self.n_tr, n_params).t().flatten()
        self.register_buffer("param_major", order, persistent=False)

    def _params(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.embedding(x[..., self.idx_id])
        if self.context_dim:
            if context is None:
                raise ValueError(f"this layer needs a context of shape [batch, {self.context_dim}]")
            h = torch.cat([h, context], dim=-1)
        out = self.net(h, self.param_major)
        return out.view(*x.shape[:-1], self.transformer.n_params, self.n_tr).transpose(-1, -2)

    def _transform(self, x, context, inverse):
        y_tr, log_det = self.transformer(x[..., self.idx_tr], self._params(x, context), inverse)
        return x.index_copy(-1, self.idx_tr, y_tr), log_det

    def forward(self, x, context=None):
        return self._transform(x, context, inverse=False)

    def inverse(self, y, context=None):
        return self._transform(y, context, inverse=True)


class SplineCoupling(Coupling):
    """Coupling with domain-aware rational-quadratic splines (see ``SplineTransformer``)."""

    def __init__(self, domains, mask, bins=8, hidden=(128, 128), residual=False,
                 context_dim=0, tail_bound=5.0, rotation=True, activation=nn.GELU):
        super().__init__(domains, mask, SplineTransformer, hidden, residual, context_dim,
                         activation, bins=bins, tail_bound=tail_bound, rotation=rotation)


class AffineCoupling(Coupling):
    """RealNVP affine coupling (Dinh et al. 2017) on the real dimensions of the mask."""

    def __init__(self, domains, mask, hidden=(128, 128), residual=False, context_dim=0,
                 max_log_scale=5.0, activation=nn.GELU):
        super().__init__(domains, mask, AffineTransformer, hidden, residual, context_dim,
                         activation, max_log_scale=max_log_scale)
