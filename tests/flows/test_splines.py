"""The rational-quadratic kernel on its own: knots, boundaries, inverse accuracy."""

import math

import pytest
import torch

from boltzflow.flows import rational_quadratic


def random_spline(n, K, dtype, scale=1.0, seed=0):
    """Bin fractions normalised in ``dtype`` itself (as a layer's softmax is): fractions
    normalised in float32 and then cast sum to 1 ± 1e-7 only, and a "last knot" built from
    them can fall outside the interval."""
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(scale * torch.randn(n, K, generator=g).to(dtype), -1)
    h = torch.softmax(scale * torch.randn(n, K, generator=g).to(dtype), -1)
    d = torch.exp(scale * torch.randn(n, K + 1, generator=g).to(dtype))
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
    # the spline's knots: inner ones from the running sum, the two ends exactly the bounds
    inner = left + (right - left) * torch.cumsum(w[:, :-1], -1)
    knots = torch.cat([left.expand(K + 1, 1), inner, right.expand(K + 1, 1)], -1)
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


def test_ends_are_exact_when_fractions_do_not_sum_to_one():
    """Fractions normalised in float32 and used in float64 sum to 1 ± 1e-7; the end knots
    are still the bounds exactly, so both ends map onto themselves to a few ulps (y0 + h
    rounds once or twice), not to the 1e-7 by which the fractions miss one."""
    g = torch.Generator().manual_seed(3)
    w = torch.softmax(torch.randn(64, 8, generator=g), -1).double()
    h = torch.softmax(torch.randn(64, 8, generator=g), -1).double()
    d = torch.exp(torch.randn(64, 9, generator=g)).double()
    assert (w.sum(-1) - 1).abs().max() > 1e-9  # the case this test is about
    left = torch.tensor(-math.pi, dtype=torch.float64)
    right = torch.tensor(math.pi, dtype=torch.float64)
    for end in (left, right):
        x = end.expand(64).clone()
        y, _ = rational_quadratic(x, w, h, d, left, right)
        x2, _ = rational_quadratic(y, w, h, d, left, right, inverse=True)
        ulp = torch.finfo(torch.float64).eps * math.pi
        assert (y - end).abs().max() <= 4 * ulp and (x2 - end).abs().max() <= 4 * ulp
