"""ΔF, PMFs, Ramachandran surfaces and reweighted averages against quadrature and analytic values."""

import math

import numpy as np
import pytest
import torch

from boltzflow.analysis import (MIN_STATE_ESS, delta_f, pmf, population, ramachandran, reweighted_average,
                                state_delta_f, state_samples)
from boltzflow.errors import BoltzflowError
from boltzflow.systems import load_system

from .cases import (double_well, double_well_delta_f, exact_draws, log_integral, periodic_bin_free_energies,
                    periodic_potential)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_delta_f_of_exact_double_well_samples_matches_quadrature():
    n = 20_000
    x = exact_draws(double_well, -4, 4, n, gen(0))
    estimate = delta_f(x < 0, x >= 0, generator=gen(1))
    truth = double_well_delta_f()
    assert estimate.value == pytest.approx(truth, abs=4 * estimate.error)
    # the bootstrap error agrees with the binomial delta method sqrt(1 / (n p (1 − p)))
    p = 1 / (1 + math.exp(truth))
    assert estimate.error == pytest.approx(math.sqrt(1 / (n * p * (1 - p))), rel=0.15)
    assert estimate.low < estimate.value < estimate.high and estimate.method == "bootstrap"


def test_delta_f_from_importance_weights_matches_quadrature():
    s = 1.3  # Gaussian proposal covering both wells
    x = s * torch.randn(40_000, dtype=torch.float64, generator=gen(2))
    log_q = -0.5 * (x / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    estimate = delta_f(x < 0, x >= 0, log_w=-double_well(x) - log_q, generator=gen(3))
    assert estimate.value == pytest.approx(double_well_delta_f(), abs=4 * estimate.error)
    assert estimate.error < 0.1


def test_population_and_its_interval_match_quadrature_and_the_binomial_error():
    n = 20_000
    x = exact_draws(double_well, -4, 4, n, gen(20))
    estimate = population(x >= 0, generator=gen(21))
    truth = 1 / (1 + math.exp(double_well_delta_f()))  # p(x ≥ 0) by quadrature
    assert estimate.value == pytest.approx(truth, abs=4 * estimate.error)
    assert estimate.error == pytest.approx(math.sqrt(truth * (1 - truth) / n), rel=0.15)
    assert estimate.low < estimate.value < estimate.high and estimate.method == "bootstrap"


def test_population_error_from_weights_matches_the_delta_method():
    s = 1.3  # Gaussian proposal covering both wells
    x = s * torch.randn(40_000, dtype=torch.float64, generator=gen(22))
    log_w = -double_well(x) + 0.5 * (x / s) ** 2
    estimate = population(x >= 0, log_w, generator=gen(23))
    delta_method = reweighted_average((x >= 0).double(), log_w)
    assert estimate.value == pytest.approx(delta_method.mean.item(), rel=1e-12)
    assert estimate.error == pytest.approx(delta_method.error.item(), rel=0.15)
    assert estimate.value == pytest.approx(1 / (1 + math.exp(double_well_delta_f())), abs=4 * estimate.error)


def test_excluded_samples_get_weight_zero_and_are_counted():
    x = exact_draws(double_well, -4, 4, 5000, gen(4))
    log_w = 0.1 * x  # some non-trivial weights
    exclude = x > 1.2
    estimate = delta_f(x < 0, x >= 0, log_w, exclude=exclude, n_boot=50)
    kept = ~exclude
    by_hand = math.log(torch.exp(log_w)[kept & (x < 0)].sum()) - math.log(torch.exp(log_w)[kept & (x >= 0)].sum())
    assert estimate.value == pytest.approx(by_hand, rel=1e-12)
    assert (estimate.n, estimate.n_excluded) == (5000, int(exclude.sum()))


def test_empty_state_gives_infinite_delta_f_and_no_nan():
    x = torch.rand(100, dtype=torch.float64)
    estimate = delta_f(x < 0.5, x > 2.0, n_boot=20)
    assert estimate.value == math.inf and estimate.high == math.inf
    with pytest.raises(BoltzflowError, match="neither state"):
        delta_f(x > 3, x > 2, n_boot=20)


def test_pmf_of_exact_and_of_reweighted_samples_matches_quadrature():
    bins = 36
    truth = periodic_bin_free_energies(bins)
    exact = exact_draws(periodic_potential, -math.pi, math.pi, 50_000, gen(5))
    uniform = (torch.rand(60_000, dtype=torch.float64, generator=gen(6)) * 2 - 1) * math.pi
    for cv, log_w in ((exact, None), (uniform, -periodic_potential(uniform.numpy()))):
        profile = pmf(cv, log_w, bins=bins, n_boot=200, generator=gen(7))
        f, error = profile.free_energy.numpy(), profile.error.numpy()
        lowest = int(np.argmin(f))
        assert f[lowest] == 0 and error[lowest] == 0
        others = np.arange(bins) != lowest
        z = (f - (truth - truth[lowest]))[others] / error[others]
        assert np.all(np.abs(z) < 4), z
        assert np.all(profile.low.numpy() <= f) and np.all(f <= profile.high.numpy())
        assert np.allclose(np.degrees(profile.centers.numpy()), np.arange(-175, 180, 10))


def test_ramachandran_surface_of_independent_angles_is_the_sum_of_their_pmfs():
    n, bins = 400_000, 64
    phi = exact_draws(periodic_potential, -math.pi, math.pi, n, gen(8))
    psi = exact_draws(lambda t: periodic_potential(t + 1.0), -math.pi, math.pi, n, gen(9))
    surface = ramachandran(phi, psi, bins=bins)
    truth = periodic_bin_free_energies(bins)[:, None] + np.array([
        -log_integral(lambda t: periodic_potential(t + 1.0), a, b)
        for a, b in zip(np.linspace(-math.pi, math.pi, bins + 1)[:-1], np.linspace(-math.pi, math.pi, bins + 1)[1:])])
    counts, _, _ = np.histogram2d(phi.numpy(), psi.numpy(), bins=bins, range=[[-math.pi, math.pi]] * 2)
    f = surface.free_energy.numpy()
    assert f.min() == 0 and surface.free_energy.shape == (bins, bins)
    well = counts >= 100
    difference = (f - truth)[well]
    offset = np.average(difference, weights=counts[well])  # the zero of F, fixed by 400k samples
    z = (difference - offset) * np.sqrt(counts[well])  # the noise of log(count) is ≈ 1/√count
    assert np.abs(z).max() < 5, np.abs(z).max()  # ~1300 bins: P(any |z| > 5) ≈ 1e-3
    assert np.all(np.isinf(f[counts == 0]))


def test_reweighted_average_and_its_standard_error_are_calibrated():
    s, n, reps = 1.5, 2000, 200
    x = s * torch.randn(reps, n, dtype=torch.float64, generator=gen(10))
    log_w = -0.5 * x**2 + 0.5 * (x / s) ** 2
    results = [reweighted_average(torch.stack([x[r], x[r] ** 2], 1), log_w[r]) for r in range(reps)]
    means = torch.stack([r.mean for r in results])
    errors = torch.stack([r.error for r in results])
    # E_p[x] = 0, E_p[x²] = 1; the reported errors match the spread of the estimates
    assert means.mean(0).tolist() == pytest.approx([0.0, 1.0], abs=4 * float(means.std(0).max()) / math.sqrt(reps))
    ratio = errors.mean(0) / means.std(0)
    assert ratio.tolist() == pytest.approx([1.0, 1.0], abs=0.15)


def test_state_delta_f_uses_the_systems_states():
    system = load_system("alanine-dipeptide-vacuum")
    phi = (torch.rand(4000, dtype=torch.float64, generator=gen(11)) * 2 - 1) * math.pi
    cvs = {"phi": phi, "psi": torch.zeros_like(phi)}
    estimate = state_delta_f(system, cvs, "phi_negative", "phi_positive", n_boot=50)
    assert estimate.value == pytest.approx(math.log(int((phi < 0).sum())) - math.log(int((phi >= 0).sum())))
    with pytest.raises(BoltzflowError, match="unknown state 'nope'.*phi_negative"):
        state_delta_f(system, cvs, "nope", "phi_positive")


def test_estimates_agree_across_devices_and_dtypes(device, dtype):
    x = exact_draws(periodic_potential, -math.pi, math.pi, 5000, gen(12))
    log_w = 0.3 * torch.sin(x)
    reference = pmf(x, log_w, bins=24, n_boot=10).free_energy
    result = pmf(x.to(device, dtype), log_w.to(device, dtype), bins=24, n_boot=10)
    assert result.free_energy.device.type == device.type
    assert torch.allclose(result.free_energy.cpu(), reference, atol=1e-4)
    a = delta_f((x < 0).to(device), (x >= 0).to(device), log_w.to(device, dtype), n_boot=10).value
    assert a == pytest.approx(delta_f(x < 0, x >= 0, log_w, n_boot=10).value, abs=1e-4)


def test_bad_inputs_raise_errors_that_name_the_shape():
    with pytest.raises(ValueError, match=r"log_w must have shape \[3\]"):
        pmf(torch.zeros(3), log_w=torch.zeros(4))
    with pytest.raises(ValueError, match="bool mask"):
        delta_f(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool), exclude=torch.zeros(3))
    with pytest.raises(BoltzflowError, match="no sample"):
        pmf(torch.zeros(3), log_w=torch.full((3,), -math.inf))


def test_a_rare_basin_is_flagged_where_its_bootstrap_interval_misses_the_truth():
    """p = 0.9 N(−2, 0.5²) + 0.1 N(2, 0.5²): the basin x > 0 holds 0.1 (exactly, by erf); the
    proposal puts 1% of its draws there, about 10 of 1,000. Over 40 such draws the 95% bootstrap
    interval of the rare basin's population misses the truth in a third of those where the basin
    rests on fewer than MIN_STATE_ESS effective samples (flagged), and about as often as a 95%
    interval should where it does not; the main basin is never flagged."""
    def log_normal(x, mean, sd):
        return -0.5 * ((x - mean) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))

    tail = 0.5 * math.erfc(2 / (0.5 * math.sqrt(2)))  # mass of each component beyond 0
    truth = 0.1 * (1 - tail) + 0.9 * tail
    rare = 0.01
    missed = {True: 0, False: 0}  # by flag
    cases = {True: 0, False: 0}
    for seed in range(40):
        g = gen(seed)
        x = torch.where(torch.rand(1000, generator=g) < rare, 2.0, -2.0) + 0.5 * torch.randn(1000, generator=g)
        x = x.double()
        log_p = torch.logaddexp(math.log(0.9) + log_normal(x, -2, 0.5), math.log(0.1) + log_normal(x, 2, 0.5))
        log_q = torch.logaddexp(math.log(1 - rare) + log_normal(x, -2, 0.5), math.log(rare) + log_normal(x, 2, 0.5))
        estimate = population(x > 0, log_p - log_q, n_boot=200, generator=gen(100 + seed))
        basin = state_samples(x > 0, log_p - log_q)
        assert state_samples(x < 0, log_p - log_q).enough
        assert basin.n == int((x > 0).sum()) and basin.n_effective <= basin.n * (1 + 1e-12)
        assert basin.enough == (basin.n_effective >= MIN_STATE_ESS)
        flagged = not basin.enough
        cases[flagged] += 1
        missed[flagged] += not estimate.low <= truth <= estimate.high
    assert cases[True] >= 10 and cases[False] >= 10
    assert missed[True] / cases[True] > 0.3 and missed[False] / cases[False] < 0.1
