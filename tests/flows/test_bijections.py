"""Every bijection: exact round trip, log-det against autograd, finite at domain edges."""

import math

import pytest
import torch

from boltzflow.flows import (
    ActNorm, AffineAutoregressive, AffineCoupling, Circle, CircularShift, Interval, LULinear,
    Permutation, Planar, Radial, Real, SplineAutoregressive, SplineCoupling, alternating_mask,
    random_mask,
)

from .checks import check_log_det, check_round_trip, points_in, randomize

MIXED = [Circle(), Interval(0.1, 0.3), Real(), Circle(), Interval(-1.0, 2.0), Real()]
REAL = [Real()] * 4
H = (16, 16)

FACTORIES = {
    "spline_coupling": lambda: SplineCoupling(MIXED, alternating_mask(6), bins=5, hidden=H),
    "spline_coupling_random_residual": lambda: SplineCoupling(
        MIXED, random_mask(6, torch.Generator().manual_seed(3)), bins=4, hidden=H, residual=True),
    "spline_coupling_no_rotation": lambda: SplineCoupling(MIXED, alternating_mask(6, 1),
                                                          hidden=H, rotation=False),
    "spline_coupling_context": lambda: SplineCoupling(MIXED, alternating_mask(6), hidden=H,
                                                      context_dim=3),
    "spline_iaf": lambda: SplineAutoregressive(MIXED, bins=6, hidden=H),
    "spline_maf": lambda: SplineAutoregressive(MIXED, hidden=H, inverse_autoregressive=False,
                                               order=[5, 2, 0, 1, 4, 3], residual=True),
    "spline_iaf_context": lambda: SplineAutoregressive(MIXED, hidden=H, context_dim=3),
    "affine_coupling": lambda: AffineCoupling(MIXED, alternating_mask(6), hidden=H),
    "affine_iaf": lambda: AffineAutoregressive(REAL, hidden=H),
    "affine_maf": lambda: AffineAutoregressive(REAL, hidden=H, inverse_autoregressive=False),
    "permutation": lambda: Permutation(MIXED, [3, 0, 5, 1, 4, 2]),
    "circular_shift": lambda: CircularShift(MIXED),
    "actnorm": lambda: ActNorm(MIXED),
    "lu_linear": lambda: LULinear(MIXED),
    "planar": lambda: Planar(REAL),
    "radial": lambda: Radial(REAL),
}


def make(name, dtype=torch.float64, device="cpu", scale=0.2):
    """A layer with random parameters; ``scale`` keeps its slopes well conditioned
    (round-trip error grows like rounding error / slope, whatever the algorithm)."""
    bij = randomize(FACTORIES[name](), scale).to(device=device, dtype=dtype)
    context = None
    if getattr(bij, "context_dim", 0):
        context = torch.randn(64, bij.context_dim, dtype=dtype, device=device)
    return bij, context


@pytest.mark.parametrize("name", FACTORIES)
def test_round_trip_float64(name, device):
    bij, context = make(name, torch.float64, device)
    x = points_in(bij.domains, 64, torch.float64, device)
    check_round_trip(bij, x, 1e-10, context)


@pytest.mark.parametrize("name", FACTORIES)
def test_log_det_matches_autograd(name):
    bij, context = make(name)
    x = points_in(bij.domains, 64)
    check_log_det(bij, x, 1e-8, context)


@pytest.mark.parametrize("name", FACTORIES)
def test_float32_round_trip_and_edges(name, device):
    bij, context = make(name, torch.float32, device, scale=0.1)
    x = points_in(bij.domains, 64, torch.float32, device)
    check_round_trip(bij, x, 1e-4, context)
    # domain edges: interval ends, both sides of the circle's cut, spline tail bounds
    edges = {"interval": lambda d: [d.low, d.high, d.low, d.high],
             "circle": lambda d: [-math.pi, math.nextafter(math.pi, 0), 0.0, -math.pi],
             "real": lambda d: [-5.0, 5.0, 0.0, 100.0]}
    cols = [torch.tensor(edges[d.kind](d), dtype=torch.float32) for d in bij.domains]
    xe = torch.stack(cols, -1).to(device).requires_grad_(True)
    ctx = None if context is None else context[:4]
    y, ld = bij(xe, ctx)
    xb, ld_inv = bij.inverse(y, ctx)
    assert torch.isfinite(y).all() and torch.isfinite(ld).all() and torch.isfinite(xb).all()
    (y.sum() + ld.sum() + ld_inv.sum()).backward()
    assert torch.isfinite(xe.grad).all()
    for p in bij.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", [n for n in FACTORIES if "spline" in n or "affine" in n])
def test_identity_at_initialisation(name, dtype):
    bij = FACTORIES[name]().to(dtype)
    x = points_in(bij.domains, 32, dtype)
    context = torch.randn(32, 3, dtype=dtype) if getattr(bij, "context_dim", 0) else None
    y, ld = bij(x, context)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(y, x, atol=tol * 10) and ld.abs().max() < tol * 10


def test_samples_of_layers_stay_in_domains():
    for name in FACTORIES:
        bij, context = make(name)
        x = points_in(bij.domains, 64)
        y, _ = bij(x, context)
        for i, d in enumerate(bij.out_domains):
            if d.kind == "interval":
                assert ((y[:, i] >= d.low) & (y[:, i] <= d.high)).all(), name
            if d.kind == "circle":
                assert ((y[:, i] >= -math.pi) & (y[:, i] < math.pi)).all(), name


def test_actnorm_initialises_from_data():
    layer = ActNorm(REAL)
    y = 3.0 + 2.0 * torch.randn(4096, 4)
    x, _ = layer.inverse(y)
    assert x.mean(0).abs().max() < 1e-5 and (x.std(0) - 1).abs().max() < 1e-5
    layer.inverse(5 * y)  # later calls keep the parameters
    assert (layer.shift - y.mean(0)).abs().max() < 1e-5


def test_coupling_rejects_bad_masks():
    with pytest.raises(ValueError, match=r"shape \[6\]"):
        SplineCoupling(MIXED, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="some dimensions"):
        SplineCoupling(MIXED, torch.ones(6, dtype=torch.bool))


def test_context_is_required_when_declared():
    bij = SplineCoupling(MIXED, alternating_mask(6), hidden=H, context_dim=3)
    with pytest.raises(ValueError, match=r"context of shape \[batch, 3\]"):
        bij(points_in(MIXED, 4, torch.float32))


def test_real_only_layers_reject_domains_without_reals():
    with pytest.raises(ValueError, match="Real"):
        Planar([Circle(), Interval(0, 1)])
    with pytest.raises(ValueError, match="Circle"):
        CircularShift(REAL)
