"""PNG figures of free energies, written atomically.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas: no
screen needed and pyplot's global backend is left alone (safe inside notebooks). Angles are
shown in degrees, free energies in kT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import numpy as np

from ..io import atomic_path
from .free_energy import Profile, Surface


def _figure(**options):
    from matplotlib.figure import Figure

    return Figure(**options)


def _finite_or_nan(values) -> np.ndarray:
    """A tensor as float64 numpy with ±inf (empty bins) as NaN, which matplotlib leaves blank."""
    values = values.detach().cpu().double().numpy()
    return np.where(np.isfinite(values), values, np.nan)


def _save(figure, path: Union[str, Path]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def cv_symbol(name: str) -> str:
    """A CV's name as plotted: ``phi`` → φ, ``psi2`` → ψ2; other names as they are."""
    for word, letter in (("phi", "φ"), ("psi", "ψ")):
        suffix = name[len(word):]
        if name.startswith(word) and (suffix == "" or suffix.isdigit()):
            return letter + suffix
    return name


def plot_ramachandran(rows: Mapping[tuple[str, str], Mapping[str, Surface]], path: Union[str, Path],
                      max_free_energy: float = 10.0, fill_empty: bool = False) -> Path:
    """Free-energy surfaces, one row per pair of CVs (e.g. each residue's φ, ψ), side by side
    within a row (e.g. flow, reweighted flow, reference); one colour scale from 0 to
    ``max_free_energy`` kT; empty bins white, or (``fill_empty``, for a reference that covered
    the whole plane) in the colour of ``max_free_energy`` and above. Returns ``path``."""
    n_columns = max(len(surfaces) for surfaces in rows.values())
    figure = _figure(figsize=(4.2 * n_columns + 0.8, 3.8 * len(rows)), constrained_layout=True)
    axes = figure.subplots(len(rows), n_columns, squeeze=False)
    image = None
    for row, ((first, second), surfaces) in zip(axes, rows.items()):
        for ax, (title, surface) in zip(row, surfaces.items()):
            f = surface.free_energy.detach().cpu().double().numpy() if fill_empty else _finite_or_nan(surface.free_energy)
            f = np.minimum(f, max_free_energy)
            image = ax.imshow(f.T, origin="lower", extent=(-180, 180, -180, 180), vmin=0, vmax=max_free_energy,
                              cmap="viridis", interpolation="nearest")
            ax.set(title=title, xlabel=f"{cv_symbol(first)} (°)", ylabel=f"{cv_symbol(second)} (°)",
                   xticks=range(-180, 181, 90), yticks=range(-180, 181, 90))
        for ax in row[len(surfaces):]:
            ax.set_axis_off()
    label = f"free energy (kT); ≥ {max_free_energy:g} and unsampled at the top" if fill_empty else "free energy (kT)"
    figure.colorbar(image, ax=axes.ravel().tolist(), label=label, extend="max" if fill_empty else "neither",
                    shrink=min(1.0, 1.5 / len(rows)) if len(rows) > 1 else 1.0)
    return _save(figure, path)


def pmf_axis_top(profiles: Mapping[str, Profile], max_free_energy: float) -> float:
    """Upper end (kT) of the PMF plot's axis: the highest finite free energy, plus a margin,
    but no more than ``max_free_energy``: a bin that a single low-weight sample reached
    (100 kT and more) would otherwise squash the real curve into the bottom of the plot."""
    finite = [float(np.nanmax(f)) for f in (_finite_or_nan(p.free_energy) for p in profiles.values())
              if np.isfinite(f).any()]
    return min(max(finite, default=1.0) + 0.5, max_free_energy)


def plot_pmf(profiles: Mapping[str, Profile], path: Union[str, Path], cv: str = "φ",
             max_free_energy: float = 20.0) -> Path:
    """PMF curves with their confidence bands, one line per profile, up to ``max_free_energy``
    kT (bins above it lie off the plot, as the title says). Returns ``path``."""
    figure = _figure(figsize=(6, 4), constrained_layout=True)
    ax = figure.subplots()
    for label, profile in profiles.items():
        x = np.degrees(profile.centers.detach().cpu().numpy())
        f, low, high = (_finite_or_nan(v) for v in (profile.free_energy, profile.low, profile.high))
        (line,) = ax.plot(x, f, marker=".", markersize=3, label=label)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    level = next(iter(profiles.values())).level if profiles else 0.95
    top = pmf_axis_top(profiles, max_free_energy)
    clipped = any(np.nanmax(_finite_or_nan(p.free_energy), initial=-np.inf) > top for p in profiles.values())
    ax.set(xlabel=f"{cv} (°)", ylabel="free energy (kT)", xlim=(-180, 180), xticks=range(-180, 181, 60),
           ylim=(min(0.0, *(float(np.nanmin(_finite_or_nan(p.low), initial=0.0)) for p in profiles.values())) - 0.5,
                 top),
           title=f"PMF along {cv} (bands: {level:.0%} confidence)" + (f"; bins above {top:g} kT not shown"
                                                                    if clipped else ""))
    ax.legend()
    return _save(figure, path)
