"""Targets with answers known by quadrature, sampled exactly by inverse CDF on a fine grid."""

import math

import numpy as np
import torch

GRID = 400_001


def double_well(x):
    """Reduced energy (kT) of an asymmetric 1-D double well; minima near x = ±1."""
    return 3.0 * (x**2 - 1) ** 2 + 0.8 * x


def periodic_potential(theta):
    """Reduced energy (kT) on the circle, two unequal basins."""
    return 2.0 * np.cos(theta) + 1.0 * np.cos(2 * theta) + 0.5 * np.sin(theta)


def exact_draws(u, low, high, n, generator, extra=None):
    """n exact draws ∝ exp(−u(x) − extra(x)) on [low, high] (inverse CDF on a fine grid)."""
    x = np.linspace(low, high, GRID)
    log_p = -u(x) - (extra(x) if extra is not None else 0.0)
    p = np.exp(log_p - log_p.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(x))])
    uniform = torch.rand(n, dtype=torch.float64, generator=generator).numpy()
    return torch.from_numpy(np.interp(uniform * cdf[-1], cdf, x))


def log_integral(u, low, high):
    """log ∫ exp(−u) over [low, high] by the trapezoidal rule."""
    x = np.linspace(low, high, GRID)
    v = -u(x)
    top = v.max()
    y = np.exp(v - top)
    return top + math.log(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def double_well_delta_f():
    """F(x ≥ 0) − F(x < 0) in kT."""
    return log_integral(double_well, -4, 0) - log_integral(double_well, 0, 4)


def periodic_bin_free_energies(bins):
    """−log of the probability of each of ``bins`` equal bins of [-π, π) (unshifted)."""
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    return np.array([-log_integral(periodic_potential, a, b) for a, b in zip(edges[:-1], edges[1:])])
