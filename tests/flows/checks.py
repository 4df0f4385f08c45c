"""Reusable checks for bijections: round trip, autograd Jacobian, domain edges."""

import math

import torch

from boltzflow.flows import wrap


def randomize(module: torch.nn.Module, scale: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its (often identity) initial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen).to(p))
    return module


def points_in(domains, n, dtype=torch.float64, device="cpu", real_scale=3.0):
    """Random points [n, dim] inside the domains (reals spread beyond typical tail bounds)."""
    cols = []
    for d in domains:
        u = torch.rand(n, dtype=dtype, device=device)
        if d.kind == "real":
            cols.append(real_scale * torch.randn(n, dtype=dtype, device=device))
        elif d.kind == "circle":
            cols.append(-math.pi + 2 * math.pi * u)
        else:
            cols.append(d.low + (d.high - d.low) * u)
    return torch.stack(cols, dim=-1)


def difference(a, b, domains):
    """Elementwise |a - b|, measured along the circle for circle dimensions."""
    circle = torch.tensor([d.kind == "circle" for d in domains], device=a.device)
    return torch.where(circle, wrap(a - b), a - b).abs()


def check_round_trip(bij, x, tol, context=None):
    y, ld = bij(x, context)
    x2, ld_inv = bij.inverse(y, context)
    assert y.shape == x.shape and ld.shape == x.shape[:-1]
    assert torch.isfinite(y).all() and torch.isfinite(ld).all()
    err = difference(x2, x, bij.domains).max().item()
    assert err < tol, f"round trip error {err:.3g} above {tol}"
    consistency = (ld + ld_inv).abs().max().item()
    assert consistency < tol * 10, f"forward and inverse log-dets differ by {consistency:.3g}"
    return y, ld


def check_log_det(bij, x, tol=1e-8, context=None, n=6):
    """log|det J| of forward and inverse against the autograd Jacobian (float64)."""
    y, ld = bij(x[:n], context if context is None else context[:n])
    _, ld_inv = bij.inverse(y, context if context is None else context[:n])
    for i in range(len(y)):
        c = None if context is None else context[i : i + 1]
        jf = torch.autograd.functional.jacobian(lambda v: bij(v[None], c)[0][0], x[i])
        ji = torch.autograd.functional.jacobian(lambda v: bij.inverse(v[None], c)[0][0], y[i])
        ref_f = torch.linalg.slogdet(jf)[1]
        ref_i = torch.linalg.slogdet(ji)[1]
        assert abs(ref_f - ld[i]) < tol, f"forward log-det {ld[i]:.12g} vs autograd {ref_f:.12g}"
        assert abs(ref_i - ld_inv[i]) < tol, f"inverse log-det {ld_inv[i]:.12g} vs autograd {ref_i:.12g}"


def in_domains(x, domains):
    for i, d in enumerate(domains):
        col = x[:, i]
        if d.kind == "circle":
            assert (col >= -math.pi).all() and (col < math.pi).all(), f"dim {i} leaves [-π, π)"
        elif d.kind == "interval":
            assert (col >= d.low).all() and (col <= d.high).all(), f"dim {i} leaves {d}"
        else:
            assert torch.isfinite(col).all()
