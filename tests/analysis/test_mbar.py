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
