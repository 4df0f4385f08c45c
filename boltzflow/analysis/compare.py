"""How far model samples are from a reference (MD or umbrella data): histogram divergences of
1-D marginals and of the Ramachandran plane, and the forward KL / EUBO at reference points.

Histogram KL is D_KL(reference ‖ model) = Σ_b p_b log(p_b / q_b). Bins empty in the
reference contribute 0 (0 · log 0 = 0), so the sum runs over the reference's support; a
model probability is floored by a pseudocount, q_b → (q_b + ε) / (1 + ε · bins) with
ε = 1e-10 by default, so a model that misses reference mass gets a large but finite KL.
Model samples outside the reference's range of a non-periodic coordinate keep their weight
in the normalisation (that mass counts as missed).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .estimate import ArrayLike, Estimate, as_tensor, normalized_weights, sample_log_weights, z_score
from .histograms import angle_bin_index, histogram, interval_bin_index, plane_bin_index

PSEUDOCOUNT = 1e-10


def kl_divergence(p: Tensor, q: Tensor, pseudocount: float = PSEUDOCOUNT) -> Tensor:
    """D_KL(p ‖ q) of histograms [..., bins] (each normalised here) with the floor above."""
    return _kl(p, q / q.sum(-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny), pseudocount)


def _kl(p: Tensor, q: Tensor, pseudocount: float) -> Tensor:
    """KL of histogram ``p`` (normalised here) to probabilities ``q`` (taken as they are)."""
    p = p / p.sum(-1, keepdim=True)
    q = (q + pseudocount) / (1 + pseudocount * q.shape[-1])
    return torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p)).sum(-1)


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """½ Σ |p − q| of histograms [..., bins] (each normalised here), in [0, 1]."""
    return 0.5 * (p / p.sum(-1, keepdim=True) - q / q.sum(-1, keepdim=True)).abs().sum(-1)


def total_variation_noise_floor(histograms: ArrayLike, sample_sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
                                draws: int = 20, seed: int = 0) -> dict:
    """How much total variation a histogram reference built from independent repeats carries
    by noise alone. ``histograms`` [R, bins]: one probability histogram per repeat.

    Returns ``between_repeats`` (TV of every pair of repeats, and their mean),
    ``reference_estimate`` (≈ the mean-over-repeats reference's TV to the truth: the pairwise
    mean / √(2R), valid while per-bin noise is small and independent) and
    ``perfect_generator`` (N → mean TV between the histogram of N independent draws from the
    mean histogram and the mean histogram itself, over ``draws`` multinomial draws): the TV a
    flawless generator with N effective samples would show against a noise-free reference.
    """
    p = as_tensor(histograms, "histograms").double().cpu()
    if p.dim() != 2 or len(p) < 1:
        raise ValueError(f"histograms must have shape [repeats, bins], got {list(p.shape)}")
    p = p / p.sum(-1, keepdim=True)
    pairs = [total_variation(p[i], p[j]).item() for i in range(len(p)) for j in range(i + 1, len(p))]
    mean = p.mean(0)
    rng = np.random.default_rng(seed)
    generator = {}
    for n in sample_sizes:
        counts = torch.from_numpy(rng.multinomial(int(n), mean.numpy(), size=draws).astype(np.float64))
        generator[str(int(n))] = total_variation(counts, mean[None]).mean().item()
    pair_mean = float(np.mean(pairs)) if pairs else math.nan
    return {"between_repeats": {"pairs": pairs, "mean": pair_mean},
            "reference_estimate": pair_mean / math.sqrt(2 * len(p)) if pairs else math.nan,
            "perfect_generator": generator}


def _points(x: ArrayLike, name: str) -> Tensor:
    x = as_tensor(x, name)
    if x.dim() != 2 or len(x) == 0:
        raise ValueError(f"{name} must have shape [n, dim] with n >= 1, got {list(x.shape)}")
    return x


def marginal_kl(reference: ArrayLike, samples: ArrayLike, log_w: Optional[ArrayLike] = None,
                periodic: Optional[Sequence[bool]] = None, bins: int = 200, exclude: Optional[ArrayLike] = None,
                pseudocount: float = PSEUDOCOUNT) -> Tensor:
    """D_KL(reference ‖ model) of each 1-D marginal: [dim] (nats).

    ``reference`` [m, dim], ``samples`` [n, dim] with ``log_w`` [n] (None: equal weights);
    ``periodic`` [dim] marks angles (bins over [-π, π)); other coordinates are binned over the
    reference's [min, max]. The pseudocount and the lost mass are as in the module docstring.
    """
    reference, samples = _points(reference, "reference"), _points(samples, "samples")
    dim = reference.shape[1]
    if samples.shape[1] != dim:
        raise ValueError(f"samples must have shape [n, {dim}] like the reference, got {list(samples.shape)}")
    periodic = [False] * dim if periodic is None else list(periodic)
    if len(periodic) != dim:
        raise ValueError(f"periodic must give one flag per coordinate ({dim}), got {len(periodic)}")
    samples = samples.to(reference.device)
    log_w, _ = sample_log_weights(samples, log_w, exclude)
    w = normalized_weights(log_w)
    ones = torch.ones(len(reference), dtype=torch.float64, device=reference.device)
    out = []
    for d in range(dim):
        if periodic[d]:
            index_ref, index = angle_bin_index(reference[:, d], bins), angle_bin_index(samples[:, d], bins)
        else:
            low, high = reference[:, d].min().item(), reference[:, d].max().item()
            high = high if high > low else low + 1e-12
            index_ref = interval_bin_index(reference[:, d], low, high, bins)
            index = interval_bin_index(samples[:, d], low, high, bins)
        out.append(_kl(histogram(index_ref, ones, bins), histogram(index, w, bins), pseudocount))
    return torch.stack(out)


def ramachandran_divergence(reference_phi: ArrayLike, reference_psi: ArrayLike, phi: ArrayLike, psi: ArrayLike,
                            log_w: Optional[ArrayLike] = None, bins: int = 64, exclude: Optional[ArrayLike] = None,
                            pseudocount: float = PSEUDOCOUNT) -> dict[str, float]:
    """Total variation and D_KL(reference ‖ model) of the φ/ψ histograms on a periodic
    ``bins`` × ``bins`` grid: ``{"total_variation": …, "kl": …}``."""
    ref_phi, ref_psi = as_tensor(reference_phi, "reference_phi"), as_tensor(reference_psi, "reference_psi")
    phi, psi = as_tensor(phi, "phi").to(ref_phi.device), as_tensor(psi, "psi").to(ref_phi.device)
    log_w, _ = sample_log_weights(phi, log_w, exclude)
    ones = torch.ones(len(ref_phi), dtype=torch.float64, device=ref_phi.device)
    p = histogram(plane_bin_index(ref_phi, ref_psi, bins), ones, bins * bins)
    q = histogram(plane_bin_index(phi, psi, bins), normalized_weights(log_w), bins * bins)
    return {"total_variation": total_variation(p, q).item(), "kl": kl_divergence(p, q, pseudocount).item()}


def eubo(log_p_tilde: ArrayLike, log_q: ArrayLike, level: float = 0.95) -> Estimate:
    """Evidence upper bound E_p[log p̃ − log q] ≥ log Z from reference samples x ~ p.

    ``log_p_tilde`` [n] = −u(x) (+ log|det J| in internal coordinates) and ``log_q`` [n] the
    model's log density at the same points, in the same coordinates. The error (σ/√n)
    assumes independent reference samples.
    """
    log_p_tilde, log_q = as_tensor(log_p_tilde, "log_p_tilde"), as_tensor(log_q, "log_q")
    if log_p_tilde.dim() != 1 or log_q.shape != log_p_tilde.shape or len(log_q) < 2:
        raise ValueError(f"log_p_tilde and log_q must both have shape [n] with n >= 2, got "
                         f"{list(log_p_tilde.shape)} and {list(log_q.shape)}")
    gap = (log_p_tilde.to(torch.float64) - log_q.to(device=log_p_tilde.device, dtype=torch.float64))
    gap = torch.where(torch.isnan(gap), torch.full_like(gap, math.inf), gap)
    value = gap.mean().item()
    error = (gap.std() / math.sqrt(len(gap))).item() if math.isfinite(value) else math.inf
    half = z_score(level) * error
    low, high = (value - half, value + half) if math.isfinite(half) else (-math.inf, math.inf)
    return Estimate(value, error, low, high, level, "standard error", len(gap))


def forward_kl(log_p_tilde: ArrayLike, log_q: ArrayLike, log_z: float, level: float = 0.95) -> Estimate:
    """D_KL(p ‖ q) = EUBO − log Z (nats), given log Z (e.g. from ``log_normalizer_interval``
    or a reference); the error is the EUBO's, log Z taken as exact."""
    bound = eubo(log_p_tilde, log_q, level)
    return Estimate(bound.value - log_z, bound.error, bound.low - log_z, bound.high - log_z, level,
                    bound.method, bound.n)
