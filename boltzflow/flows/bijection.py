"""The bijection interface of every flow layer: flat points [batch, dim] over domains on both sides."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..domains import Domain, check_domains, domain_masks


class Bijection(nn.Module):
    """An invertible map with a tractable log-Jacobian determinant.

    ``forward`` is the sampling direction (base → data)::

        y, log_det = bijection(x)           # log|det ∂y/∂x|, shape [batch]
        x, log_det_inv = bijection.inverse(y)  # log|det ∂x/∂y| = -log_det

    ``domains`` are the per-dimension domains on the input (base) side; ``out_domains``
    those on the output side (the same unless the layer reorders dimensions).
    An optional ``context`` tensor [batch, context_dim] makes the map conditional.
    """

    def __init__(self, domains: Sequence[Domain]):
        super().__init__()
        self.domains = check_domains(domains)

    @property
    def dim(self) -> int:
        return len(self.domains)

    @property
    def out_domains(self) -> tuple[Domain, ...]:
        return self.domains

    def forward(
        self, x: torch.Tensor, context: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(
        self, y: torch.Tensor, context: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class RealBijection(Bijection):
    """A bijection of the real dimensions only (``idx`` [n] of them) that passes the others
    through: subclasses implement ``_map(v, inverse) -> (v', log_det)`` on v [batch, n]."""

    def __init__(self, domains: Sequence[Domain]):
        super().__init__(domains)
        idx = domain_masks(self.domains)["real"].nonzero()[:, 0]
        if len(idx) == 0:
            raise ValueError(f"{type(self).__name__} acts on Real() dimensions, but there are none")
        self.register_buffer("idx", idx, persistent=False)
        self.n = len(idx)

    def _map(self, v, inverse):
        raise NotImplementedError

    def forward(self, x, context=None):
        v, log_det = self._map(x[..., self.idx], inverse=False)
        return x.index_copy(-1, self.idx, v), log_det

    def inverse(self, y, context=None):
        v, log_det = self._map(y[..., self.idx], inverse=True)
        return y.index_copy(-1, self.idx, v), log_det
