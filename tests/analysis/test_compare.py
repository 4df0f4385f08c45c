"""Divergences against a reference, on distributions whose divergences are known analytically."""

import math

import numpy as np
import pytest
import torch

from boltzflow.analysis import eubo, forward_kl, kl_divergence, marginal_kl, ramachandran_divergence, total_variation


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_histogram_kl_and_total_variation_by_hand():
    p, q = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0])  # normalised: [.5, .5] and [.25, .75]
    assert kl_divergence(p, q, pseudocount=0).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert total_variation(p, q).item() == pytest.approx(0.25)
    # bins empty in the reference contribute nothing; empty model bins are floored, not infinite
    assert kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])).item() == pytest.approx(math.log(2))
    missed = kl_divergence(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), pseudocount=1e-10).item()
    assert missed == pytest.approx(0.5 * math.log(0.5 / 1e-10) + 0.5 * math.log(0.5), rel=1e-6)


def test_marginal_kl_of_shifted_gaussians_is_half_the_squared_shift():
    n = 200_000
    reference = torch.randn(n, 2, dtype=torch.float64, generator=gen(0))
    model = torch.randn(n, 2, dtype=torch.float64, generator=gen(1)) + torch.tensor([0.0, 0.5])
    kl = marginal_kl(reference, model)  # 200 bins over the reference's range
    # histogram KL is biased up by about (bins − 1) / (2 n) per sample set
    assert kl.tolist() == pytest.approx([0.0, 0.125], abs=0.01)


def test_marginal_kl_reweights_and_counts_mass_outside_the_reference_range():
    n = 100_000
    reference = torch.randn(n, 1, dtype=torch.float64, generator=gen(2))
    s = 1.5
    model = s * torch.randn(n, 1, dtype=torch.float64, generator=gen(3))
    log_w = (-0.5 * model[:, 0] ** 2 + 0.5 * (model[:, 0] / s) ** 2)
    reweighted, raw = marginal_kl(reference, model, log_w).item(), marginal_kl(reference, model).item()
    # KL(N(0,1) ‖ N(0,s²)) = log s + 1/(2s²) − 1/2 = 0.127 for the raw samples
    assert raw == pytest.approx(math.log(s) + 0.5 / s**2 - 0.5, abs=0.02)
    assert reweighted < 0.01
    outside = marginal_kl(reference, model + 100.0).item()  # every model sample beyond the range
    counts, _ = np.histogram(reference.numpy(), bins=200, range=(reference.min().item(), reference.max().item()))
    p = counts[counts > 0] / n
    assert outside == pytest.approx(math.log(1 / 1e-10) + float(np.sum(p * np.log(p))), rel=1e-6)


def test_periodic_marginals_wrap_around():
    angles = (torch.rand(50_000, 1, dtype=torch.float64, generator=gen(4)) * 2 - 1) * math.pi
    shifted = torch.remainder(angles + 2 * math.pi / 200 * 3 + math.pi, 2 * math.pi) - math.pi  # rotate by 3 bins
    assert marginal_kl(angles, shifted, periodic=[True]).item() < 0.01  # uniform stays uniform on the circle


def test_ramachandran_total_variation_of_uniform_against_half_the_plane():
    n = 400_000
    phi = (torch.rand(n, dtype=torch.float64, generator=gen(5)) * 2 - 1) * math.pi
    psi = (torch.rand(n, dtype=torch.float64, generator=gen(6)) * 2 - 1) * math.pi
    same = ramachandran_divergence(phi, psi, phi, psi)
    assert same["total_variation"] == pytest.approx(0.0, abs=1e-12) and same["kl"] == pytest.approx(0.0, abs=1e-6)
    half = ramachandran_divergence(phi, psi, -phi.abs(), psi)  # model only on φ < 0, twice as dense
    assert half["total_variation"] == pytest.approx(0.5, abs=0.02)
    log_w = torch.where(phi < 0, 0.0, -math.inf)  # reweighting to zero on φ ≥ 0 has the same effect
    assert ramachandran_divergence(-phi.abs(), psi, phi, psi, log_w)["total_variation"] < 0.05


def test_eubo_and_forward_kl_of_gaussians():
    s, log_z, n = 1.5, 1.0, 50_000
    x = torch.randn(n, dtype=torch.float64, generator=gen(7))  # reference samples from p = N(0, 1)
    log_p_tilde = log_z - 0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    log_q = -0.5 * (x / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    kl = math.log(s) + 0.5 / s**2 - 0.5
    bound = eubo(log_p_tilde, log_q)
    assert bound.value == pytest.approx(log_z + kl, abs=4 * bound.error) and bound.low < bound.value < bound.high
    divergence = forward_kl(log_p_tilde, log_q, log_z)
    assert divergence.value == pytest.approx(kl, abs=4 * divergence.error)
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        eubo(log_p_tilde, log_q[:-1])


def test_total_variation_noise_floor_of_repeats_and_of_a_perfect_generator():
    from boltzflow.analysis.compare import total_variation_noise_floor

    uniform = np.full((3, 100), 0.01)
    floor = total_variation_noise_floor(uniform, sample_sizes=(10_000, 1_000_000), draws=50)
    assert floor["between_repeats"]["pairs"] == [0.0, 0.0, 0.0] and floor["reference_estimate"] == 0.0
    # E|count/N − p| ≈ sqrt(2 p (1 − p) / (π N)) per bin; TV is half the sum over 100 bins
    expected = 50 * math.sqrt(2 * 0.01 * 0.99 / (math.pi * 10_000))
    assert floor["perfect_generator"]["10000"] == pytest.approx(expected, rel=0.05)
    assert floor["perfect_generator"]["1000000"] == pytest.approx(expected / 10, rel=0.05)
    noisy = np.array([[0.5, 0.5], [0.6, 0.4]])
    assert total_variation_noise_floor(noisy)["between_repeats"]["mean"] == pytest.approx(0.1)
