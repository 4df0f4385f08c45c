"""Test targets with exact samplers and reference values, and statistical checks."""

import math

import torch

from boltzflow.energy.toys import DoubleWell
from boltzflow.flows import wrap

LOG_2PI = math.log(2 * math.pi)


class CorrelatedGaussian:
    """N(μ, Σ) in 2-D with μ = (1, −1), Σ = [[2, 1.2], [1.2, 1]]; log p unnormalised (Z = 2π√det Σ)."""

    def __init__(self, device="cpu", dtype=torch.float64):
        kw = dict(device=device, dtype=dtype)
        self.mean = torch.tensor([1.0, -1.0], **kw)
        self.cov = torch.tensor([[2.0, 1.2], [1.2, 1.0]], **kw)
        self.precision = torch.linalg.inv(self.cov)
        self.chol = torch.linalg.cholesky(self.cov)
        self.log_z = LOG_2PI + 0.5 * math.log(float(torch.linalg.det(self.cov)))

    def __call__(self, x):
        d = x - self.mean
        return -0.5 * ((d @ self.precision) * d).sum(-1)

    def sample(self, n):
        return self.mean + torch.randn(n, 2, device=self.mean.device, dtype=self.mean.dtype) @ self.chol.T


def standard_normal_log_prob(x):
    return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * LOG_2PI


def assert_mean_within(values, expected, sigmas=5.0, what="mean"):
    """The sample mean of ``values`` [n, k] is within ``sigmas`` standard errors of ``expected`` [k]."""
    values = values.double()
    mean, se = values.mean(0), values.std(0) / math.sqrt(len(values))
    expected = torch.as_tensor(expected, dtype=torch.float64, device=values.device)
    z = ((mean - expected) / se).abs()
    assert (z < sigmas).all(), f"{what}: {mean.tolist()} vs {expected.tolist()} ({z.tolist()} s.e.)"


def double_well_marginal(temperature=1.0, n=20001, lim=4.0):
    """Grid, normalised density and CDF of x₁ under exp(−DoubleWell/T) (x₂ integrates out)."""
    grid = torch.linspace(-lim, lim, n, dtype=torch.float64)
    u = DoubleWell()(torch.stack([grid, torch.zeros_like(grid)], -1)) / temperature
    density = torch.exp(-(u - u.min()))
    h = grid[1] - grid[0]
    cdf = torch.cat([grid.new_zeros(1), torch.cumsum(0.5 * (density[1:] + density[:-1]) * h, 0)])
    total = cdf[-1]
    return grid, density / total, cdf / total


def double_well_log_z(temperature=1.0):
    """log ∫∫ exp(−DoubleWell(x)/T) dx by quadrature in x₁ (x₂ Gaussian, variance T)."""
    grid = torch.linspace(-6.0, 6.0, 120001, dtype=torch.float64)
    u = DoubleWell()(torch.stack([grid, torch.zeros_like(grid)], -1)) / temperature
    log_1d = torch.logsumexp(-u, 0) + torch.log(grid[1] - grid[0])
    return float(log_1d) + 0.5 * math.log(2 * math.pi * temperature)


def sample_from_cdf(grid, cdf, n):
    """Inverse-CDF samples [n] on a fine grid (linear interpolation)."""
    u = torch.rand(n, dtype=torch.float64)
    i = torch.searchsorted(cdf, u).clamp(1, len(grid) - 1)
    t = (u - cdf[i - 1]) / (cdf[i] - cdf[i - 1]).clamp_min(1e-300)
    return grid[i - 1] + t * (grid[i] - grid[i - 1])


def cylinder_samples(n, concentration=1.0, slope=3.0, dtype=torch.float64):
    """Exact samples of toys.Cylinder: x ~ N(0, 1), φ | x ~ von Mises(slope·x, κ)."""
    x = torch.randn(n, dtype=torch.float64)
    noise = torch.distributions.VonMises(torch.zeros(()), torch.tensor(concentration)).sample((n,)).double()
    return torch.stack([x, wrap(slope * x + noise)], -1).to(dtype)


def truncated_normal(n, mean, sd, low, high):
    """Exact samples [n] of N(mean, sd²) truncated to [low, high] (inverse CDF), and its first two
    moments by quadrature."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    a, b = (normal.cdf(torch.tensor((v - mean) / sd, dtype=torch.float64)) for v in (low, high))
    samples = mean + sd * torch.special.ndtri(a + torch.rand(n, dtype=torch.float64) * (b - a))
    grid = torch.linspace(low, high, 20001, dtype=torch.float64)
    w = torch.exp(-0.5 * ((grid - mean) / sd) ** 2)
    moments = [float((w * grid).sum() / w.sum()), float((w * grid**2).sum() / w.sum())]
    return samples, moments
