"""Flow-level behaviour: sampling, densities, normalisation, support, shapes, devices."""

import math

import pytest
import torch

from boltzflow.flows import (
    AffineAutoregressive, Circle, Flow, Interval, Permutation, ProductBase, Real, spline_flow,
)

from .checks import in_domains, randomize

DOMAINS = [Circle(), Interval(0.0, 1.0), Real(), Circle(), Interval(-2.0, 3.0)]


def random_flow(domains=DOMAINS, conditioner="coupling", **kw):
    flow = spline_flow(domains, layers=4, bins=6, hidden=(16, 16), conditioner=conditioner, **kw)
    return randomize(flow, 0.2)


@pytest.mark.parametrize("conditioner", ["coupling", "autoregressive"])
def test_sample_and_log_prob_agree_with_log_prob(conditioner, device, dtype):
    flow = random_flow(conditioner=conditioner).to(device, dtype)
    x, log_q = flow.sample_and_log_prob(512)
    assert x.shape == (512, 5) and log_q.shape == (512,)
    assert x.device.type == device.type and x.dtype == dtype and log_q.dtype == dtype
    in_domains(x, flow.domains)
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    assert (flow.log_prob(x) - log_q).abs().max() < tol


def test_sample_and_log_prob_is_differentiable_and_sample_is_not():
    flow = random_flow()
    x, log_q = flow.sample_and_log_prob(64)
    (x.sum() + log_q.sum()).backward()
    assert all(p.grad is not None for p in flow.parameters())
    assert not flow.sample(8).requires_grad
    assert flow.rsample(8).requires_grad
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(8)
    assert not x.requires_grad and not log_q.requires_grad


def test_mixed_flow_integrates_to_one():
    """A circle × interval flow's density integrates to 1 (midpoint rule, 600 × 600)."""
    flow = random_flow([Circle(), Interval(0.0, 1.0)]).double()
    n = 600
    a = -math.pi + (torch.arange(n, dtype=torch.float64) + 0.5) * 2 * math.pi / n
    b = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    grid = torch.cartesian_prod(a, b)
    with torch.no_grad():
        density = torch.exp(flow.log_prob(grid))
    total = density.sum() * (2 * math.pi / n) * (1.0 / n)
    assert abs(total.item() - 1) < 1e-3
    assert density.std() > 1e-3  # the flow is not the uniform base


def test_real_flow_integrates_to_one():
    flow = random_flow([Real(), Real()], conditioner="autoregressive").double()
    n = 800
    t = torch.linspace(-12, 12, n, dtype=torch.float64)
    with torch.no_grad():
        density = torch.exp(flow.log_prob(torch.cartesian_prod(t, t)))
    total = density.sum() * (t[1] - t[0]) ** 2
    assert abs(total.item() - 1) < 1e-3


def test_log_prob_outside_support_is_minus_infinity_not_nan():
    flow = random_flow()
    x = flow.sample(4)
    x[0, 1] = 1.5            # interval [0, 1]
    x[1, 4] = -2.0001        # interval [-2, 3]
    x[2, 2] = float("nan")   # real
    x[3, 2] = float("inf")
    log_q = flow.log_prob(x)
    assert torch.isneginf(log_q).all()
    inside = flow.sample(3)
    assert torch.isfinite(flow.log_prob(inside)).all()


def test_circle_values_are_taken_modulo_two_pi():
    flow = random_flow().double()
    x = flow.sample(16)
    shifted = x.clone()
    shifted[:, 0] += 2 * math.pi
    shifted[:, 3] -= 4 * math.pi
    assert torch.allclose(flow.log_prob(shifted), flow.log_prob(x), atol=1e-9)


def test_wrong_shape_names_the_expected_shape():
    flow = random_flow()
    with pytest.raises(ValueError, match=r"\[batch, 5\]"):
        flow.log_prob(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[batch, 5\]"):
        flow.log_prob(torch.zeros(5))


def test_flow_checks_that_layer_domains_chain():
    domains = [Real(), Circle()]
    perm = Permutation(domains, [1, 0])
    with pytest.raises(ValueError, match="expects domains"):
        Flow(ProductBase(domains), [perm, AffineAutoregressive(domains)])
    flow = Flow(ProductBase(domains), [perm])
    assert flow.domains == (Circle(), Real()) and flow.event_shape == torch.Size([2])


def test_builder_validates_its_arguments():
    with pytest.raises(ValueError, match="conditioner"):
        spline_flow(DOMAINS, conditioner="magic")
    with pytest.raises(ValueError, match="at least 2"):
        spline_flow([Real()])
    with pytest.raises(TypeError, match="expected Real"):
        spline_flow([Real(), "circle"])
    with pytest.raises(ValueError, match="finite low < high"):
        Interval(1.0, 0.0)


def test_state_dict_round_trip_gives_the_same_flow():
    a, b = random_flow(), spline_flow(DOMAINS, layers=4, bins=6, hidden=(16, 16))
    b.load_state_dict(a.state_dict())
    x = a.sample(32)
    assert torch.equal(a.log_prob(x), b.log_prob(x))
