"""PNG figures of free energies, written atomically.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas: no
screen needed and pyplot's global backend is left alone (safe inside notebooks). Angles are
shown in degrees, free energies in kT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ..io import atomic_path
from .estimate import Estimate
from .free_energy import MIN_STATE_ESS, Profile, Surface


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
                      max_free_energy: float = 10.0, fill_empty: bool = False, note: str = "") -> Path:
    """Free-energy surfaces, one row per pair of CVs (e.g. each residue's φ, ψ), side by side
    within a row (e.g. flow, reweighted flow, reference); one colour scale from 0 to the highest
    finite free energy (rounded up to whole kT), at most ``max_free_energy`` kT: bins above it
    take the top colour and the colour bar says so (an arrow and its label). Empty bins white,
    or (``fill_empty``, for a reference that covered the whole plane) in the top colour too.
    ``note`` (e.g. an unreliable PSIS verdict) is written in red above the panels. Returns ``path``."""
    n_columns = max(len(surfaces) for surfaces in rows.values())
    figure = _figure(figsize=(4.2 * n_columns + 0.8, 3.8 * len(rows) + (0.3 if note else 0)), constrained_layout=True)
    axes = figure.subplots(len(rows), n_columns, squeeze=False)
    highest = max(float(np.nanmax(f, initial=0.0)) for f in
                  (_finite_or_nan(s.free_energy) for surfaces in rows.values() for s in surfaces.values()))
    top = min(max(1.0, math.ceil(highest)), max_free_energy)
    clipped = highest > top
    image = None
    for row, ((first, second), surfaces) in zip(axes, rows.items()):
        for ax, (title, surface) in zip(row, surfaces.items()):
            f = surface.free_energy.detach().cpu().double().numpy() if fill_empty else _finite_or_nan(surface.free_energy)
            image = ax.imshow(np.minimum(f, top).T, origin="lower", extent=(-180, 180, -180, 180), vmin=0, vmax=top,
                              cmap="viridis", interpolation="nearest")
            ax.set(title=title, xlabel=f"{cv_symbol(first)} (°)", ylabel=f"{cv_symbol(second)} (°)",
                   xticks=range(-180, 181, 90), yticks=range(-180, 181, 90))
        for ax in row[len(surfaces):]:
            ax.set_axis_off()
    above = [f"above {top:g} kT" if clipped else "", "unsampled" if fill_empty else ""]
    above = " and ".join(a for a in above if a)
    label = f"free energy (kT); {above} in the top colour" if above else "free energy (kT)"
    figure.colorbar(image, ax=axes.ravel().tolist(), label=label, extend="max" if above else "neither",
                    shrink=min(1.0, 1.5 / len(rows)) if len(rows) > 1 else 1.0)
    _mark(figure, note)
    return _save(figure, path)


def _mark(figure, note: str) -> None:
    """``note`` in red above the figure's panels (nothing when empty)."""
    if note:
        figure.suptitle(note, color="firebrick", fontsize="medium", fontweight="bold")


def pmf_axis_top(profiles: Mapping[str, Profile], max_free_energy: float) -> float:
    """Upper end (kT) of the PMF plot's axis: the highest finite free energy, plus a margin,
    but no more than ``max_free_energy``: a bin that a single low-weight sample reached
    (100 kT and more) would otherwise squash the real curve into the bottom of the plot."""
    finite = [float(np.nanmax(f)) for f in (_finite_or_nan(p.free_energy) for p in profiles.values())
              if np.isfinite(f).any()]
    return min(max(finite, default=1.0) + 0.5, max_free_energy)


def pmf_band(profile: Profile, top: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band drawn at each bin of ``profile``: (low, high, unbounded) [bins]. Finite
    wherever the free energy is (NaN in empty bins); a band end at ±inf (the bootstrap
    resampled the bin empty more often than the interval's tail allows) is drawn to the
    axis ``top`` (or 0 below) and ``unbounded`` marks those bins."""
    f, low, high = (_finite_or_nan(v) for v in (profile.free_energy, profile.low, profile.high))
    sampled = np.isfinite(f)
    unbounded = sampled & ~(np.isfinite(low) & np.isfinite(high))
    low = np.where(sampled, np.where(np.isfinite(low), np.minimum(low, f), min(0.0, np.nanmin(f))), np.nan)
    high = np.where(sampled, np.where(np.isfinite(high), np.maximum(high, f), max(top, np.nanmax(f))), np.nan)
    return low, high, unbounded


BAND_FLOOR = 5.0
"""kT below a PMF's lowest value at which the plot's axis ends: a band reaching further down
(a bootstrap over a handful of dominant weights can reach −300 kT) is cut there, and the
title says so, instead of squashing the curve to a line."""


def plot_pmf(profiles: Mapping[str, Profile], path: Union[str, Path], cv: str = "φ",
             max_free_energy: float = 20.0, note: str = "") -> Path:
    """PMF curves, one line per profile, broken where a bin holds no sample, up to
    ``max_free_energy`` kT (bins above it lie off the plot, as the title says). Every plotted
    bin carries its band as a box one bin wide: the profile's own interval ([``low``, ``high``],
    a percentile bootstrap over the samples for flow samples, MBAR's for an umbrella), hatched
    where it is unbounded above (``pmf_band``), cut ``BAND_FLOOR`` kT below the lowest
    value. ``note`` (e.g. an unreliable PSIS verdict) is
    written in red above the plot. Returns ``path``."""
    figure = _figure(figsize=(6, 4.3 if note else 4), constrained_layout=True)
    ax = figure.subplots()
    top = pmf_axis_top(profiles, max_free_energy)
    hatched = False
    for label, profile in profiles.items():
        x = np.degrees(profile.centers.detach().cpu().numpy())
        width = 360.0 / len(x)
        f = _finite_or_nan(profile.free_energy)
        low, high, unbounded = pmf_band(profile, top)
        (line,) = ax.plot(x, f, marker=".", markersize=3, label=label)
        for rows, hatch in ((np.isfinite(f) & ~unbounded, None), (unbounded, "////")):
            ax.bar(x[rows], (high - low)[rows], width=width, bottom=low[rows], color=line.get_color(), alpha=0.25,
                   linewidth=0, hatch=hatch, edgecolor=line.get_color() if hatch else None)
        hatched |= bool(unbounded.any())
    level = next(iter(profiles.values())).level if profiles else 0.95
    clipped = any(np.nanmax(_finite_or_nan(p.free_energy), initial=-np.inf) > top for p in profiles.values())
    lowest = min(0.0, *(float(np.nanmin(_finite_or_nan(p.free_energy), initial=0.0)) for p in profiles.values()))
    reach = min(0.0, *(float(np.nanmin(_finite_or_nan(p.low), initial=0.0)) for p in profiles.values()))
    cut = reach < lowest - BAND_FLOOR
    bottom = max(reach, lowest - BAND_FLOOR) - 0.5
    ax.set(xlabel=f"{cv} (°)", ylabel="free energy (kT)", xlim=(-180, 180), xticks=range(-180, 181, 60),
           ylim=(bottom, top), title=f"PMF along {cv} (bands: {level:.0%} confidence"
                                     + ("; hatched: unbounded above" if hatched else "")
                                     + (f"; cut {BAND_FLOOR:g} kT below the minimum" if cut else "") + ")"
                                     + (f"; bins above {top:g} kT not shown" if clipped else ""))
    ax.title.set_fontsize("medium")
    ax.legend()
    _mark(figure, note)
    return _save(figure, path)


# Okabe & Ito's colour-blind-safe palette; each series also has its own marker shape
REWEIGHTED_COLOUR, RAW_COLOUR, REFERENCE_COLOUR = "#0072B2", "#E69F00", "#000000"
POPULATION_FLOOR = 1e-12
"""The lowest population the state-coverage figure's axis reaches (it starts a decade or so below
the smallest value shown, at most 1e-2): smaller values and intervals reaching 0 are drawn at the
axis' left end, as its label says."""


@dataclass(frozen=True)
class StateCoverage:
    """One state of the state-coverage figure: its reweighted ``population`` (an Estimate with its
    interval), ``withheld`` when that interval rests on fewer than ``MIN_STATE_ESS`` effective
    samples, the ``n`` samples with weight in it and their Kish ``n_effective``, ``raw`` the
    fraction of the flow's own draws in it (unweighted) and the ``reference``'s population (or None)."""

    name: str
    population: Estimate
    withheld: bool
    n: int
    n_effective: float
    raw: float
    reference: Optional[Estimate] = None


def _percent(p: float) -> str:
    return "0" if p == 0 else f"{100 * p:.3g}%" if p >= 1e-4 else f"{100 * p:.1e}%"


def _state_label(state: StateCoverage) -> str:
    return f"{state.name}\nN {state.n:,} · eff {state.n_effective:,.1f}"


def _interval(estimate: Estimate) -> str:
    return f"[{_percent(estimate.low)}, {_percent(estimate.high)}]"


def _state_numbers(state: StateCoverage) -> str:
    """What the figure writes beside a state: its population and interval, the reference's."""
    text = _percent(state.population.value)
    if state.population.value > 0:
        text += " (interval withheld)" if state.withheld else f" {_interval(state.population)}"
    if state.reference is not None:
        text += f"\nref {_percent(state.reference.value)} {_interval(state.reference)}"
    return text


def plot_states(rows: Mapping[str, Sequence[Sequence[StateCoverage]]], path: Union[str, Path],
                reference_label: str = "reference", note: str = "") -> Path:
    """The state-coverage figure: a panel per row (e.g. a residue), its groups of states (each a
    list of ``StateCoverage``) one under the other, separated by a line. Per state, on a log
    axis of population: the reweighted population with its interval (a line over the whole axis
    when withheld), the flow's raw fraction and the reference's population with its interval
    (``reference_label`` in the legend); a state no draw of the flow reached is marked "not
    sampled" (one whose draws all have weight 0: "no weight"). Each state's label gives its samples
    N and their effective number; its numbers are written at the right. ``note`` (e.g. an unreliable
    PSIS verdict) is written in red above the panels. Returns ``path``."""
    from matplotlib.lines import Line2D

    states = [s for groups in rows.values() for group in groups for s in group]
    shown = [v for s in states for v in (s.population.value, s.raw, s.population.low if not s.withheld else 0.0,
                                         *((s.reference.value, s.reference.low) if s.reference is not None else ()))]
    smallest = min((v for v in shown if v > 0), default=1.0)
    floor = max(min(10.0 ** math.floor(math.log10(smallest) - 0.5), 1e-2), POPULATION_FLOOR)
    intervals = [e for s in states for e in ((s.population,) if not s.withheld else ()) + (
        (s.reference,) if s.reference is not None else ()) if e.value > 0]
    clipped = any(0 < v < floor for v in shown) or any(e.low < floor for e in intervals)
    heights = [sum(len(group) for group in groups) + 0.5 * (len(groups) - 1) for groups in rows.values()]
    figure = _figure(figsize=(9.5, 0.55 * sum(heights) + 0.9 * len(rows) + 0.8 + (0.3 if note else 0)),
                     constrained_layout=True)
    axes = figure.subplots(len(rows), 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": heights})[:, 0]
    at = lambda v: min(max(v, floor), 1.0)  # noqa: E731 (a value as drawn on the axis)
    for ax, (title, groups) in zip(axes, rows.items()):
        y, ticks, labels = 0.0, [], []
        for g, group in enumerate(groups):
            if g:
                ax.axhline(y - 0.25, color="0.75", linewidth=0.8)
                y += 0.5
            for state in group:
                estimate = state.population
                if estimate.value > 0:
                    if state.withheld:
                        ax.plot([floor, 1.0], [y, y], color=REWEIGHTED_COLOUR, linestyle=":", linewidth=1.2)
                        ax.plot(at(estimate.value), y, "o", markerfacecolor="white", color=REWEIGHTED_COLOUR)
                    else:
                        ax.plot([at(estimate.low), at(estimate.high)], [y, y], color=REWEIGHTED_COLOUR, linewidth=2)
                        ax.plot(at(estimate.value), y, "o", color=REWEIGHTED_COLOUR)
                else:
                    ax.text(floor, y, "  not sampled" if state.raw == 0 else "  no weight", va="center",
                            ha="left", color=REWEIGHTED_COLOUR, fontstyle="italic", fontsize="small")
                if state.raw > 0:
                    ax.plot(at(state.raw), y - 0.28, "^", color=RAW_COLOUR)
                reference = state.reference
                if reference is not None and reference.value > 0:
                    ax.plot([at(reference.low), at(reference.high)], [y + 0.28, y + 0.28], color=REFERENCE_COLOUR,
                            linewidth=1.2)
                    ax.plot(at(reference.value), y + 0.28, "D", color=REFERENCE_COLOUR, markersize=4)
                ax.annotate(_state_numbers(state), (1.0, y), xycoords=("axes fraction", "data"),
                            xytext=(6, 0), textcoords="offset points", va="center", fontsize="x-small")
                ticks.append(y)
                labels.append(_state_label(state))
                y += 1.0
        ax.set_xscale("log")
        ax.set(xlim=(floor / 1.5, 1.5), ylim=(y - 0.5, -0.6), yticks=ticks, title=title)
        ax.set_yticklabels(labels, fontsize="small")
        ax.axvline(1.0, color="0.85", linewidth=0.8)
        ax.grid(axis="x", color="0.92")
    level = next((s.population.level for s in states), 0.95)
    axes[-1].set_xlabel(f"population (lines: {level:.0%} intervals"
                        + (f"; below {floor:.0e} drawn at the left end" if clipped else "") + ")")
    handles = [Line2D([], [], color=REWEIGHTED_COLOUR, marker="o", linewidth=2, label="flow, reweighted"),
               Line2D([], [], color=REWEIGHTED_COLOUR, marker="o", markerfacecolor="white", linestyle=":",
                      label=f"interval withheld (< {MIN_STATE_ESS:g} effective samples)"),
               Line2D([], [], color=RAW_COLOUR, marker="^", linestyle="none", label="flow, raw fraction")]
    if any(s.reference is not None for s in states):
        handles.append(Line2D([], [], color=REFERENCE_COLOUR, marker="D", markersize=4, linewidth=1.2,
                              label=reference_label))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small", frameon=False)
    _mark(figure, note)
    return _save(figure, path)
