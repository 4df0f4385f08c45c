"""MBAR on synthetic umbrella windows drawn exactly from a known periodic potential plus the
restraint (inverse CDF on a fine grid), against the PMF and ΔF by quadrature."""

import math
import sys

import numpy as np
import pytest
import torch

from boltzflow.analysis.mbar import in_range, mbar_free_energies, periodic_difference, umbrella_bias
from boltzflow.errors import BoltzflowError

from .cases import exact_draws, log_integral, periodic_bin_free_energies, periodic_potential

KT = 2.5  # kJ/mol


def synthetic_windows(windows, per_window, kappa, seed):
    centres = -math.pi + 2 * math.pi * np.arange(windows) / windows
    generator = torch.Generator().manual_seed(seed)
    samples = [exact_draws(periodic_potential, -math.pi, math.pi, per_window, generator,
                           extra=lambda t, c=c: umbrella_bias(t, np.array([c]), np.array([kappa]))[0] / KT)
               for c in centres]
    return samples, centres


def test_periodic_restraint_is_the_shortest_angle():
    assert periodic_difference(math.pi - 0.1, -math.pi + 0.1) == pytest.approx(-0.2)
    bias = umbrella_bias(np.array([math.pi - 0.1, 0.0]), np.array([-math.pi + 0.1]), np.array([100.0]))
    assert bias[0].tolist() == pytest.approx([0.5 * 100 * 0.2**2, 0.5 * 100 * (math.pi - 0.1) ** 2])
    assert in_range(np.array([3.0, -3.0, 0.0]), (2.0, -2.0)).tolist() == [True, True, False]  # wraps through ±π


def test_mbar_recovers_the_pmf_and_delta_f_of_a_known_potential():
    windows, bins = 24, 36
    kappa = 4 * KT / (2 * math.pi / windows) ** 2
    samples, centres = synthetic_windows(windows, 1000, kappa, seed=0)
    regions = {"negative": (-math.pi, 0.0), "positive": (0.0, math.pi), "wrapped": (2.0, -2.0)}
    result = mbar_free_energies(samples, centres, kappa, KT, bins=bins, regions=regions, decorrelate=False)

    profile = result.profile
    truth = periodic_bin_free_energies(bins)
    f, error = profile.free_energy.numpy(), profile.error.numpy()
    lowest = int(np.argmin(f))
    others = np.arange(bins) != lowest
    assert f[lowest] == 0 and error[lowest] == 0
    z = (f - (truth - truth[lowest]))[others] / error[others]
    assert np.abs(z).max() < 4, z  # 35 correlated differences, each within 4 standard errors
    assert error.max() < 0.2  # and the errors are small enough for this to mean something
    assert np.allclose(profile.high.numpy() - f, 1.96 * error, rtol=1e-3)

    def region_f(low, high):
        return -log_integral(periodic_potential, low, high)

    for a, b, true in (("negative", "positive", region_f(0, math.pi) - region_f(-math.pi, 0)),
                       ("negative", "wrapped", -np.logaddexp(-region_f(2, math.pi), -region_f(-math.pi, -2))
                        - region_f(-math.pi, 0))):
        estimate = result.delta_f(a, b)
        assert estimate.value == pytest.approx(true, abs=4 * estimate.error), (a, b)
        assert 0 < estimate.error < 0.15 and estimate.method == "MBAR"
    assert result.delta_f("positive", "negative").value == pytest.approx(-result.delta_f("negative", "positive").value)
    assert result.samples_per_window.tolist() == [1000] * windows


def test_decorrelation_thins_a_correlated_series():
    samples, centres = synthetic_windows(8, 400, 30.0, seed=1)
    correlated = [np.repeat(s.numpy(), 5) for s in samples]  # each sample five times in a row
    result = mbar_free_energies(correlated, centres, 30.0, KT, bins=12)
    assert np.all(result.samples_per_window < 2000 / 3)  # 2000 each; statistical inefficiency ≈ 5


def test_unknown_region_and_missing_pymbar_are_user_errors(monkeypatch):
    samples, centres = synthetic_windows(4, 50, 10.0, seed=2)
    result = mbar_free_energies(samples, centres, 10.0, KT, bins=12, regions={"a": (-1.0, 1.0)})
    with pytest.raises(BoltzflowError, match="unknown region 'b'"):
        result.delta_f("a", "b")
    monkeypatch.setitem(sys.modules, "pymbar", None)  # import pymbar now raises ImportError
    with pytest.raises(BoltzflowError, match=r"pip install 'boltzflow\[free-energy\]'"):
        mbar_free_energies(samples, centres, 10.0, KT)


def plane_potential(phi, psi):
    """Reduced energy (kT) on the torus: coupled basins of unequal depth."""
    return -1.2 * np.cos(phi - 1.0) - 0.8 * np.cos(psi + 0.5) - 0.7 * np.cos(phi + psi) + 0.5 * np.sin(2 * phi)


def plane_windows(windows, per_window, kappa, seed):
    """Exact draws ∝ exp(−u − b_k) for each window of a 2-D grid: wrapped displacements from the
    truncated Gaussian exp(−b_k) (κ/kT on each angle), accepted with probability exp(−(u − min u))."""
    rng = np.random.default_rng(seed)
    axis = -math.pi + 2 * math.pi * np.arange(windows) / windows
    centres = np.array([(a, b) for a in axis for b in axis])
    sigma, u_min = math.sqrt(KT / kappa), -3.5  # below the potential's minimum
    samples = []
    for centre in centres:
        kept = np.empty((0, 2))
        while len(kept) < per_window:
            d = sigma * rng.standard_normal((20_000, 2))
            d = d[(np.abs(d) < math.pi).all(1)]
            x = periodic_difference(centre + d, 0.0)
            accept = rng.random(len(x)) < np.exp(-(plane_potential(x[:, 0], x[:, 1]) - u_min))
            kept = np.concatenate([kept, x[accept]])
        samples.append(kept[:per_window])
    return samples, centres


def plane_truth(bins, grid=720):
    """Bin probabilities [bins, bins] of exp(−u) on the torus and F(φ ≥ 0) − F(φ < 0), by the
    midpoint rule on a fine grid (a multiple of ``bins``)."""
    x = -math.pi + (np.arange(grid) + 0.5) * 2 * math.pi / grid
    p = np.exp(-plane_potential(x[:, None], x[None, :]))
    p /= p.sum()
    per_bin = p.reshape(bins, grid // bins, bins, grid // bins).sum((1, 3))
    positive = p[x >= 0].sum()
    return per_bin, math.log((1 - positive) / positive)


def test_mbar_on_a_2d_grid_recovers_delta_f_and_the_histogram_of_a_known_surface():
    from boltzflow.analysis.compare import total_variation, total_variation_noise_floor
    from boltzflow.analysis.histograms import histogram, plane_bin_index

    windows, per_window, bins = 6, 300, 12
    kappa = 4 * KT / (2 * math.pi / windows) ** 2  # width half the spacing
    samples, centres = plane_windows(windows, per_window, kappa, seed=0)
    regions = {"negative": {0: (-math.pi, 0.0)}, "positive": {0: (0.0, math.pi)},
               "corner": {0: (0.0, math.pi), 1: (2.0, -2.0)}}
    result = mbar_free_energies(samples, centres, kappa, KT, bins=bins, regions=regions, decorrelate=False)
    truth, true_delta = plane_truth(bins)
    estimate = result.delta_f("negative", "positive")
    assert 0 < estimate.error < 0.1
    assert estimate.value == pytest.approx(true_delta, abs=4 * estimate.error)
    corner = result.delta_f("positive", "corner")  # a region on both CVs: wraps through ±π in ψ
    assert 0 < corner.value and corner.error < 0.2
    assert result.samples.shape == (windows**2 * per_window, 2)
    assert np.logaddexp.reduce(result.sample_log_weights) == pytest.approx(0.0, abs=1e-12)
    assert result.overlap.shape == (windows**2, windows**2)
    assert np.allclose(result.overlap.sum(1), 1.0)

    x = torch.from_numpy(result.samples)
    p = histogram(plane_bin_index(x[:, 0], x[:, 1], bins), torch.from_numpy(np.exp(result.sample_log_weights)),
                  bins * bins)
    tv = total_variation(p, torch.from_numpy(truth.reshape(-1))).item()
    # a perfect sampler of this size sits at the noise floor; reweighting costs some efficiency
    floor = total_variation_noise_floor(truth.reshape(1, -1), sample_sizes=(len(x),))["perfect_generator"]
    assert tv < 2.5 * floor[str(len(x))], (tv, floor)


def test_repeat_estimate_is_the_mean_with_a_t_interval():
    from scipy import stats

    from boltzflow.analysis.mbar import repeat_estimate

    values = [6.1, 6.4, 5.9, 6.2]
    estimate = repeat_estimate(values, 0.95)
    error = np.std(values, ddof=1) / 2
    half = stats.t.ppf(0.975, 3) * error
    assert (estimate.value, estimate.error) == pytest.approx((np.mean(values), error))
    assert (estimate.low, estimate.high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert estimate.n == 4 and "repeats" in estimate.method
    assert half / error > 3.1  # three degrees of freedom: wider than a normal interval
    single = repeat_estimate([6.0])
    assert single.value == 6.0 and single.error == math.inf


def test_two_cv_bias_is_the_sum_over_cvs():
    cv = np.array([[0.1, 3.0], [-3.0, 0.0]])
    centres = np.array([[0.0, -3.0], [1.0, 1.0]])
    bias = umbrella_bias(cv, centres, np.array([10.0, 20.0]))
    expected = [[0.5 * 10 * (0.1**2 + (2 * math.pi - 6.0) ** 2), 0.5 * 10 * (3.0**2 + 3.0**2)],  # ψ wraps
                [0.5 * 20 * (0.9**2 + 2.0**2), 0.5 * 20 * ((2 * math.pi - 4.0) ** 2 + 1.0)]]  # φ wraps
    np.testing.assert_allclose(bias, expected, rtol=1e-12)
