"""Autoregressive layers: dimension i is transformed conditioned on dimensions before it."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .bijection import Bijection
from ..domains import Domain
from .nets import MADE, Embedding
from .transformers import AffineTransformer, SplineTransformer, Transformer


class Autoregressive(Bijection):
    """Autoregressive bijection driven by a MADE conditioner.

    ``inverse_autoregressive=True`` (IAF, Kingma et al. 2016): parameters come from the
    base-side input, so sampling (``forward``) is one pass and ``inverse`` takes ``dim``
    passes. ``False`` (MAF, Papamakarios et al. 2017): the other way round, so density
    evaluation is one pass.

    ``order`` is the autoregressive order as a permutation of range(dim) (default natural).
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        transformer: type[Transformer],
        hidden: Sequence[int] = (128, 128),
        residual: bool = False,
        context_dim: int = 0,
        inverse_autoregressive: bool = True,
        order: Optional[Sequence[int]] = None,
        activation: type[nn.Module] = nn.GELU,
        **transformer_kwargs,
    ):
        super().__init__(domains)
        order = list(range(self.dim)) if order is None else [int(i) for i in order]
        if sorted(order) != list(range(self.dim)):
            raise ValueError(f"order must be a permutation of range({self.dim}), got {order}")
        rank = [0] * self.dim
        for r, i in enumerate(order):
            rank[i] = r + 1
        self.embedding = Embedding(self.domains)
        self.transformer = transformer(self.domains, **transformer_kwargs)
        self.context_dim = context_dim
        self.inverse_autoregressive = inverse_autoregressive
        feature_degrees = [rank[i] for i in self.embedding.source] + [0] * context_dim
        self.net = MADE(feature_degrees, rank, self.transformer.n_params, hidden, residual,
                        activation)

    def _params(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.embedding(x)
        if self.context_dim:
            if context is None:
                raise ValueError(f"this layer needs a context of shape [batch, {self.context_dim}]")
            h = torch.cat([h, context], dim=-1)
        return self.net(h).view(*x.shape[:-1], self.dim, self.transformer.n_params)

    def _one_pass(self, x, context, inverse):
        return self.transformer(x, self._params(x, context), inverse)

    def _sequential(self, y, context, inverse):
        # after pass k the first k dimensions in autoregressive order are exact
        x = y
        for _ in range(self.dim):
            x, log_det = self.transformer(y, self._params(x, context), inverse)
        return x, log_det

    def forward(self, x, context=None):
        if self.inverse_autoregressive:
            return self._one_pass(x, context, inverse=False)
        return self._sequential(x, context, inverse=False)

    def inverse(self, y, context=None):
        if self.inverse_autoregressive:
            return self._sequential(y, context, inverse=True)
        return self._one_pass(y, context, inverse=True)


class SplineAutoregressive(Autoregressive):
    """Autoregressive domain-aware rational-quadratic spline flow (Durkan et al. 2019)."""

    def __init__(self, domains, bins=8, hidden=(128, 128), residual=False, context_dim=0,
                 inverse_autoregressive=True, order=None, tail_bound=5.0, rotation=True,
                 activation=nn.GELU):
        super().__init__(domains, SplineTransformer, hidden, residual, context_dim,
                         inverse_autoregressive, order, activation,
                         bins=bins, tail_bound=tail_bound, rotation=rotation)


class AffineAutoregressive(Autoregressive):
    """Affine autoregressive flow on real dimensions (IAF by default, MAF on request)."""

    def __init__(self, domains, hidden=(128, 128), residual=False, context_dim=0,
                 inverse_autoregressive=True, order=None, max_log_scale=5.0,
                 activation=nn.GELU):
        super().__init__(domains, AffineTransformer, hidden, residual, context_dim,
                         inverse_autoregressive, order, activation,
                         max_log_scale=max_log_scale)
