"""What an estimator returns (``Estimate``), input coercion, exclusion masks and the bootstrap.

Estimators accept torch tensors (any device, float32 or float64) or numpy arrays and
accumulate in float64 on the input's device. Samples excluded by a mask (e.g. conformations
of the wrong chirality) keep their place in n but get weight 0: estimates then refer to the
target restricted to the samples kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch import Tensor

from ..numerics import clean_log

ArrayLike = Union[Tensor, np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A scalar estimate with its standard error and a confidence interval [low, high].

    ``method`` says where the error comes from ("bootstrap", "delta method", "MBAR");
    ``n`` counts the samples, ``n_excluded`` those given weight 0 by an exclusion mask.
    """

    value: float
    error: float
    low: float
    high: float
    level: float = 0.95
    method: str = ""
    n: int = 0
    n_excluded: int = 0

    def __str__(self) -> str:
        interval = f"{self.level:.0%} CI [{self.low:.3f}, {self.high:.3f}]"
        return f"{self.value:.3f} ± {self.error:.3f} (± standard error; {interval}, {self.method})"


def as_tensor(x: ArrayLike, name: str = "input") -> Tensor:
    """A torch tensor of ``x`` on its own device (numpy arrays land on the CPU); floats kept,
    integers and booleans left as they are."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}")


def sample_log_weights(n_like: Tensor, log_w: Optional[ArrayLike], exclude: Optional[ArrayLike]) -> tuple[Tensor, int]:
    """Float64 log-weights [n] for the samples of ``n_like`` [n, ...] and how many were excluded.

    ``log_w`` None means equal weights (unweighted samples, e.g. MD frames); non-finite
    log-weights and samples where ``exclude`` [n] is True count as weight 0 (``-inf``).
    """
    n = n_like.shape[0]
    if log_w is None:
        out = torch.zeros(n, dtype=torch.float64, device=n_like.device)
    else:
        out = as_tensor(log_w, "log_w").to(device=n_like.device, dtype=torch.float64)
        if out.shape != (n,):
            raise ValueError(f"log_w must have shape [{n}] (one per sample), got {list(out.shape)}")
        out = clean_log(out)
    n_excluded = 0
    if exclude is not None:
        mask = as_tensor(exclude, "exclude").to(device=n_like.device)
        if mask.shape != (n,) or mask.dtype != torch.bool:
            raise ValueError(f"exclude must be a bool mask of shape [{n}], got {mask.dtype} {list(mask.shape)}")
        out = out.masked_fill(mask, -math.inf)
        n_excluded = int(mask.sum())
    return out, n_excluded


def normalized_weights(log_w: Tensor) -> Tensor:
    """Self-normalised weights [n] (float64, sum 1) from log-weights; all-zero stays all-zero."""
    top = log_w.max()
    if top == -math.inf:
        return torch.zeros_like(log_w)
    w = torch.exp(log_w - top)
    return w / w.sum()


def z_score(level: float) -> float:
    """The two-sided standard-normal quantile of a ``level`` confidence interval."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def resamples(n: int, n_boot: int, device: torch.device, generator: Optional[torch.Generator] = None,
              chunk_elements: int = 1 << 22) -> Iterator[Tensor]:
    """Bootstrap index draws: chunks of shape [chunk, n], ``n_boot`` rows in all."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    chunk = max(1, chunk_elements // max(n, 1))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        yield torch.randint(n, (rows, n), device=device, generator=generator)


def bootstrap(statistic: Callable[[Tensor], Tensor], n: int, n_boot: int, device: torch.device,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """Replicates [n_boot, ...] of ``statistic(indices [chunk, n]) -> [chunk, ...]``."""
    return torch.cat([statistic(idx) for idx in resamples(n, n_boot, device, generator)])


def percentile_interval(replicates: Tensor, level: float) -> tuple[Tensor, Tensor]:
    """Percentile bootstrap interval over dim 0, widened to the neighbouring order statistics;
    replicates that are NaN (undefined in that resample) are ignored, ±inf is kept."""
    alpha = (1 - level) / 2
    low = torch.nanquantile(replicates, alpha, dim=0, interpolation="lower")
    high = torch.nanquantile(replicates, 1 - alpha, dim=0, interpolation="higher")
    return low, high


def bootstrap_error(replicates: Tensor) -> Tensor:
    """Standard deviation of the replicates over dim 0, NaN ignored; ``inf`` where any
    replicate is infinite."""
    finite = torch.isfinite(replicates)
    count = finite.sum(0).clamp_min(2)
    values = torch.where(finite, replicates, torch.zeros_like(replicates))
    mean = values.sum(0) / finite.sum(0).clamp_min(1)
    var = torch.where(finite, (values - mean) ** 2, torch.zeros_like(values)).sum(0) / (count - 1)
    return torch.where(torch.isinf(replicates).any(0), torch.full_like(var, math.inf), var.sqrt())
