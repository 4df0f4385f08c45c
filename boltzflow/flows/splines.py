"""Monotonic rational-quadratic spline kernel (Durkan et al. 2019, "Neural Spline Flows").

The kernel maps an interval [left, right] onto itself through K bins whose widths,
heights and knot derivatives are given per element. All functions are elementwise over
arbitrary leading dimensions and work in float32 and float64.
"""

from __future__ import annotations

import torch


def _knots(fractions: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Knot positions [..., K+1] from bin fractions [..., K] that sum to one."""
    cum = torch.cumsum(fractions, dim=-1)
    inner = left[..., None] + (right - left)[..., None] * cum[..., :-1]
    return torch.cat([left[..., None], inner, right[..., None]], dim=-1)


def _select(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(table, -1, index[..., None])[..., 0]


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
    left = torch.broadcast_to(left, x.shape)
    right = torch.broadcast_to(right, x.shape)
    xk = _knots(widths, left, right)
    yk = _knots(heights, left, right)
    knots_in = yk if inverse else xk
    index = (x[..., None] >= knots_in[..., 1:-1]).sum(dim=-1)

    x0, x1 = _select(xk, index), _select(xk, index + 1)
    y0, y1 = _select(yk, index), _select(yk, index + 1)
    d0, d1 = _select(derivatives, index), _select(derivatives, index + 1)
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
