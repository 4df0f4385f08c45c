"""MBAR for umbrella sampling along a periodic CV (needs pymbar 4: ``boltzflow[free-energy]``).

Window k holds the CV near its centre θ_k with the periodic harmonic restraint
b_k(θ) = ½ κ_k d(θ, θ_k)², d the shortest signed angle between them (the
``CustomTorsionForce`` of ``boltzflow.reference.umbrella``). The unbiased potential is common
to all windows and cancels, so MBAR needs only the CV: u_kn = b_k(θ_n) / kT. Free energies of
CV bins and of CV ranges are the free energies of the unbiased state restricted to them
(``MBAR.compute_perturbed_free_energies``), with MBAR's analytical uncertainties, which
account for the correlation between bins and between ranges.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import BoltzflowError
from .estimate import ArrayLike, Estimate, as_tensor, z_score
from .free_energy import Profile
from .histograms import angle_bin_centers, angle_bin_index

Range = tuple[float, float]


def import_pymbar():
    """pymbar, imported quietly (its import logs a notice about JAX); a ``BoltzflowError``
    with the install command when it is missing."""
    logger = logging.getLogger("pymbar")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)
    try:
        import pymbar
    except ImportError:
        raise BoltzflowError("MBAR needs pymbar 4: pip install 'boltzflow[free-energy]'") from None
    return pymbar


def periodic_difference(a: np.ndarray, b: Union[np.ndarray, float]) -> np.ndarray:
    """Shortest signed angle a − b in [-π, π) (radians)."""
    return np.remainder(np.asarray(a) - b + math.pi, 2 * math.pi) - math.pi


def umbrella_bias(cv: np.ndarray, centres: np.ndarray, force_constants: np.ndarray) -> np.ndarray:
    """Restraint energies [K, n] (kJ/mol) of CV values [n] (rad) in windows with ``centres``
    [K] (rad) and ``force_constants`` [K] (kJ/mol/rad²)."""
    d = periodic_difference(np.asarray(cv)[None, :], np.asarray(centres)[:, None])
    return 0.5 * np.asarray(force_constants)[:, None] * d**2


def in_range(cv: np.ndarray, bounds: Range) -> np.ndarray:
    """Bool [n]: CV values in [low, high) (radians); low > high wraps through ±π."""
    low, high = bounds
    return (cv >= low) & (cv < high) if low <= high else (cv >= low) | (cv < high)


@dataclass(frozen=True)
class UmbrellaFreeEnergies:
    """MBAR results: the PMF (``profile``), the windows' free energies ``window_free_energies``
    [K] (kT, relative to the first), the samples each window contributed after decorrelation
    ``samples_per_window`` [K], the named CV ranges (``regions``) with their free energies
    ``region_free_energies`` [R] (kT, up to a constant; ``inf`` if empty) and the standard
    errors of their differences ``region_errors`` [R, R]. ``delta_f(a, b)`` combines them."""

    profile: Profile
    window_free_energies: np.ndarray
    samples_per_window: np.ndarray
    regions: tuple
    region_free_energies: np.ndarray
    region_errors: np.ndarray

    def delta_f(self, a: str, b: str, level: float = 0.95) -> Estimate:
        """F_b − F_a (kT) between two named CV ranges, with MBAR's standard error."""
        for name in (a, b):
            if name not in self.regions:
                raise BoltzflowError(f"unknown region {name!r}; known: {', '.join(self.regions) or 'none'}")
        i, j = self.regions.index(a), self.regions.index(b)
        value = float(self.region_free_energies[j] - self.region_free_energies[i])
        error = float(self.region_errors[i, j])
        if math.isnan(value):
            raise BoltzflowError(f"no umbrella sample lies in {a!r} or {b!r}: ΔF is undefined")
        half = z_score(level) * error
        low, high = (value - half, value + half) if math.isfinite(half) else (-math.inf, math.inf)
        return Estimate(value, error, low, high, level, "MBAR", int(self.samples_per_window.sum()))


def decorrelated(cv: np.ndarray, centre: float) -> np.ndarray:
    """Indices of effectively uncorrelated samples of one window's CV series [n]
    (pymbar's statistical inefficiency of the displacement from the centre); all indices when
    the series is too short or constant to estimate it."""
    pymbar = import_pymbar()
    d = periodic_difference(cv, centre)
    try:
        g = pymbar.timeseries.statistical_inefficiency(d)
    except pymbar.utils.ParameterError:
        return np.arange(len(cv))
    return np.asarray(pymbar.timeseries.subsample_correlated_data(d, g=g), dtype=int)


def mbar_free_energies(cv_samples: Sequence[ArrayLike], centres: ArrayLike, force_constants: Union[float, ArrayLike],
                       kT: float, bins: int = 72, regions: Optional[Mapping[str, Range]] = None,
                       decorrelate: bool = True, level: float = 0.95) -> UmbrellaFreeEnergies:
    """PMF along a periodic CV and free energies of CV ranges from umbrella windows, by MBAR.

    Args:
        cv_samples: one CV time series per window, [n_k] radians each.
        centres: restraint centres [K] (radians).
        force_constants: κ in kJ/mol/rad², one for all windows or [K].
        kT: kJ/mol.
        bins: periodic bins of the PMF over [-π, π).
        regions: name → (low, high) radians, low > high wrapping through ±π.
        decorrelate: keep only effectively uncorrelated samples of each window.
        level: confidence level of the PMF band (± z σ).
    """
    pymbar = import_pymbar()
    centres = as_tensor(centres, "centres").double().cpu().numpy().reshape(-1)
    windows = len(centres)
    if len(cv_samples) != windows:
        raise ValueError(f"need one CV series per window ({windows}), got {len(cv_samples)}")
    kappa = np.broadcast_to(np.asarray(force_constants, dtype=np.float64), (windows,))
    if not kT > 0 or not (kappa > 0).all():
        raise BoltzflowError(f"kT and the force constants must be positive, got kT={kT}, κ={kappa.tolist()}")
    series = [as_tensor(x, "cv_samples").double().cpu().numpy().reshape(-1) for x in cv_samples]
    if decorrelate:
        series = [x[decorrelated(x, c)] for x, c in zip(series, centres)]
    counts = np.array([len(x) for x in series])
    cv = np.concatenate(series)
    if len(cv) == 0:
        raise BoltzflowError("the umbrella windows hold no samples")
    mbar = pymbar.MBAR(umbrella_bias(cv, centres, kappa) / kT, counts)
    window_f = mbar.compute_free_energy_differences(compute_uncertainty=False)["Delta_f"][0]

    names = tuple(regions or {})
    index = angle_bin_index(torch.from_numpy(cv), bins).numpy()
    masks = [index == b for b in range(bins)] + [in_range(cv, regions[name]) for name in names]
    f, errors = _restricted_free_energies(mbar, masks)
    f_bins, e_bins = f[:bins], errors[:bins, :bins]
    lowest = int(np.nanargmin(np.where(np.isfinite(f_bins), f_bins, np.nan)))
    free_energy, error = f_bins - f_bins[lowest], e_bins[lowest]
    half = np.where(np.isfinite(free_energy), z_score(level) * error, 0.0)
    profile = Profile(angle_bin_centers(bins), torch.from_numpy(free_energy), torch.from_numpy(error),
                      torch.from_numpy(free_energy - half), torch.from_numpy(free_energy + half), level, "MBAR")
    return UmbrellaFreeEnergies(profile, window_f, counts, names, f[bins:], errors[bins:, bins:])


def _restricted_free_energies(mbar, masks: list) -> tuple[np.ndarray, np.ndarray]:
    """Free energies [L] (kT, up to a constant) of the unbiased state restricted to each mask
    [N] and the standard errors [L, L] of their differences; empty masks give ``inf`` and
    ``inf`` errors."""
    occupied = [i for i, m in enumerate(masks) if m.any()]
    f = np.full(len(masks), math.inf)
    errors = np.full((len(masks), len(masks)), math.inf)
    np.fill_diagonal(errors, 0.0)
    if not occupied:
        return f, errors
    u_ln = np.stack([np.where(masks[i], 0.0, math.inf) for i in occupied])
    with np.errstate(invalid="ignore", divide="ignore"):  # exp(-inf) of the samples outside
        result = mbar.compute_perturbed_free_energies(u_ln)
    f[occupied] = result["Delta_f"][0]
    errors[np.ix_(occupied, occupied)] = result["dDelta_f"]
    return f, errors
