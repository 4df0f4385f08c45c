"""Conditioner networks: MLP, residual MLP and MADE (masked autoregressive network), and
the ``Embedding`` of points in their domains as network features.

Every network's last layer starts at zero, so the transform it drives starts as the
identity.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..domains import Domain, check_domains


def _zero(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Fully connected network ``in_features → hidden… → out_features``.

    With ``residual=True`` the hidden layers form pre-activation residual blocks
    (all hidden sizes must then be equal).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        residual: bool = False,
        activation: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must list at least one layer size")
        if residual and len(set(hidden)) != 1:
            raise ValueError(f"a residual MLP needs equal hidden sizes, got {hidden}")
        self.residual = residual
        self.act = activation()
        self.inp = nn.Linear(in_features, hidden[0])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hidden[:-1], hidden[1:]))
        self.out = _zero(nn.Linear(hidden[-1], out_features))

    def forward(self, x: torch.Tensor, order: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Outputs [..., out_features]; with ``order`` (a permutation of the output indices)
        the outputs come in that order, computed by reordering the last layer's rows
        (cheaper than reordering a large output)."""
        h = self.inp(x)
        for layer in self.hidden:
            h = h + layer(self.act(h)) if self.residual else layer(self.act(h))
        if order is None:
            return self.out(self.act(h))
        weight = self.out.weight.index_select(0, order)
        return F.linear(self.act(h), weight, self.out.bias.index_select(0, order))


class MaskedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by a fixed 0/1 mask [out, in]."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015).

    Output block ``i`` (``params_per_dim`` values for dimension ``i``) depends only on
    input features whose degree is below ``degrees[i]``; features of degree 0
    (e.g. context) reach every output.

    Args:
        feature_degrees: degree of each input feature (1-based rank of its source dimension,
            0 for context features).
        degrees: rank of each output dimension, a permutation of 1..dim.
        params_per_dim: outputs per dimension; the output has shape [batch, dim * params_per_dim].
    """

    def __init__(
        self,
        feature_degrees: Sequence[int],
        degrees: Sequence[int],
        params_per_dim: int,
        hidden: Sequence[int] = (128, 128),
        residual: bool = False,
        activation: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        hidden = tuple(hidden)
        if residual and len(set(hidden)) != 1:
            raise ValueError(f"a residual MADE needs equal hidden sizes, got {hidden}")
        dim = len(degrees)
        d_in = torch.as_tensor(list(feature_degrees))
        d_out = torch.as_tensor(list(degrees)).repeat_interleave(params_per_dim)
        top = max(dim - 1, 1)
        d_hidden = [torch.arange(h) % top + min(1, dim - 1) for h in hidden]
        self.residual = residual
        self.act = activation()
        self.inp = MaskedLinear((d_hidden[0][:, None] >= d_in[None, :]))
        self.hidden = nn.ModuleList(
            MaskedLinear(b[:, None] >= a[None, :]) for a, b in zip(d_hidden[:-1], d_hidden[1:])
        )
        self.out = _zero(MaskedLinear(d_out[:, None] > d_hidden[-1][None, :]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.hidden:
            h = h + layer(self.act(h)) if self.residual else layer(self.act(h))
        return self.out(self.act(h))


class Embedding(torch.nn.Module):
    """Network features of points in the domains: circles as (cos, sin), intervals scaled to [-1, 1].

    Maps [batch, dim] to [batch, features]; ``source[j]`` is the input dimension feature j
    came from (autoregressive masks need it).
    """

    def __init__(self, domains: Sequence[Domain]):
        super().__init__()
        domains = check_domains(domains)
        flat = [i for i, d in enumerate(domains) if d.kind != "circle"]
        circ = [i for i, d in enumerate(domains) if d.kind == "circle"]
        center = [0.0 if domains[i].kind == "real" else (domains[i].low + domains[i].high) / 2 for i in flat]
        half = [1.0 if domains[i].kind == "real" else (domains[i].high - domains[i].low) / 2 for i in flat]
        self.register_buffer("flat", torch.tensor(flat, dtype=torch.long), persistent=False)
        self.register_buffer("circ", torch.tensor(circ, dtype=torch.long), persistent=False)
        self.register_buffer("center", torch.tensor(center, dtype=torch.float64), persistent=False)
        self.register_buffer("half_width", torch.tensor(half, dtype=torch.float64), persistent=False)
        self.source = flat + circ + circ
        self.features = len(self.source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = (x[..., self.flat] - self.center.to(x.dtype)) / self.half_width.to(x.dtype)
        angles = x[..., self.circ]
        return torch.cat([flat, torch.cos(angles), torch.sin(angles)], dim=-1)
