"""MBAR for umbrella sampling along one or two periodic CVs (needs pymbar 4: ``boltzflow[free-energy]``).

Window k holds the CVs near its centre θ_k with the periodic harmonic restraint
b_k(θ) = ½ κ_k Σ_d d(θ_d, θ_kd)², d the shortest signed angle between them (one
``CustomTorsionForce`` per CV in ``boltzflow.reference.umbrella``). The unbiased potential is
common to all windows and cancels, so MBAR needs only the CVs: u_kn = b_k(θ_n) / kT. Free
energies of bins of the first CV and of CV regions are the free energies of the unbiased state
restricted to them (``MBAR.compute_perturbed_free_energies``), with MBAR's analytical
uncertainties, which account for the correlation between bins and between regions but not for
correlation in time unless the series are decorrelated first. Every sample's unbiased weight
(``sample_log_weights``) gives reweighted histograms, e.g. the Ramachandran plane.

Independent repeats (different seeds) give the honest uncertainty: ``repeat_estimate`` turns
one value per repeat into mean ± standard error with a Student-t interval.
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
    """Restraint energies [K, n] (kJ/mol) of CV values [n] or [n, D] (rad) in windows with
    ``centres`` [K] or [K, D] (rad) and ``force_constants`` [K] (kJ/mol/rad², the same on every CV)."""
    cv, centres = np.asarray(cv), np.asarray(centres)
    cv = cv.reshape(len(cv), -1)
    centres = centres.reshape(len(centres), -1)
    if cv.shape[1] != centres.shape[1]:
        raise ValueError(f"CV values have {cv.shape[1]} dimensions, the centres {centres.shape[1]}")
    d = periodic_difference(cv[None, :, :], centres[:, None, :])
    return 0.5 * np.asarray(force_constants)[:, None] * (d**2).sum(-1)


def in_range(cv: np.ndarray, bounds: Range) -> np.ndarray:
    """Bool [n]: CV values in [low, high) (radians); low > high wraps through ±π."""
    low, high = bounds
    return (cv >= low) & (cv < high) if low <= high else (cv >= low) | (cv < high)


Region = Union[Range, Mapping[int, Range]]


def in_region(cv: np.ndarray, region: Region) -> np.ndarray:
    """Bool [n]: CV values [n] or [n, D] in a region, either a ``Range`` of the first CV or
    {CV index: Range} (all must hold)."""
    cv = np.asarray(cv).reshape(len(cv), -1)
    if isinstance(region, Mapping):
        mask = np.ones(len(cv), dtype=bool)
        for d, bounds in region.items():
            mask &= in_range(cv[:, int(d)], bounds)
        return mask
    return in_range(cv[:, 0], region)


def repeat_estimate(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean of independent repeats with its standard error (sample s.d. / √R) and the Student-t
    interval with R − 1 degrees of freedom; ``n`` is R. Needs R >= 2 for an error (else inf)."""
    from scipy import stats  # a dependency of pymbar

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        raise BoltzflowError("no repeat to average")
    value = float(x.mean())
    if len(x) < 2 or not np.isfinite(x).all():
        return Estimate(value, math.inf, -math.inf, math.inf, level, f"mean of {len(x)} repeat(s)", len(x))
    error = float(x.std(ddof=1) / math.sqrt(len(x)))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * error
    return Estimate(value, error, value - half, value + half, level,
                    f"mean ± s.e. of {len(x)} independent repeats, t interval", len(x))


@dataclass(frozen=True)
class UmbrellaFreeEnergies:
    """MBAR results: the PMF along the first CV (``profile``), the windows' free energies
    ``window_free_energies`` [K] (kT, relative to the first), the samples each window
    contributed after decorrelation ``samples_per_window`` [K], the named CV regions
    (``regions``) with their free energies ``region_free_energies`` [R] (kT, up to a constant;
    ``inf`` if empty) and the standard errors of their differences ``region_errors`` [R, R].
    ``delta_f(a, b)`` combines them. ``samples`` [N, D] are the CV values MBAR used and
    ``sample_log_weights`` [N] their normalised log-weights in the unbiased state;
    ``overlap`` [K, K] is MBAR's overlap matrix of the windows."""

    profile: Profile
    window_free_energies: np.ndarray
    samples_per_window: np.ndarray
    regions: tuple
    region_free_energies: np.ndarray
    region_errors: np.ndarray
    samples: Optional[np.ndarray] = None
    sample_log_weights: Optional[np.ndarray] = None
    overlap: Optional[np.ndarray] = None

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


def decorrelated(cv: np.ndarray, centre: Union[float, np.ndarray]) -> np.ndarray:
    """Indices of effectively uncorrelated samples of one window's CV series [n] or [n, D]
    (pymbar's statistical inefficiency of the displacement from the centre, the largest over
    the CVs); all indices when the series is too short or constant to estimate it."""
    pymbar = import_pymbar()
    d = periodic_difference(np.asarray(cv).reshape(len(cv), -1), np.asarray(centre).reshape(-1))
    inefficiencies = []
    for column in d.T:
        try:
            inefficiencies.append(pymbar.timeseries.statistical_inefficiency(column))
        except pymbar.utils.ParameterError:
            pass
    if not inefficiencies:
        return np.arange(len(cv))
    return np.asarray(pymbar.timeseries.subsample_correlated_data(d[:, 0], g=max(inefficiencies)), dtype=int)


def mbar_free_energies(cv_samples: Sequence[ArrayLike], centres: ArrayLike, force_constants: Union[float, ArrayLike],
                       kT: float, bins: int = 72, regions: Optional[Mapping[str, Region]] = None,
                       decorrelate: bool = True, level: float = 0.95) -> UmbrellaFreeEnergies:
    """PMF along the first periodic CV and free energies of CV regions from umbrella windows, by MBAR.

    Args:
        cv_samples: one CV time series per window, [n_k] (one CV) or [n_k, D] radians each.
        centres: restraint centres [K] or [K, D] (radians).
        force_constants: κ in kJ/mol/rad², one for all windows or [K].
        kT: kJ/mol.
        bins: periodic bins of the PMF over [-π, π).
        regions: name → (low, high) radians of the first CV, or name → {CV index: (low, high)};
            low > high wraps through ±π.
        decorrelate: keep only effectively uncorrelated samples of each window.
        level: confidence level of the PMF band (± z σ).
    """
    pymbar = import_pymbar()
    centres = as_tensor(centres, "centres").double().cpu().numpy()
    windows = len(centres)
    centres = centres.reshape(windows, -1)
    dims = centres.shape[1]
    if len(cv_samples) != windows:
        raise ValueError(f"need one CV series per window ({windows}), got {len(cv_samples)}")
    kappa = np.broadcast_to(np.asarray(force_constants, dtype=np.float64), (windows,))
    if not kT > 0 or not (kappa > 0).all():
        raise BoltzflowError(f"kT and the force constants must be positive, got kT={kT}, κ={kappa.tolist()}")
    series = [as_tensor(x, "cv_samples").double().cpu().numpy().reshape(-1, dims) for x in cv_samples]
    if decorrelate:
        series = [x[decorrelated(x, c)] for x, c in zip(series, centres)]
    counts = np.array([len(x) for x in series])
    cv = np.concatenate(series)
    if len(cv) == 0:
        raise BoltzflowError("the umbrella windows hold no samples")
    u_kn = umbrella_bias(cv, centres, kappa) / kT
    mbar = pymbar.MBAR(u_kn, counts)
    window_f = mbar.compute_free_energy_differences(compute_uncertainty=False)["Delta_f"][0]
    # unbiased weights: w_n ∝ 1 / Σ_k N_k exp(f_k − u_kn)
    log_w = _unbiased_log_weights(u_kn, counts, mbar.f_k)

    names = tuple(regions or {})
    index = angle_bin_index(torch.from_numpy(cv[:, 0].copy()), bins).numpy()
    masks = [index == b for b in range(bins)] + [in_region(cv, regions[name]) for name in names]
    f, errors = _restricted_free_energies(mbar, masks)
    f_bins, e_bins = f[:bins], errors[:bins, :bins]
    lowest = int(np.nanargmin(np.where(np.isfinite(f_bins), f_bins, np.nan)))
    free_energy, error = f_bins - f_bins[lowest], e_bins[lowest]
    half = np.where(np.isfinite(free_energy), z_score(level) * error, 0.0)
    profile = Profile(angle_bin_centers(bins), torch.from_numpy(free_energy), torch.from_numpy(error),
                      torch.from_numpy(free_energy - half), torch.from_numpy(free_energy + half), level, "MBAR")
    overlap = mbar.compute_overlap()["matrix"]
    return UmbrellaFreeEnergies(profile, window_f, counts, names, f[bins:], errors[bins:, bins:], cv, log_w, overlap)


def _unbiased_log_weights(u_kn: np.ndarray, counts: np.ndarray, f_k: np.ndarray) -> np.ndarray:
    """Normalised log-weights [N] of the pooled samples in the unbiased state (zero bias):
    w_n ∝ 1 / Σ_k N_k exp(f_k − u_kn), over the windows that hold samples."""
    from scipy.special import logsumexp  # a dependency of pymbar

    held = counts > 0
    log_w = -logsumexp(np.log(counts[held])[:, None] + f_k[held][:, None] - u_kn[held], axis=0)
    return log_w - logsumexp(log_w)


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
