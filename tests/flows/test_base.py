"""Base distributions against torch.distributions and quadrature."""

import copy
import math

import pytest
import torch

from boltzflow.flows import Circle, GaussianMixture, Interval, ProductBase, Real

DOMAINS = [Real(), Interval(-1.0, 2.0), Circle(), Real(), Interval(0.5, 0.7)]
FAMILIES = [
    dict(),
    dict(real="diag_normal", interval="truncated_normal", circle="von_mises"),
    dict(interval="normal"),
]
IDS = ["default", "trainable", "normal"]


def perturb(base):
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return base


def reference_log_prob(base, x):
    """Independent evaluation through torch.distributions (and explicit truncation)."""
    lp = torch.zeros(len(x), dtype=x.dtype)
    real, interval, circle = (base.marginals[kind] for kind in ("real", "interval", "circle"))
    if base.families["real"] == "normal":
        lp += torch.distributions.Normal(0.0, 1.0).log_prob(x[:, real.index]).sum(-1)
    else:
        d = torch.distributions.Normal(real.loc, real.log_scale.exp())
        lp += d.log_prob(x[:, real.index]).sum(-1)
    low, high = interval.low, interval.high
    if base.families["interval"] == "uniform":
        lp += torch.distributions.Uniform(low, high).log_prob(x[:, interval.index]).sum(-1)
    else:
        d = (torch.distributions.Normal(0.0, 1.0) if base.families["interval"] == "normal"
             else torch.distributions.Normal(interval.loc, interval.log_scale.exp()))
        mass = d.cdf(high) - d.cdf(low)
        lp += (d.log_prob(x[:, interval.index]) - torch.log(mass)).sum(-1)
    if base.families["circle"] == "uniform":
        lp += -math.log(2 * math.pi) * len(circle.index)
    else:
        d = torch.distributions.VonMises(circle.loc, circle.log_concentration.exp())
        lp += d.log_prob(x[:, circle.index]).sum(-1)
    return lp


@pytest.mark.parametrize("families", FAMILIES, ids=IDS)
def test_log_prob_matches_torch_distributions(families):
    base = perturb(ProductBase(DOMAINS, **families)).double()
    x = base.sample(256)
    assert torch.allclose(base.log_prob(x), reference_log_prob(base, x), atol=1e-10)


@pytest.mark.parametrize("families", FAMILIES, ids=IDS)
def test_samples_follow_the_density(families, device, dtype):
    """Per dimension, sample means of x (cos x on circles) match quadrature of the density."""
    reference = perturb(ProductBase(DOMAINS, **families)).double()
    base = copy.deepcopy(reference).to(device, dtype)
    x = base.sample(40000)
    assert x.device.type == device.type and x.dtype == dtype
    assert torch.isfinite(base.log_prob(x)).all()
    anchor = torch.tensor([0.0, 0.6, 0.0, 0.0, 0.6], dtype=torch.float64)  # inside every domain
    for i, d in enumerate(DOMAINS):
        lo, hi = (-8.0, 8.0) if d.kind == "real" else (d.low, d.high)
        t = torch.linspace(lo, hi, 4001, dtype=torch.float64)
        pts = anchor.repeat(len(t), 1)
        pts[:, i] = t
        density = torch.exp(reference.log_prob(pts))  # marginal up to a constant factor
        stat = torch.cos if d.kind == "circle" else (lambda v: v)
        mean = torch.trapezoid(density * stat(t), t) / torch.trapezoid(density, t)
        assert abs(stat(x[:, i].double().cpu()).mean() - mean) < 0.03, (i, d)


def test_gaussian_mixture_normalised_and_sampled():
    gm = GaussianMixture(2, components=3).double()
    t = torch.linspace(-10, 10, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    total = torch.exp(gm.log_prob(grid)).sum() * (t[1] - t[0]) ** 2
    assert abs(total.item() - 1) < 1e-4
    x = gm.rsample(50000)
    assert x.requires_grad
    w = torch.softmax(gm.logits, -1)
    assert torch.allclose(x.mean(0), (w[:, None] * gm.loc).sum(0), atol=0.05)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        ProductBase(DOMAINS, circle="wrapped_cauchy")


def test_log_prob_outside_domains_is_minus_infinity():
    base = ProductBase(DOMAINS, interval="truncated_normal")
    x = base.sample(3)
    x[0, 1] = 2.5
    x[1, 0] = float("nan")
    lp = base.log_prob(x)
    assert torch.isneginf(lp[:2]).all() and torch.isfinite(lp[2])
