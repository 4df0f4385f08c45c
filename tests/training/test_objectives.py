"""Objectives on toy targets: each lowers its loss; SNF and FAB recover the mode weights of a
double well that reverse KL collapses on; FAB covers every mode of a Gaussian mixture;
temperature annealing recovers the weights from the energy alone."""

import json

import numpy as np
import pytest
import torch

from boltzflow.analysis import normalized_log_weights
from boltzflow.energy.toys import DoubleWell, GaussianMixture2D
from boltzflow.flows import Real, spline_flow
from boltzflow.sampling import AIS, HMC, Metropolis
from boltzflow.training import (FAB, DataAndReverseKL, Schedule, StochasticFlow, TemperatureAnnealing, Trainer, forward_kl,
                                reverse_kl, snf_forward_kl, snf_reverse_kl, temperature_ladder)

SEPARATION = 3.0  # wells at x₁ ≈ ±5: far outside the flow's initial N(0, 1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def right_well_weight_by_quadrature() -> float:
    """Mass of x₁ > 0 under exp(−u): the x₂ factor cancels; a fine grid on x₁."""
    a = np.linspace(-30, 30, 600_001)
    u = (a / SEPARATION) ** 4 - 6 * (a / SEPARATION) ** 2 - 0.5 * a / SEPARATION
    p = np.exp(-(u - u.min()))
    return float(p[a > 0].sum() / p.sum())


def toy_flow(target, seed=1):
    torch.manual_seed(seed)
    return spline_flow(target.domains, layers=4, bins=8, hidden=(32, 32), tail_bound=10.0)


def train(flow, loss_fn, tmp_path, steps=300):
    trainer = Trainer(flow, loss_fn, Schedule(steps=steps, lr=3e-3, log_every=10, checkpoint_every=10**6), tmp_path)
    trainer.run()
    return [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def right_weight(x, log_w) -> float:
    w = normalized_log_weights(log_w).exp()
    return float(w[x[:, 0] > 0].sum())


def flow_estimate(flow, log_p, n=20_000):
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(n)
        return x, log_p(x) - log_q


def test_reverse_kl_collapses_on_the_separated_double_well(tmp_path):
    target = DoubleWell(SEPARATION)
    log_p = lambda x: -target(x)
    flow = toy_flow(target)
    losses = train(flow, lambda step: reverse_kl(flow, log_p, 256), tmp_path)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    x, log_w = flow_estimate(flow, log_p)
    assert (x[:, 0] < 0).float().mean() < 0.01          # the left well is (almost) empty
    assert abs(right_weight(x, log_w) - right_well_weight_by_quadrature()) > 0.05


def test_snf_recovers_the_mode_weights(tmp_path):
    """Metropolis layers whose x₁ step reaches across the barrier mix the wells (Wu et al. 2020)."""
    target = DoubleWell(SEPARATION)
    log_p = lambda x: -target(x)
    snf = StochasticFlow(toy_flow(target), Metropolis([6.0, 0.5], target.domains, adapt=False),
                         n_mcmc=1, steps_per_layer=60)
    losses = train(snf.flow, lambda step: snf_reverse_kl(snf, log_p, 256), tmp_path)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    with torch.no_grad():
        x, log_w, _ = snf.sample_with_log_weights(20_000, log_p, differentiable=False)
    assert abs(right_weight(x, log_w) - right_well_weight_by_quadrature()) < 0.05


def test_fab_recovers_the_mode_weights_from_the_energy_alone(tmp_path):
    target = DoubleWell(SEPARATION)
    log_p = lambda x: -target(x)
    flow = toy_flow(target)
    ais = AIS(HMC(0.3, n_leapfrog=4, domains=target.domains), n_intermediate=4)
    losses = train(flow, FAB(flow, log_p, ais, 256, buffer_capacity=256 * 16), tmp_path)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    x, log_w = flow_estimate(flow, log_p)
    assert 0.05 < (x[:, 0] < 0).float().mean() < 0.3     # both wells hold flow samples
    assert abs(right_weight(x, log_w) - right_well_weight_by_quadrature()) < 0.05


def test_fab_without_buffer_lowers_its_loss(tmp_path):
    target = DoubleWell()
    log_p = lambda x: -target(x)
    flow = toy_flow(target)
    ais = AIS(HMC(0.3, n_leapfrog=2, domains=target.domains), n_intermediate=2)
    losses = train(flow, FAB(flow, log_p, ais, 128), tmp_path, steps=60)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_fab_covers_every_mode_of_a_gaussian_mixture(tmp_path):
    target = GaussianMixture2D(modes=8, radius=4.0, scale=0.5)
    log_p = lambda x: -target(x)
    flow = toy_flow(target)
    ais = AIS(HMC(0.3, n_leapfrog=4, domains=target.domains), n_intermediate=4)
    train(flow, FAB(flow, log_p, ais, 256, buffer_capacity=256 * 16), tmp_path, steps=400)
    x, log_w = flow_estimate(flow, log_p)
    nearest = torch.cdist(x.double(), target.means).argmin(-1)
    raw = torch.bincount(nearest, minlength=8).double() / len(x)
    w = normalized_log_weights(log_w).exp().double()
    weighted = torch.zeros(8, dtype=torch.float64).index_add_(0, nearest, w)
    assert raw.min() > 0.125 / 3, raw                     # every mode holds flow samples
    assert (weighted - 0.125).abs().max() < 0.05, weighted


@pytest.mark.parametrize("refit", ["ml", "objective"])
def test_temperature_annealing_recovers_the_mode_weights(tmp_path, refit):
    """Reverse KL at 6x the temperature (barrier 1.5 kT) keeps both wells; stepping down
    (reweighting and maximum likelihood, or reverse KL at each temperature) carries them to
    the target temperature."""
    target = DoubleWell(SEPARATION)
    temperature = {"T": 1.0}
    log_p = lambda x: -target(x) / temperature["T"]
    flow = toy_flow(target)
    steps = 400
    annealing = TemperatureAnnealing(lambda step: reverse_kl(flow, log_p, 256), flow, log_p,
                                     lambda t: temperature.__setitem__("T", t), temperature_ladder(6.0, 1.0, 4),
                                     steps=steps, batch_size=256, samples=8192, refit=refit)
    seen = []
    train(flow, lambda step: seen.append(temperature["T"]) or annealing(step), tmp_path, steps=steps)
    assert sorted(set(seen), reverse=True) == pytest.approx(temperature_ladder(6.0, 1.0, 4))
    assert temperature["T"] == pytest.approx(1.0)
    x, log_w = flow_estimate(flow, log_p)
    assert abs(right_weight(x, log_w) - right_well_weight_by_quadrature()) < 0.05


def test_temperature_ladder_is_geometric():
    ladder = temperature_ladder(1200.0, 300.0, 3)
    assert ladder == pytest.approx((1200.0, 600.0, 300.0))
    with pytest.raises(ValueError):
        temperature_ladder(300.0, 1200.0, 3)


def double_well_samples(n):
    """Exact samples of DoubleWell() by inverse CDF on a grid in x₁ (x₂ is standard normal)."""
    a = torch.linspace(-4, 4, 20_001, dtype=torch.float64)
    density = torch.exp(-(a**4 - 6 * a**2 - 0.5 * a)).cumsum(0)
    x1 = a[torch.searchsorted(density / density[-1], torch.rand(n, dtype=torch.float64))]
    return torch.stack([x1, torch.randn(n, dtype=torch.float64)], -1).float()


def test_maximum_likelihood_learns_the_double_well(tmp_path):
    target = DoubleWell()
    torch.manual_seed(0)
    data = double_well_samples(4096)
    flow = toy_flow(target)
    losses = train(flow, lambda step: forward_kl(flow, data[torch.randint(len(data), (256,))]), tmp_path)
    a, da = np.linspace(-6, 6, 600_001, retstep=True)   # the loss is H(p, q) = H(p) + KL(p ‖ q)
    minus_u = -(a**4 - 6 * a**2 - 0.5 * a)
    log_p = minus_u - (np.log(np.exp(minus_u - minus_u.max()).sum() * da) + minus_u.max())
    entropy = -(np.exp(log_p) * log_p).sum() * da + 0.5 * np.log(2 * np.pi * np.e)   # x₂: standard normal
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert np.mean(losses[-5:]) - entropy < 0.2    # KL(p ‖ q) below 0.2 nats
    x, log_w = flow_estimate(flow, lambda x: -target(x))
    assert abs(right_weight(x, log_w) - right_well_weight_by_quadrature()) < 0.05


def test_data_keeps_the_well_that_reverse_kl_alone_drops(tmp_path):
    """Reverse KL with maximum likelihood on exact samples of both wells (first a third of the
    steps on the data alone, which evaluate no target) keeps both wells, and the reweighted
    right-well mass matches quadrature, where reverse KL alone collapses (the test above)."""
    target = DoubleWell(SEPARATION)
    calls = []
    log_p = lambda x: calls.append(len(x)) or -target(x)
    data = SEPARATION * double_well_samples(4096) * torch.tensor([1.0, 1.0 / SEPARATION])
    flow = toy_flow(target)
    loss = DataAndReverseKL(lambda step: reverse_kl(flow, log_p, 256), flow, data, 256, weight=1.0, first_steps=100)
    for step in range(100):
        loss(step)
    assert calls == []
    data_first_only = DataAndReverseKL(lambda step: reverse_kl(flow, log_p, 8), flow, data, 8, weight=0.0, first_steps=1)
    assert "nll" in data_first_only(0)[1] and "nll" not in data_first_only(1)[1]   # weight 0: no data after step 0
    calls.clear()
    train(flow, loss, tmp_path)
    x, log_w = flow_estimate(flow, log_p)
    assert (x[:, 0] < 0).float().mean() > 0.05
    assert abs(right_weight(x, log_w) - right_well_weight_by_quadrature()) < 0.05


def test_snf_maximum_likelihood_lowers_its_loss(tmp_path):
    target = DoubleWell()
    log_p = lambda x: -target(x)
    torch.manual_seed(0)
    data = double_well_samples(4096)
    snf = StochasticFlow(toy_flow(target), Metropolis(0.3, target.domains), n_mcmc=2)
    batches = lambda: data[torch.randint(len(data), (256,))]
    losses = train(snf.flow, lambda step: snf_forward_kl(snf, log_p, batches()), tmp_path, steps=150)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_mode_covering_term_estimates_the_forward_kl_gradient():
    """reverse_kl's forward_weight term, averaged over batches, is the gradient of KL(p ‖ q)
    computed by maximum likelihood on exact samples of p (a Gaussian): the self-normalised,
    resampled estimator is right up to its Monte-Carlo error (and an O(1/batch) bias)."""
    torch.manual_seed(0)
    flow = spline_flow([Real(), Real()], layers=2, bins=4, hidden=(8,), tail_bound=5.0).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mu, sd = torch.tensor([0.3, -0.2], dtype=torch.float64), 0.8
    log_p = lambda x: (-0.5 * ((x - mu) / sd) ** 2).sum(-1)
    params = list(flow.parameters())

    def gradient(loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    exact = gradient(forward_kl(flow, mu + sd * torch.randn(400_000, 2, dtype=torch.float64))[0])
    estimates = []
    for k in range(200):
        torch.manual_seed(100 + k)
        with_term, _ = reverse_kl(flow, log_p, 256, forward_weight=1.0, forward_samples=32)
        torch.manual_seed(100 + k)  # the same samples without the term: the difference is the term
        without, _ = reverse_kl(flow, log_p, 256)
        estimates.append(gradient(with_term - without))
    estimates = torch.stack(estimates)
    mean, standard_error = estimates.mean(0), estimates.std(0) / len(estimates) ** 0.5
    assert (mean - exact).norm() < 3 * standard_error.norm()
    assert standard_error.norm() < 0.1 * exact.norm()  # the check above has teeth
