"""The rational-quadratic kernel on its own: knots, boundaries, inverse accuracy."""

import math

import pytest
import torch

from boltzflow.flows import rational_quadratic


def random_spline(n, K, dtype, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(scale * torch.randn(n, K, generator=g), -1).to(dtype)
    h = torch.softmax(scale * torch.randn(n, K, generator=g), -1).to(dtype)
    d = torch.exp(scale * torch.randn(n, K + 1, generator=g)).to(dtype)
    return w, h, d


def test_matches_quadrature_of_its_derivative():
    """y(x) - y(left) equals the integral of exp(log dy/dx): checks value and derivative."""
    w, h, d = random_spline(1, 6, torch.float64)
    left, right = torch.tensor(-1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    x = torch.linspace(-1, 2, 200001, dtype=torch.float64)
    y, ld = rational_quadratic(x, w.expand(len(x), -1), h.expand(len(x), -1),
                               d.expand(len(x), -1), left, right)
    deriv = torch.exp(ld)
    integral = torch.cumulative_trapezoid(deriv, x)
    assert torch.allclose(y[1:] - y[0], integral, atol=1e-8)
    assert y[0] == -1.0 and abs(y[-1].item() - 2.0) < 1e-14


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knots_and_boundaries_are_finite_and_invert(dtype):
    K = 8
    w, h, d = random_spline(K + 1, K, dtype)
    left = torch.tensor(-math.pi, dtype=dtype)
    right = torch.tensor(math.pi, dtype=dtype)
    knots = left + (right - left) * torch.cat([torch.zeros(K + 1, 1, dtype=dtype),
                                               torch.cumsum(w, -1)], -1)
    x = knots.diagonal().clone().requires_grad_(True)  # row i evaluated at its knot i
    y, ld = rational_quadratic(x, w, h, d, left, right)
    x2, ld2 = rational_quadratic(y, w, h, d, left, right, inverse=True)
    (y.sum() + ld.sum() + x2.sum() + ld2.sum()).backward()
    assert torch.isfinite(y).all() and torch.isfinite(ld).all() and torch.isfinite(x.grad).all()
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    assert (x2 - x).abs().max() < tol and (ld + ld2).abs().max() < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_is_accurate_to_rounding(dtype):
    """The round trip is as accurate as representing x and y allows, even for steep or
    flat bins: |x2 - x| · dy/dx stays within a few ulps of |y| + dy/dx · |x|."""
    n = 20000
    w, h, d = random_spline(n, 8, dtype, scale=1.5)
    left, right = torch.tensor(-3.0, dtype=dtype), torch.tensor(3.0, dtype=dtype)
    x = -3 + 6 * torch.rand(n, dtype=dtype)
    y, ld = rational_quadratic(x, w, h, d, left, right)
    x2, _ = rational_quadratic(y, w, h, d, left, right, inverse=True)
    slope = torch.exp(ld)
    ulps = (x2 - x).abs() * slope / (torch.finfo(dtype).eps * (y.abs() + slope * x.abs() + 1))
    assert ulps.max() < 16
