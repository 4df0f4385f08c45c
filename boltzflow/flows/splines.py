"""Monotonic rational-quadratic spline kernel (Durkan et al. 2019, "Neural Spline Flows").

The kernel maps an interval [left, right] onto itself through K bins whose widths,
heights and knot derivatives are given per element. All functions are elementwise over
arbitrary leading dimensions and work in float32 and float64.
"""

from __future__ import annotations

from typing import Optional

import torch


def knots_from_fractions(
    fractions: torch.Tensor, left: torch.Tensor, right: torch.Tensor
) -> torch.Tensor:
    """Knot positions [..., K+1, m] from bin fractions [..., K, m] that sum to one along
    dim -2; ``left`` and ``right`` broadcast against [..., 1, m]. Both end knots are exact."""
    cum = torch.cumsum(fractions[..., :-1, :], dim=-2)
    inner = left + (right - left) * cum
    shape = inner.shape[:-2] + (1, inner.shape[-1])
    return torch.cat([left.expand(shape), inner, right.expand(shape)], dim=-2)


def spline_bins_first(
    x: torch.Tensor,
    knots: torch.Tensor,
    derivatives: torch.Tensor,
    inverse: bool = False,
    tied_ends: Optional[torch.Tensor] = None,
    unit_ends: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rational_quadratic`` in the layout the layers use, with the bins on dim -2.

    Args:
        x: points [..., m] inside the knots' range.
        knots: x knots and y knots stacked, [..., 2, K+1, m], increasing along dim -2.
        derivatives: positive knot derivatives [..., K+1, m].
        tied_ends: optional bool [m]; where True the derivative at the last knot is the
            one at the first knot (circular splines); the table's last row is then unused.
        unit_ends: optional bool [m]; where True both end derivatives are 1 (linear tails).

    With the bins on dim -2 each bin's values are a contiguous run of ``m`` numbers, so
    the comparisons and gathers over the few bins vectorise along ``m``.
    """
    K = knots.shape[-2] - 1
    knots_in = knots[..., 1 if inverse else 0, 1:-1, :]
    index = torch.count_nonzero(x.unsqueeze(-2) >= knots_in, dim=-2).unsqueeze(-2)
    index = torch.cat([index, index + 1], dim=-2)  # [..., 2, m]: bin start and end

    table = index.unsqueeze(-3).expand(*index.shape[:-2], 2, 2, index.shape[-1]).contiguous()
    (x0, x1), (y0, y1) = (v.unbind(-2) for v in torch.gather(knots, -2, table).unbind(-3))
    if tied_ends is not None:
        d = torch.gather(derivatives, -2, torch.where(tied_ends & (index == K), 0, index))
    else:
        d = torch.gather(derivatives, -2, index)
    if unit_ends is not None:
        d = torch.where(unit_ends & ((index == 0) | (index == K)), 1.0, d)
    d0, d1 = d.unbind(-2)
    w, h = x1 - x0, y1 - y0
    s = h / w
    c = d1 + d0 - 2 * s

    if inverse:
        dy = x - y0
        a = h * (s - d0) + dy * c
        b = h * d0 - dy * c
        cc = -s * dy
        disc = (b * b - 4 * a * cc).clamp_min(0)
        xi = (2 * cc / (-b - torch.sqrt(disc))).clamp(0, 1)
        # one Newton step on y(ξ) = y removes the root formula's cancellation error
        t = xi * (1 - xi)
        denom = s + c * t
        residual = h * (s * xi * xi + d0 * t) / denom - dy
        slope = h * s * (d1 * xi * xi + 2 * s * t + d0 * (1 - xi) * (1 - xi)) / (denom * denom)
        xi = (xi - residual / slope).clamp(0, 1)
        out = x0 + xi * w
    else:
        xi = ((x - x0) / w).clamp(0, 1)
    t = xi * (1 - xi)
    denom = s + c * t
    numer = d1 * xi * xi + 2 * s * t + d0 * (1 - xi) * (1 - xi)
    log_deriv = 2 * torch.log(s) + torch.log(numer) - 2 * torch.log(denom)
    if inverse:
        return out, -log_deriv
    y = y0 + h * (s * xi * xi + d0 * t) / denom
    return y, log_deriv


def rational_quadratic(
    x: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    inverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate the spline (or its inverse) elementwise.

    Args:
        x: points in [left, right], shape [...]; values a rounding error outside are clamped.
        widths, heights: bin fractions [..., K], positive, summing to one along the last axis.
        derivatives: positive knot derivatives [..., K+1].
        left, right: interval bounds broadcastable to ``x``.
        inverse: evaluate the inverse map.

    Returns:
        ``(y, log|dy/dx|)`` elementwise; for ``inverse=True`` the log-derivative of the inverse.
    """
    # one point per row: m = 1; the bounds broadcast against [..., 2, K-1, 1]
    left = torch.broadcast_to(left, x.shape)[..., None, None, None]
    right = torch.broadcast_to(right, x.shape)[..., None, None, None]
    knots = knots_from_fractions(torch.stack([widths, heights], dim=-2)[..., None], left, right)
    y, log_deriv = spline_bins_first(x[..., None], knots, derivatives[..., None], inverse)
    return y[..., 0], log_deriv[..., 0]
