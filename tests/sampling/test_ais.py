"""Annealed importance sampling: log Z on targets with known normalisers (closed form or
quadrature), variance against the number of levels, the FAB target p²/q, step-size
adaptation across calls, failed chains, schedules.

log Z estimates are compared within 5 standard errors (delta method on the weights).
"""

import math

import pytest
import torch

from boltzflow.analysis import kish_ess, log_normalizer
from boltzflow.energy.toys import Cylinder, DoubleWell, ShiftedGaussian
from boltzflow.sampling import AIS, HMC, MALA, Metropolis, annealing_schedule, gradient_scale

from .cases import CorrelatedGaussian, double_well_log_z, double_well_marginal, standard_normal_log_prob


def standard_error_of_log_z(log_w):
    w = torch.exp(log_w.double() - log_w.max())
    return float(w.std() / w.mean()) / math.sqrt(len(w))


def normal_log_prob(scale):
    return lambda x: standard_normal_log_prob(x / scale) - x.shape[-1] * math.log(scale)


def assert_log_z(log_w, expected, extra=0.0):
    estimate, se = float(log_normalizer(log_w)), standard_error_of_log_z(log_w)
    assert abs(estimate - expected) < 5 * se + extra, (estimate, expected, se)


def test_ais_estimates_log_z_of_the_shifted_gaussian(device, dtype):
    """N(0, I) → toys.ShiftedGaussian (mean [5, 5], variance 0.5): plain importance sampling
    would need ~e^50 samples."""
    target = ShiftedGaussian()
    x = torch.randn(1000, 2, device=device, dtype=dtype)
    ais = AIS(HMC(0.3, n_leapfrog=5), n_intermediate=50)
    result = ais(x, standard_normal_log_prob, lambda x: -target(x))
    assert result.x.dtype == dtype and result.x.device.type == device.type
    assert torch.isfinite(result.log_w).all() and result.acceptance.shape == (50,)
    assert ((result.acceptance > 0.3) & (result.acceptance < 1)).all()
    assert_log_z(result.log_w, target.log_z, extra=0.02 if dtype == torch.float32 else 0.0)
    assert torch.allclose(result.log_p, -target(result.x)) and torch.allclose(
        result.log_q, standard_normal_log_prob(result.x))


def test_more_intermediate_distributions_reduce_the_weight_variance():
    target = CorrelatedGaussian()
    x = torch.randn(2000, 2, dtype=torch.float64)
    variances = []
    for m in (2, 8, 32):
        result = AIS(MALA(0.2), n_intermediate=m, adapt=False)(x, standard_normal_log_prob, target)
        variances.append(float(result.log_w.var()))
        assert_log_z(result.log_w, target.log_z)
    assert variances[0] > 2 * variances[1] > 4 * variances[2], variances


@pytest.mark.parametrize("spacing", ["linear", "geometric"])
def test_ais_on_the_double_well_matches_quadrature(spacing):
    """toys.DoubleWell from N(0, 2² I): two wells 9 kT deep, log Z by quadrature."""
    x = 2 * torch.randn(2000, 2, dtype=torch.float64)
    ais = AIS(HMC(0.15, n_leapfrog=5), n_intermediate=40, spacing=spacing, min_beta=0.01)
    result = ais(x, normal_log_prob(2.0), lambda x: -DoubleWell()(x))
    assert_log_z(result.log_w, double_well_log_z())


def test_ais_on_a_circle_and_a_real_line_estimates_the_cylinder_log_z():
    """toys.Cylinder from N(0, 1) × uniform on the circle, with the domains in the kernel."""
    target = Cylinder()
    n = 2000
    x = torch.stack([torch.randn(n), (2 * torch.rand(n) - 1) * math.pi], -1).double()

    def log_q(x):
        return -0.5 * x[:, 0] ** 2 - 0.5 * math.log(2 * math.pi) - math.log(2 * math.pi)

    ais = AIS(HMC(0.3, n_leapfrog=4, domains=target.domains), n_intermediate=20)
    result = ais(x, log_q, lambda x: -target(x))
    assert ((result.x[:, 1] >= -math.pi) & (result.x[:, 1] < math.pi)).all()
    assert_log_z(result.log_w, target.log_z)


def test_fab_target_p_squared_over_q():
    """α = 2 anneals to p̃²/q: log ∫ p̃²/q in closed form for q = N(0, σq² I), p̃ = exp(−|x−μ|²/2σp²);
    and it equals α = 1 with the target 2 log p̃ − log q."""
    sq, sp, mu, d = 1.5, 1.0, torch.tensor([0.5, -0.5], dtype=torch.float64), 2
    log_q = normal_log_prob(sq)

    def log_p(x):
        return -((x - mu) ** 2).sum(-1) / (2 * sp**2)

    a = 2 / sp**2 - 1 / sq**2
    b = 2 * mu / sp**2
    log_z2 = 0.5 * d * math.log(2 * math.pi * sq**2) + float(
        (0.5 * math.log(2 * math.pi / a) + b**2 / (2 * a) - mu**2 / sp**2).sum())
    x = sq * torch.randn(2000, d, dtype=torch.float64)
    ais = AIS(HMC(0.3, n_leapfrog=3), n_intermediate=10, adapt=False)
    torch.manual_seed(5)
    fab = ais(x, log_q, log_p, log_q=log_q(x), alpha=2.0)
    assert_log_z(fab.log_w, log_z2)
    torch.manual_seed(5)
    explicit = ais(x, log_q, lambda x: 2 * log_p(x) - log_q(x))
    assert torch.allclose(fab.log_w, explicit.log_w, atol=1e-9) and torch.allclose(fab.x, explicit.x)


@pytest.mark.parametrize("kernel", [HMC(3.0, n_leapfrog=3), Metropolis(10.0), MALA(3.0)], ids=type)
def test_step_sizes_adapt_across_calls_and_can_be_frozen(kernel):
    target = CorrelatedGaussian()
    ais = AIS(kernel, n_intermediate=4)
    x = torch.randn(256, 2, dtype=torch.float64)
    first = ais(x, standard_normal_log_prob, target).acceptance
    for _ in range(60):
        last = ais(x, standard_normal_log_prob, target).acceptance
    goal = kernel.target_acceptance
    assert ((last - goal).abs() < (first - goal).abs()).all() and ((last - goal).abs() < 0.15).all(), last
    ais.adapt = False
    steps = [k.step_size.clone() for k in ais.kernels]
    ais(x, standard_normal_log_prob, target)
    assert all(torch.equal(k.step_size, s) for k, s in zip(ais.kernels, steps))
    assert len({float(k.step_size) for k in ais.kernels}) == 4  # one step size per level


def test_failed_chains_get_zero_weight_and_never_nan(dtype):
    """A base point with log q = −inf, a target N(1, I) that is NaN for x₀ > 2.5: the estimate
    is the normaliser of the valid part, 2π·Φ(1.5)."""
    def log_p(x):
        lp = -0.5 * ((x - 1) ** 2).sum(-1)
        return torch.where(x[:, 0] > 2.5, torch.full_like(lp, math.nan), lp)

    x = torch.randn(2000, 2, dtype=dtype)
    log_q = standard_normal_log_prob(x)
    log_q[0] = -math.inf
    x[1] = torch.tensor([3.0, 0.0])  # starts where the target is NaN
    result = AIS(HMC(0.5, n_leapfrog=3), n_intermediate=5)(x, standard_normal_log_prob, log_p, log_q=log_q)
    assert not torch.isnan(result.log_w).any() and torch.isfinite(result.x).all()
    assert result.log_w[0] == -math.inf and result.log_w[1] == -math.inf
    phi = 0.5 * (1 + math.erf(1.5 / math.sqrt(2)))
    assert_log_z(result.log_w, math.log(2 * math.pi * phi), extra=0.01 if dtype == torch.float32 else 0.0)


def test_zero_intermediate_distributions_is_importance_sampling():
    target = CorrelatedGaussian()
    x = torch.randn(100, 2, dtype=torch.float64)
    result = AIS(HMC(0.3), n_intermediate=0)(x, standard_normal_log_prob, target)
    assert torch.equal(result.x, x) and result.acceptance.shape == (0,)
    assert torch.allclose(result.log_w, target(x) - standard_normal_log_prob(x))


def test_schedules():
    assert annealing_schedule(3) == (0.0, 0.25, 0.5, 0.75, 1.0)
    betas = torch.tensor(annealing_schedule(4, "geometric", min_beta=1e-4))
    assert betas[0] == 0 and betas[-1] == 1 and abs(betas[1] - 1e-4) < 1e-12
    ratios = betas[2:] / betas[1:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    assert annealing_schedule(0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="spacing"):
        annealing_schedule(3, "cosine")
    with pytest.raises(ValueError, match="n_intermediate"):
        AIS(HMC(0.1), n_intermediate=-1)
    with pytest.raises(ValueError, match=r"shape \[batch\] = \[4\]"):
        AIS(HMC(0.1), 2)(torch.zeros(4, 2), standard_normal_log_prob, standard_normal_log_prob,
                         log_q=torch.zeros(3))


# Sampling-time correction: step sizes tuned on warm-up batches, then frozen for production.

def _warmed_up(kernel, n_intermediate, draw, log_q, log_p, iterations=30):
    ais = AIS(kernel, n_intermediate=n_intermediate)
    history = ais.warm_up(draw, log_q, log_p, iterations)
    return ais, history


def test_ais_from_a_poor_flow_reaches_the_double_well_delta_f_of_quadrature():
    """q = N((−1, 0), diag(1, 1)) puts most of its mass in the left well of toys.DoubleWell
    (which holds 15.6%); AIS with 16 levels reaches ΔF = F_right − F_left of quadrature
    within 5 standard errors (delta method on the weighted indicators of the sample)."""
    mean = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    log_q = lambda x: standard_normal_log_prob(x - mean)  # noqa: E731
    log_p = lambda x: -DoubleWell()(x)  # noqa: E731

    def draw(n=256):
        x = mean + torch.randn(n, 2, dtype=torch.float64)
        return x, log_q(x)

    ais, _ = _warmed_up(HMC(0.5, n_leapfrog=4), 16, draw, log_q, log_p)
    x, lq = draw(4000)
    result = ais(x, log_q, log_p, log_q=lq)
    w = torch.exp(result.log_w - result.log_w.max())
    right = (result.x[:, 0] > 0).double()
    a, b = w * right, w * (1 - right)
    delta_f = -math.log(float(a.mean() / b.mean()))
    influence = a / a.mean() - b / b.mean()
    se = float(influence.std()) / math.sqrt(len(w))
    grid, _, cdf = double_well_marginal()
    left = float(cdf[torch.searchsorted(grid, torch.tensor(0.0, dtype=torch.float64))])
    expected = -math.log((1 - left) / left)
    assert abs(delta_f - expected) < 5 * se, (delta_f, expected, se)
    # the flow alone, on the same draws: its weights are far more uneven
    assert kish_ess(result.log_w) > 2 * kish_ess(log_p(x) - lq)


def test_ais_weights_are_unbiased_on_a_gaussian_with_known_z(dtype):
    """q = N(0, I₃), p̃ = exp(−|x − μ|²/2σ²) with Z = (2πσ²)^{3/2}: the mean of w = e^{log w}
    (not of log w) equals Z within 5 Monte-Carlo standard errors of that mean."""
    sigma, mu = 0.6, torch.tensor([0.8, -0.4, 0.3], dtype=dtype)
    z_true = (2 * math.pi * sigma**2) ** 1.5

    def log_p(x):
        return -((x - mu) ** 2).sum(-1) / (2 * sigma**2)

    def draw(n=256):
        x = torch.randn(n, 3, dtype=dtype)
        return x, standard_normal_log_prob(x)

    ais, _ = _warmed_up(MALA(0.3), 8, draw, standard_normal_log_prob, log_p)
    x, lq = draw(8000)
    w = torch.exp(ais(x, standard_normal_log_prob, log_p, log_q=lq).log_w.double())
    se = float(w.std()) / math.sqrt(len(w))
    assert abs(float(w.mean()) - z_true) < 5 * se, (float(w.mean()), z_true, se)


# relative standard error of a scale estimated from n = 256 Gaussian draws: of the standard
# deviation 1/√(2n); of the median of |g| √(p(1−p)/n) / (2φ(m)·m) with m = 0.6745, p = 1/2
_N_WARM = 256
_SCALE_SE = {"spread": 1 / math.sqrt(2 * _N_WARM),
             "curvature": math.sqrt(0.25 / _N_WARM) / (2 * math.exp(-0.6745**2 / 2) / math.sqrt(2 * math.pi) * 0.6745)}


@pytest.mark.parametrize("precondition", ["spread", "curvature"])
@pytest.mark.parametrize("kernel", [HMC(1.0, n_leapfrog=3), MALA(1.0)], ids=type)
def test_warm_up_preconditions_tunes_and_freezes_the_step_sizes(kernel, precondition):
    """The warm-up scales step sizes by a length per coordinate (q's spread, or the level's
    conditional width from its gradient; to the kernel's power), tunes each level towards
    the target acceptance, and leaves them frozen: production calls do not change them."""
    scales = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    log_q = lambda x: standard_normal_log_prob(x / scales)  # noqa: E731

    def draw(n=_N_WARM):
        x = scales * torch.randn(n, 3, dtype=torch.float64)
        return x, log_q(x)

    target = lambda x: log_q(x * 1.25)  # noqa: E731  (a narrower Gaussian)
    ais = AIS(kernel, n_intermediate=4)
    history = ais.warm_up(draw, log_q, target, 40, precondition=precondition)
    assert history.shape == (40, 4) and not ais.adapt
    frozen = ais.step_sizes.clone()
    assert frozen.shape == (4, 3)
    ratio = frozen / frozen[:, :1]
    lengths = ratio ** (1 / kernel.step_size_power)  # ≈ the coordinates' scale ratios, from one batch
    tolerance = 5 * math.sqrt(2) * _SCALE_SE[precondition]  # a ratio of two estimates, 5 standard errors
    assert torch.allclose(lengths, (scales / scales[0]).expand_as(lengths), rtol=tolerance), lengths
    assert ((history[-1] - kernel.target_acceptance).abs() < 0.15).all(), history[-1]
    for _ in range(2):
        ais(*draw()[:1], log_q, target)
    assert torch.equal(ais.step_sizes, frozen)


def test_gradient_evaluations_count_what_the_chains_cost():
    calls = {"grad": 0, "plain": 0}

    def log_p(x):
        calls["grad" if x.requires_grad else "plain"] += len(x)
        return standard_normal_log_prob(x)

    x = torch.randn(10, 2, dtype=torch.float64)
    for kernel, steps in ((HMC(0.3, n_leapfrog=3), 2), (MALA(0.3), 3)):
        calls.update(grad=0, plain=0)
        ais = AIS(kernel, n_intermediate=5, steps_per_level=steps, adapt=False)
        ais(x, standard_normal_log_prob, log_p, log_q=standard_normal_log_prob(x))
        assert calls["grad"] == ais.gradient_evaluations * len(x) and calls["plain"] == len(x)
    assert AIS(HMC(0.3, n_leapfrog=3), 16).gradient_evaluations == 64


def test_gradient_scale_is_the_conditional_width():
    """For N(μ, Σ), ∂ᵢ log p ~ N(0, Pᵢᵢ) with P = Σ⁻¹, so the scale is 1/√Pᵢᵢ, the width of
    coordinate i given the others (0.75 and 0.53 here; the marginal widths are 1.41 and 1);
    within 5 standard errors of a median of n = 4000 draws."""
    target = CorrelatedGaussian()
    x = target.sample(4000)
    grad = -(x - target.mean) @ target.precision
    expected = 1 / target.precision.diagonal().sqrt()
    se = math.sqrt(0.25 / len(x)) / (2 * math.exp(-0.6745**2 / 2) / math.sqrt(2 * math.pi) * 0.6745)
    assert torch.allclose(gradient_scale(grad), expected, rtol=5 * se), (gradient_scale(grad), expected)
    assert torch.equal(gradient_scale(torch.tensor([[0.0, 2.0], [0.0, -2.0]])), torch.tensor([0.33725, 0.33725],
                                                                                           dtype=torch.float64))
    with pytest.raises(ValueError, match="precondition"):
        AIS(HMC(0.1), 2).warm_up(lambda: (x, x[:, 0]), standard_normal_log_prob, target, 1, precondition="hessian")
