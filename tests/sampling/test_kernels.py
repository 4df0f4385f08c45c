"""MCMC kernels: invariance of the target (Gaussian, double well, circle, interval), domains,
non-finite targets, step-size adaptation, differentiable moves and stochastic-flow log-weights.

Chains start from exact samples, so after a few moves they are still independent exact
samples of the target: sample statistics are checked to 5 standard errors, histograms by
a chi-square bound that a correct kernel exceeds with probability ~1e-4.
"""

import math

import pytest
import torch

from boltzflow.energy.toys import Cylinder, DoubleWell
from boltzflow.flows import Circle, Interval, Real, wrap
from boltzflow.sampling import HMC, MALA, Metropolis

from .cases import (
    CorrelatedGaussian, assert_mean_within, cylinder_samples, double_well_marginal, sample_from_cdf,
    standard_normal_log_prob, truncated_normal,
)

KERNEL_TYPES = {"metropolis": Metropolis, "mala": MALA, "hmc": HMC}
KERNELS = {
    "metropolis": lambda **kw: Metropolis(0.9, adapt=False, **kw),
    "mala": lambda **kw: MALA(0.3, adapt=False, **kw),
    "hmc": lambda **kw: HMC(0.6, n_leapfrog=4, adapt=False, **kw),
}


def run(kernel, x, log_p_fn, steps):
    """``steps`` moves, reusing log p and its gradient; returns x and the mean acceptance per step."""
    info, rates = None, []
    for _ in range(steps):
        x, info = kernel(x, log_p_fn, *((info.log_p, info.grad) if info else ()))
        rates.append(info.acceptance_rate)
    return x, rates


@pytest.mark.parametrize("name", KERNELS)
def test_kernels_leave_a_correlated_gaussian_invariant(name, device, dtype):
    target = CorrelatedGaussian(device, dtype)
    x0 = target.sample(4000)
    x, rates = run(KERNELS[name](), x0, target, steps=10)
    assert x.dtype == dtype and x.device.type == device.type and torch.isfinite(x).all()
    assert all(0.05 < r < 0.99 for r in rates), rates
    assert (x != x0).any(-1).float().mean() > 0.5  # the chains moved
    assert_mean_within(x, target.mean.tolist(), what="mean")
    d = x.double() - target.mean.double()
    second = torch.stack([d[:, 0] ** 2, d[:, 0] * d[:, 1], d[:, 1] ** 2], -1)
    cov = target.cov.double()
    assert_mean_within(second, [cov[0, 0], cov[0, 1], cov[1, 1]], what="covariance")


@pytest.mark.parametrize("name", KERNELS)
def test_kernels_keep_the_double_well_histogram(name):
    """x₁ of toys.DoubleWell against its quadrature marginal, in 20 bins of equal probability."""
    grid, _, cdf = double_well_marginal()
    n = 4000
    x0 = torch.stack([sample_from_cdf(grid, cdf, n), torch.randn(n, dtype=torch.float64)], -1)
    well = DoubleWell()
    kernel = {"metropolis": Metropolis(0.6, adapt=False), "mala": MALA(0.02, adapt=False),
              "hmc": HMC(0.1, n_leapfrog=5, adapt=False)}[name]
    x, rates = run(kernel, x0, lambda x: -well(x), steps=25)
    assert 0.3 < sum(rates) / len(rates) < 0.99
    edges = grid[torch.searchsorted(cdf, torch.linspace(0, 1, 21, dtype=torch.float64)[1:-1])]
    counts = torch.bincount(torch.searchsorted(edges, x[:, 0].contiguous()), minlength=20).double()
    chi2 = float(((counts - n / 20) ** 2 / (n / 20)).sum())
    assert chi2 < 19 + 5 * math.sqrt(2 * 19), chi2


@pytest.mark.parametrize("name,step", [("metropolis", [0.8, 1.5]), ("mala", [0.2, 0.3]), ("hmc", 0.4)])
def test_circle_dimensions_wrap_and_keep_the_cylinder_distribution(name, step, dtype):
    """toys.Cylinder: x ~ N(0, 1), φ | x ~ von Mises(3x, 1), on (Real, Circle)."""
    target = Cylinder()
    x0 = cylinder_samples(4000, dtype=dtype)
    kernel = KERNEL_TYPES[name](step, domains=target.domains, adapt=False)
    x, rates = run(kernel, x0, lambda x: -target(x), steps=10)
    assert 0.05 < sum(rates) / len(rates) < 0.99
    phi = x[:, 1]
    assert ((phi >= -math.pi) & (phi < math.pi)).all()
    rel = phi.double() - 3 * x[:, 0].double()
    mean_cos = float(torch.special.i1(torch.tensor(1.0)) / torch.special.i0(torch.tensor(1.0)))
    stats = torch.stack([x[:, 0].double(), x[:, 0].double() ** 2, torch.cos(rel), torch.sin(rel)], -1)
    assert_mean_within(stats, [0.0, 1.0, mean_cos, 0.0], what="x, x², cos(φ−3x), sin(φ−3x)")


@pytest.mark.parametrize("name,step", [("metropolis", 2.0), ("mala", 1.0), ("mala", 3.0), ("hmc", 0.5)])
def test_large_moves_across_the_cut_of_the_circle(name, step):
    """von Mises(2.5, κ = 2), its mode next to the cut at ±π; large MALA steps wrap around
    the circle, and need the wrapped-normal proposal density."""
    kappa, mu, n = 2.0, 2.5, 4000
    noise = torch.distributions.VonMises(torch.tensor(0.0), torch.tensor(kappa)).sample((n,)).double()
    x0 = wrap(mu + noise)[:, None]
    kernel = KERNEL_TYPES[name](step, domains=[Circle()], adapt=False)
    x, rates = run(kernel, x0, lambda x: kappa * torch.cos(x[:, 0] - mu), steps=10)
    assert ((x >= -math.pi) & (x < math.pi)).all()
    assert 0.05 < sum(rates) / len(rates) < 0.99
    mean_cos = float(torch.special.i1(torch.tensor(kappa)) / torch.special.i0(torch.tensor(kappa)))
    rel = x[:, 0] - mu
    assert_mean_within(torch.stack([torch.cos(rel), torch.sin(rel)], -1), [mean_cos, 0.0],
                       what="cos(φ−μ), sin(φ−μ)")


@pytest.mark.parametrize("name,step", [("metropolis", 0.8), ("mala", 0.2), ("hmc", 0.3)])
def test_interval_dimensions_are_never_left(name, step):
    """A Gaussian truncated to [0, 1] (mean 0.9, sd 0.3) × a conditional Gaussian; large steps."""
    a, moments = truncated_normal(4000, 0.9, 0.3, 0.0, 1.0)
    x0 = torch.stack([a, a + torch.randn_like(a)], -1)

    def log_p(x):
        return -0.5 * ((x[:, 0] - 0.9) / 0.3) ** 2 - 0.5 * (x[:, 1] - x[:, 0]) ** 2

    kernel = KERNEL_TYPES[name](
        step, domains=[Interval(0.0, 1.0), Real()], adapt=False)
    x, rates = run(kernel, x0, log_p, steps=15)
    assert ((x[:, 0] >= 0) & (x[:, 0] <= 1)).all()
    assert 0.05 < sum(rates) / len(rates) < 0.99
    assert_mean_within(torch.stack([x[:, 0], x[:, 0] ** 2], -1), moments, what="E[a], E[a²]")


def test_hmc_stays_exact_at_the_edge_of_an_interval():
    """N(0.95, 0.1²) on [0, 1]: many trajectories cross 1 and are rejected."""
    a, moments = truncated_normal(4000, 0.95, 0.1, 0.0, 1.0)
    kernel = HMC(0.04, n_leapfrog=10, domains=[Interval(0.0, 1.0)], adapt=False)
    x, rates = run(kernel, a[:, None], lambda x: -0.5 * ((x[:, 0] - 0.95) / 0.1) ** 2, steps=10)
    assert ((x >= 0) & (x <= 1)).all() and 0.2 < sum(rates) / len(rates) < 0.9
    assert_mean_within(torch.stack([x[:, 0], x[:, 0] ** 2], -1), moments, what="E[a], E[a²]")


@pytest.mark.parametrize("name", KERNELS)
def test_non_finite_targets_reject_and_never_leak(name, dtype):
    """log p is NaN for x₀ > 1 and +inf for x₁ < −1: both count as −inf; chains stay outside them."""

    def log_p(x):
        lp = -0.5 * (x**2).sum(-1)
        lp = torch.where(x[:, 0] > 1, torch.full_like(lp, math.nan), lp)
        return torch.where(x[:, 1] < -1, torch.full_like(lp, math.inf), lp)

    x = (0.3 * torch.randn(1000, 2, dtype=dtype)).clamp(-0.9, 0.9)
    kernel = KERNELS[name]()
    for _ in range(5):
        x, info = kernel(x, log_p)
        assert torch.isfinite(x).all() and torch.isfinite(info.log_p).all()
        assert not torch.isnan(info.log_weight_delta).any()
        assert (x[:, 0] <= 1).all() and (x[:, 1] >= -1).all()


@pytest.mark.parametrize("name", KERNELS)
def test_step_size_adaptation_reaches_the_target_acceptance(name):
    """From far too small and far too large steps, on a 20-D Gaussian with scales 0.5 … 1.5."""
    scale = torch.linspace(0.5, 1.5, 20, dtype=torch.float64)
    target = lambda x: -0.5 * ((x / scale) ** 2).sum(-1)  # noqa: E731
    for start in (0.02, 5.0):
        kernel = KERNEL_TYPES[name](start)
        x, _ = run(kernel, scale * torch.randn(256, 20, dtype=torch.float64), target, steps=200)
        kernel.adapt = False
        frozen = kernel.step_size.clone()
        _, rates = run(kernel, x, target, steps=20)
        assert torch.equal(kernel.step_size, frozen)
        assert abs(sum(rates) / len(rates) - kernel.target_acceptance) < 0.1, (start, rates)


@pytest.mark.parametrize("name", KERNELS)
def test_differentiable_moves_match_finite_differences(name):
    """d/dμ of Σ x_new + Σ ΔS for chains started at μ + z, with the same noise (fixed seed)."""
    target = CorrelatedGaussian()
    z = torch.randn(64, 2, dtype=torch.float64)
    kernel = KERNELS[name](differentiable=True)

    def objective(mu):
        torch.manual_seed(7)
        x, info = kernel(mu + z, target)
        x, info2 = kernel(x, target, info.log_p, info.grad)
        return x.sum() + (info.log_weight_delta + info2.log_weight_delta).sum(), info.accepted

    mu = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    value, accepted = objective(mu)
    assert accepted.any() and (~accepted).any()
    (grad,) = torch.autograd.grad(value, mu)
    h = 1e-6
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = h
        with torch.no_grad():
            fd = (objective(mu + e)[0] - objective(mu - e)[0]) / (2 * h)
        assert abs(grad[i].item() - fd.item()) < 1e-5 * max(1.0, abs(fd.item()))


def test_non_differentiable_kernels_return_detached_points():
    mu = torch.zeros(2, requires_grad=True)
    x, info = HMC(0.3)(mu + torch.randn(8, 2), lambda x: -(x**2).sum(-1))
    assert not x.requires_grad and not info.log_p.requires_grad and not info.grad.requires_grad


@pytest.mark.parametrize("name", ["metropolis", "mala", "ula", "hmc"])
def test_a_flow_of_mcmc_layers_estimates_log_z(name):
    """Wu et al.'s weights log w = log p̃(x_T) − log q₀(x₀) + Σ ΔS for MCMC layers at
    p_β ∝ q₀^(1−β) p̃^β give E[w] = Z; ULA exercises the non-detailed-balance ΔS."""
    target = CorrelatedGaussian()
    kernel = {"metropolis": Metropolis(0.7), "mala": MALA(0.2), "ula": MALA(0.05, metropolis=False),
              "hmc": HMC(0.3, n_leapfrog=3)}[name]
    kernel.adapt = False
    n = 4000
    x = torch.randn(n, 2, dtype=torch.float64)
    log_w = -standard_normal_log_prob(x)
    for beta in torch.linspace(0, 1, 12)[1:].tolist():
        def layer_target(y, beta=beta):
            return (1 - beta) * standard_normal_log_prob(y) + beta * target(y)
        x, info = kernel(x, layer_target)
        log_w = log_w + info.log_weight_delta
    log_w = log_w + target(x)
    w = torch.exp(log_w - log_w.max())
    estimate = float(torch.log(w.mean()) + log_w.max())
    se = float(w.std() / w.mean()) / math.sqrt(n)  # delta method
    assert abs(estimate - target.log_z) < 5 * se + 0.01, (estimate, target.log_z, se)


def test_ula_weight_increment_is_the_gaussian_noise_ratio():
    """ΔS = ½|ξ|² − ½|ξ̃|² with ξ the forward noise and ξ̃ the noise of the backward move."""
    log_p = lambda x: -0.25 * (x**4).sum(-1)  # noqa: E731
    tau = 0.1
    x = torch.randn(50, 3, dtype=torch.float64)
    torch.manual_seed(3)
    x_new, info = MALA(tau, metropolis=False)(x, log_p)
    grad = lambda y: -(y**3)  # noqa: E731
    xi = (x_new - x - tau * grad(x)) / math.sqrt(2 * tau)
    xi_back = (x - x_new - tau * grad(x_new)) / math.sqrt(2 * tau)
    expected = 0.5 * (xi**2).sum(-1) - 0.5 * (xi_back**2).sum(-1)
    assert info.accepted.all()
    assert torch.allclose(info.log_weight_delta, expected, atol=1e-10)


def test_metropolis_weight_increment_is_the_target_change():
    target = CorrelatedGaussian()
    x = target.sample(200)
    x_new, info = Metropolis(1.0)(x, target)
    expected = torch.where(info.accepted, target(x) - target(x_new), torch.zeros(200, dtype=torch.float64))
    assert torch.allclose(info.log_weight_delta, expected, atol=1e-12)
    assert torch.equal(x_new[~info.accepted], x[~info.accepted])


def test_per_dimension_step_sizes_and_masses():
    target = CorrelatedGaussian()
    x0 = target.sample(4000)
    kernel = HMC([0.4, 0.25], n_leapfrog=4, mass=[1.0, 2.0], adapt=False)
    x, rates = run(kernel, x0, target, steps=8)
    assert 0.3 < sum(rates) / len(rates) < 0.99
    assert_mean_within(x, target.mean.tolist())


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        HMC(0.1, domains=[Real(), Circle()])(torch.zeros(4, 3), lambda x: -x.sum(-1))
    with pytest.raises(ValueError, match=r"shape \[batch, dim\]"):
        Metropolis(0.1)(torch.zeros(4), lambda x: -x.sum(-1))
    with pytest.raises(ValueError, match=r"shape \[batch\] = \[4\]"):
        MALA(0.1)(torch.zeros(4, 2), lambda x: -x)
    with pytest.raises(ValueError, match="step_size"):
        MALA(-0.1)
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        Metropolis([0.1, 0.2, 0.3], domains=[Real(), Real()])
    with pytest.raises(ValueError, match="n_leapfrog"):
        HMC(0.1, n_leapfrog=0)
