"""Energy regularisation and the toy targets' normalisers (by quadrature)."""

import math

import pytest
import torch

from boltzflow.energy.reduced import regularize
from boltzflow.energy.toys import Cylinder, DoubleWell, GaussianMixture2D, ManyWell, ShiftedGaussian


def test_regularize_is_linear_then_logarithmic_then_capped():
    u = torch.tensor([-5.0, 10.0, 1e3, 1e3 + math.e - 1, 1e30, float("nan"), float("inf")],
                     dtype=torch.float64, requires_grad=True)
    out = regularize(u, high=1e3, cap=1e6)
    expected = torch.tensor([-5.0, 10.0, 1e3, 1e3 + 1, 1e3 + math.log1p(1e30 - 1e3), math.inf, 1e6],
                            dtype=torch.float64)
    expected[4] = min(expected[4].item(), 1e6)
    assert torch.equal(out[:2], expected[:2])
    torch.testing.assert_close(out[2:5], expected[2:5])
    assert out[5] == math.inf and out[6] == 1e6
    g = torch.autograd.grad(out[:4].sum(), u)[0]
    torch.testing.assert_close(g[:4], torch.tensor([1.0, 1.0, 1.0, 1 / math.e], dtype=torch.float64))
    with pytest.raises(ValueError):
        regularize(u, high=10, cap=1)


def grid_log_z(target, lo, hi, n=1501):
    axes = []
    for d, a, b in zip(target.domains, lo, hi):
        axes.append(torch.linspace(a, b, n, dtype=torch.float64))
    grid = torch.cartesian_prod(*axes)
    density = torch.exp(-target(grid)).reshape(n, n)
    return math.log(torch.trapezoid(torch.trapezoid(density, axes[1], dim=1), axes[0]).item())


@pytest.mark.parametrize("target, lo, hi", [
    (ShiftedGaussian(), (0, 0), (10, 10)),
    (GaussianMixture2D(), (-8, -8), (8, 8)),
    (Cylinder(), (-9, -math.pi), (9, math.pi)),
])
def test_closed_form_log_z_matches_quadrature(target, lo, hi):
    assert abs(grid_log_z(target, lo, hi) - target.log_z) < 1e-6


def test_many_well_is_a_sum_of_double_wells():
    x = torch.randn(5, 32, dtype=torch.float64)
    well = DoubleWell()
    expected = sum(well(x[:, 2 * i : 2 * i + 2]) for i in range(16))
    torch.testing.assert_close(ManyWell(32)(x), expected)
    with pytest.raises(ValueError, match=r"\[batch, 32\]"):
        ManyWell(32)(torch.zeros(3, 30))
