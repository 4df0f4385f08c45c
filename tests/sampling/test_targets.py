"""Evaluating targets: log p and its gradient in one pass, non-finite values, domains."""

import math

import pytest
import torch

from boltzflow.energy.toys import DoubleWell
from boltzflow.flows import Circle, Interval, Real
from boltzflow.domains import Support
from boltzflow.sampling import log_prob, log_prob_and_grad


def test_log_prob_and_grad_match_the_analytic_gradient(device, dtype):
    well = DoubleWell()
    x = torch.randn(64, 2, device=device, dtype=dtype)
    with torch.no_grad():  # works inside no_grad: the gradient is taken anyway
        log_p, grad = log_prob_and_grad(lambda x: -well(x), x)
    expected = torch.stack([-(4 * x[:, 0] ** 3 - 12 * x[:, 0] - 0.5), -x[:, 1]], -1)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    assert torch.allclose(grad, expected, atol=tol, rtol=tol)
    assert torch.allclose(log_p, -well(x))
    assert not log_p.requires_grad and not grad.requires_grad and grad.dtype == dtype


def test_non_finite_values_become_minus_inf_with_zero_gradient():
    def log_p(x):
        lp = -(x**2).sum(-1)
        lp = torch.where(x[:, 0] < 0, torch.full_like(lp, -math.inf), lp)
        return torch.where(x[:, 0] == 0, torch.full_like(lp, math.nan), lp)

    x = torch.tensor([[1.0, 2.0], [-1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    lp, grad = log_prob_and_grad(log_p, x)
    assert lp.tolist() == [-5.0, -math.inf, -math.inf]
    assert grad.tolist() == [[-2.0, -4.0], [0.0, 0.0], [0.0, 0.0]]
    assert log_prob(lambda x: torch.full((3,), math.inf), x).tolist() == [-math.inf] * 3
    assert torch.equal(log_prob_and_grad(lambda x: x.new_zeros(3), x)[1], torch.zeros_like(x))


def test_create_graph_keeps_second_derivatives():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    _, grad = log_prob_and_grad(lambda x: -(x**3).sum(-1), x, create_graph=True)
    (hessian_diag,) = torch.autograd.grad(grad.sum(), x)
    assert torch.allclose(hessian_diag, -6 * x)


def test_targets_must_return_one_value_per_point():
    with pytest.raises(ValueError, match=r"shape \[batch\] = \[4\]"):
        log_prob_and_grad(lambda x: x, torch.zeros(4, 2))


def test_space_wraps_circles_and_checks_intervals(device, dtype):
    space = Support([Circle(), Interval(0.0, 1.0), Real()]).to(device)
    x = torch.tensor([[3.5, 0.5, 10.0], [-7.0, 1.5, 0.0], [0.0, 0.0, math.inf]], device=device, dtype=dtype)
    wrapped = space.wrap(x)
    assert ((wrapped[:, 0] >= -math.pi) & (wrapped[:, 0] < math.pi)).all()
    assert torch.equal(wrapped[:, 1:], x[:, 1:])
    assert space.contains(x).tolist() == [True, False, False]
    with pytest.raises(ValueError, match=r"shape \[batch, 3\]"):
        space.check(x[:, :2])
    assert Support().contains(x[:, 1:]).tolist() == [True, True, False]
