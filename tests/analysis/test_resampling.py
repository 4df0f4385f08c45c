"""Systematic resampling: unbiased counts, each count ⌊Kw⌋ or ⌈Kw⌉, weight-0 samples never drawn."""

import math

import numpy as np
import pytest
import torch

from boltzflow.analysis.resampling import systematic_resample
from boltzflow.errors import BoltzflowError

K, REPEATS = 37, 4000


def weights_with_zeros(device, dtype):
    w = torch.distributions.Dirichlet(torch.full((15,), 0.7, dtype=torch.float64)).sample()
    w[[3, 11]] = 0.0
    return torch.log(w / w.sum()).to(device, dtype) + 5.0  # unnormalised log-weights; -inf where w = 0


def counts(log_w, k, generator, repeats):
    return torch.stack([torch.bincount(systematic_resample(log_w, k, generator=generator), minlength=len(log_w))
                        for _ in range(repeats)]).double()


def test_counts_are_unbiased_and_floor_or_ceil_of_k_w(device):
    log_w = weights_with_zeros(device, torch.float64)
    expected = K * torch.softmax(log_w, 0)
    generator = torch.Generator(device=device).manual_seed(0)
    drawn = counts(log_w, K, generator, REPEATS)
    assert torch.all(drawn.sum(1) == K)
    # low variance: every count is ⌊Kw⌋ or ⌈Kw⌉ (slack for K·w within round-off of an integer)
    assert torch.all((drawn >= torch.floor(expected - 1e-9)) & (drawn <= torch.ceil(expected + 1e-9)))
    # unbiased: a count is ⌈Kw⌉ with probability f = Kw − ⌊Kw⌋, so its variance is f(1 − f);
    # the mean of REPEATS independent draws is within 5 standard errors of Kw
    fraction = expected - torch.floor(expected)
    bound = 5 * torch.sqrt(fraction * (1 - fraction) / REPEATS) + 1e-12
    assert torch.all((drawn.mean(0) - expected).abs() <= bound)
    assert torch.all(drawn[:, [3, 11]] == 0)


def test_indices_are_sorted_long_on_the_input_device(device, dtype):
    log_w = weights_with_zeros(device, dtype)
    generator = torch.Generator(device=device).manual_seed(1)
    indices = systematic_resample(log_w, 1000, generator=generator)
    assert indices.shape == (1000,) and indices.dtype == torch.long and indices.device == log_w.device
    assert torch.all(indices[1:] >= indices[:-1]) and indices.min() >= 0 and indices.max() < len(log_w)


def test_equal_weights_draw_every_sample_once():
    assert torch.equal(systematic_resample(torch.zeros(64), 64), torch.arange(64))
    assert torch.equal(systematic_resample(np.zeros(8), 16), torch.arange(8).repeat_interleave(2))


def test_excluded_and_non_finite_samples_are_never_drawn():
    log_w = torch.tensor([0.0, math.nan, math.inf, 0.0, -math.inf, 0.0])
    exclude = torch.tensor([False, False, False, True, False, False])
    generator = torch.Generator().manual_seed(2)
    drawn = torch.cat([systematic_resample(log_w, 5, exclude, generator) for _ in range(200)])
    assert set(drawn.tolist()) == {0, 5}


def test_an_offset_rounded_up_to_one_stays_on_weighted_samples(monkeypatch):
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor(1 - 1e-17, dtype=torch.float64))
    assert systematic_resample(torch.tensor([0.0, 0.0, -math.inf]), 3).tolist() == [0, 1, 1]


def test_bad_inputs():
    with pytest.raises(BoltzflowError, match="no sample has non-zero weight"):
        systematic_resample(torch.full((4,), -math.inf), 2)
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        systematic_resample(torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        systematic_resample(torch.zeros(3), 0)
