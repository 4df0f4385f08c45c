"""The state-coverage figure (states.png): a panel per residue, each state's reweighted population
from the report (withheld intervals kept withheld), the flow's raw fraction and the reference's
population from its ΔF; states no draw reached are marked, and no reference is needed."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from boltzflow.analysis.estimate import Estimate
from boltzflow.analysis.plots import plot_states
from boltzflow.runs.references import TrajectoryReference, populations_from_delta_f, shipped_reference
from boltzflow.runs.report import (WeightedSamples, free_energy_report, report_plots, residue_rows, row_title,
                                   state_coverage, state_groups)
from boltzflow.systems import State, covers, load_system

N_BOOT = 100
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dipeptide():
    return load_system("alanine-dipeptide")


@pytest.fixture(scope="module")
def tetrapeptide():
    return load_system("alanine-tetrapeptide")


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, in order (they are still written)."""
    import boltzflow.analysis.plots as plots

    saved, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure) or save(figure, path))
    return saved


def weighted(system, n=3000, seed=0, unsampled=(), rare=()):
    """Uniform dihedrals and noisy log-weights; φ of each residue in ``unsampled`` kept below 0
    (its φ > 0 states get no draw), φ > 0 of each in ``rare`` left with 4 samples that have weight."""
    g = torch.Generator().manual_seed(seed)
    cvs = {name: 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64) - math.pi for name in system.dihedrals}
    for phi in unsampled:
        cvs[phi] = -cvs[phi].abs().clamp(min=1e-3)
    log_w = torch.randn(n, generator=g, dtype=torch.float64) - 1.0 * (next(iter(cvs.values())) > 0)
    for phi in rare:
        positive = cvs[phi] > 0
        log_w = log_w.masked_fill(positive, -math.inf)
        log_w[positive.nonzero()[:4, 0]] = 0.0
    right_handed = torch.rand(n, generator=g) > 0.03
    return WeightedSamples(log_w, right_handed, cvs, system, 300.0, system.kT, "synthetic")


def texts(figure) -> list:
    return [t.get_text() for ax in figure.axes for t in ax.texts]


def test_a_group_covers_the_space_only_when_its_boxes_do(dipeptide):
    states = dipeptide.states
    assert covers(states[name] for name in ("phi_negative", "phi_positive"))
    assert covers(states[name] for name in ("C7eq_beta", "alphaR", "alphaL_C7ax"))  # φ < 0 split by ψ, φ > 0 whole
    assert not covers(states[name] for name in ("C7eq_beta", "alphaL_C7ax"))  # αR missing
    deg = math.radians
    wrapped, rest = State("wrapped", {"psi": (deg(50), deg(-100))}), State("rest", {"psi": (deg(-100), deg(50))})
    assert covers([wrapped, rest]) and not covers([wrapped]) and not covers([State("in", {"psi": (1.0, 2.0)})])


def test_rows_are_residues_made_of_the_report_groups(dipeptide, tetrapeptide):
    assert residue_rows(dipeptide) == [state_groups(dipeptide)]
    assert [row_title(dipeptide, row) for row in residue_rows(dipeptide)] == ["ALA2: φ, ψ"]
    rows = residue_rows(tetrapeptide)
    assert [group for row in rows for group in row] == state_groups(tetrapeptide)  # same groups, same order
    assert [len(row) for row in rows] == [2, 2, 2]
    assert [row_title(tetrapeptide, row) for row in rows] == ["ALA2: φ1, ψ1", "ALA3: φ2, ψ2", "ALA4: φ3, ψ3"]
    for i, row in zip((1, 2, 3), rows):  # each row's states constrain that residue's dihedrals only
        assert {cv for group in row for name in group for cv in tetrapeptide.states[name].ranges} == {f"phi{i}",
                                                                                                     f"psi{i}"}
    # any CV names: groups joined through a state that constrains both of two CVs
    x_low, x_high = State("x_low", {"x": (-math.pi, 0.0)}), State("x_high", {"x": (0.0, math.pi)})
    y_low, y_high = State("y_low", {"y": (-math.pi, 0.0)}), State("y_high", {"y": (0.0, math.pi)})
    z = State("z", {"z": (0.0, 1.0)})
    system = SimpleNamespace(states={s.name: s for s in (x_low, x_high, y_low, y_high, z)})
    assert residue_rows(system) == [[["x_low", "x_high"]], [["y_low", "y_high"]], [["z"]]]
    both = State("both", {"x": (0.0, 1.0), "y": (0.0, 1.0)})
    system.states = {s.name: s for s in (x_low, x_high, y_low, y_high, both, z)}
    rows = residue_rows(system)
    assert [sorted(name for group in row for name in group) for row in rows] == [
        ["both", "x_high", "x_low", "y_high", "y_low"], ["z"]]
    assert [row_title(system, row) for row in rows] == ["x, y", "z"]


def test_reference_populations_from_delta_f_by_hand():
    """ΔF a → b = ln 2 [0, ln 4], ΔF c → a = −ln 4 (a → c = ln 4 [ln 2, ln 8]): e^(−ΔF) = 1, 1/2, 1/4."""
    delta = {"a -> b": Estimate(math.log(2), 0.1, 0.0, math.log(4), n=6),
             "c -> a": Estimate(-math.log(4), 0.1, -math.log(8), -math.log(2), n=6)}
    p = populations_from_delta_f(delta, ["a", "b", "c"])
    assert [p[s].value for s in "abc"] == pytest.approx([4 / 7, 2 / 7, 1 / 7], rel=1e-12)
    assert (p["a"].low, p["a"].high) == pytest.approx((1 / (1 + 1 + 1 / 2), 1 / (1 + 1 / 4 + 1 / 8)), rel=1e-12)
    assert (p["b"].low, p["b"].high) == pytest.approx(((1 / 4) / (1 + 1 / 4 + 1 / 2), 1 / (1 + 1 + 1 / 8)), rel=1e-12)
    assert (p["c"].low, p["c"].high) == pytest.approx(((1 / 8) / (1 + 1 + 1 / 8), (1 / 2) / (1 + 1 / 4 + 1 / 2)),
                                                      rel=1e-12)
    assert all(p[s].n == 6 and p[s].error > 0 for s in "abc")
    # two states: the interval is the ΔF interval mapped through 1 / (1 + e^ΔF)
    two = populations_from_delta_f({"a -> b": Estimate(1.0, 0.1, 0.8, 1.2)}, ["a", "b"])
    assert (two["b"].value, two["b"].low, two["b"].high) == pytest.approx(
        (1 / (1 + math.e), 1 / (1 + math.exp(1.2)), 1 / (1 + math.exp(0.8))), rel=1e-12)
    assert populations_from_delta_f(delta, ["a", "b", "d"]) is None
    # an unbounded interval end gives the whole range; a ΔF that is not a number gives nothing
    wide = populations_from_delta_f({"a -> b": Estimate(1.0, math.inf, -math.inf, math.inf)}, ["a", "b"])
    assert (wide["b"].low, wide["b"].high) == (0.0, 1.0) and wide["b"].value == pytest.approx(1 / (1 + math.e))
    assert populations_from_delta_f({"a -> b": Estimate(math.nan, math.nan, math.nan, math.nan)}, ["a", "b"]) is None


def test_the_shipped_reference_gives_populations_of_groups_that_cover_the_space(dipeptide):
    groups = state_groups(dipeptide)
    p = shipped_reference(dipeptide).state_populations(dipeptide, groups, 0.95, 0)
    # ΔF φ<0 → φ>0 = 5.8298 kT: p(φ > 0) = 1 / (1 + e^5.8298) = 1 / 341.29
    assert p["phi_positive"].value == pytest.approx(2.930e-3, rel=1e-3)
    assert p["phi_negative"].value == pytest.approx(1 - 2.930e-3, rel=1e-6)
    assert (p["phi_positive"].low, p["phi_positive"].high) == pytest.approx(
        (1 / (1 + math.exp(5.9097)), 1 / (1 + math.exp(5.75))), rel=1e-9)
    # C7eq_beta → alphaR 2.0667, → alphaL_C7ax 5.7103: weights 1, 0.12661, 0.003310 over 1.12992
    assert [p[s].value for s in ("C7eq_beta", "alphaR", "alphaL_C7ax")] == pytest.approx(
        [0.88502, 0.11205, 0.002930], rel=1e-3)
    assert sum(p[s].value for s in ("C7eq_beta", "alphaR", "alphaL_C7ax")) == pytest.approx(1.0, rel=1e-12)
    # a group that does not cover the space has no population from ΔF alone
    partial = shipped_reference(dipeptide).state_populations(dipeptide, [["C7eq_beta", "alphaL_C7ax"]], 0.95, 0)
    assert partial == {}


def test_a_trajectory_reference_gives_the_fraction_of_its_frames(dipeptide):
    phi = torch.tensor([-1.0] * 7 + [1.0] * 3, dtype=torch.float64)
    reference = TrajectoryReference(Path("md.h5"), None, {"phi": phi, "psi": torch.zeros(10, dtype=torch.float64)})
    p = reference.state_populations(dipeptide, state_groups(dipeptide), 0.95, 0)
    assert (p["phi_negative"].value, p["phi_positive"].value, p["alphaR"].value) == pytest.approx((0.7, 0.3, 0.7))


def test_dipeptide_coverage_reuses_the_report_and_shows_the_reference(dipeptide, tmp_path, figures):
    samples = weighted(dipeptide, rare=["phi"])
    reference = shipped_reference(dipeptide)
    report = free_energy_report(samples, reference, n_boot=N_BOOT, seed=2)
    rows = state_coverage(samples, report.states, report.populations, reference)
    assert list(rows) == ["ALA2: φ, ψ"]
    entries = {s.name: s for groups in rows.values() for group in groups for s in group}
    assert list(entries) == list(dipeptide.states)
    counted = samples.right_handed
    for name, entry in entries.items():
        assert entry.population is report.populations[name]  # the report's numbers, not new ones
        assert (entry.n, entry.n_effective) == (report.states[name].n, report.states[name].n_effective)
        inside = dipeptide.states[name].contains(samples.cvs)
        assert entry.raw == (inside & counted).sum().item() / counted.sum().item()
    assert entries["phi_positive"].withheld and entries["alphaL_C7ax"].withheld
    assert (entries["phi_positive"].population.low, entries["phi_positive"].population.high) == (0.0, 1.0)
    assert not entries["phi_negative"].withheld and entries["phi_negative"].population.high < 1
    assert entries["phi_positive"].reference.value == pytest.approx(2.930e-3, rel=1e-3)

    paths = report_plots(samples, tmp_path, reference, report=report)
    assert [p.name for p in paths] == ["ramachandran.png", "states.png", "pmf_phi.png", "pmf_psi.png"]
    assert paths[1].read_bytes().startswith(PNG)
    figure = figures[1]
    assert [ax.get_title() for ax in figure.axes] == ["ALA2: φ, ψ"]
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels == ["flow, reweighted", "interval withheld (< 10 effective samples)", "flow, raw fraction",
                      "umbrella reference (alanine-dipeptide)"]
    shown = texts(figure)
    assert sum("(interval withheld)" in t for t in shown) == 2 and not any("not sampled" in t for t in shown)
    assert any("ref 0.293%" in t for t in shown)  # p(φ > 0) of the reference, beside the state
    assert figure.axes[0].get_xscale() == "log"


def test_tetrapeptide_without_reference_marks_the_states_no_draw_reached(tetrapeptide, tmp_path, figures):
    samples = weighted(tetrapeptide, unsampled=["phi2"], rare=["phi3"])
    assert shipped_reference(tetrapeptide) is None
    report = free_energy_report(samples, n_boot=N_BOOT)
    rows = state_coverage(samples, report.states, report.populations)
    assert list(rows) == ["ALA2: φ1, ψ1", "ALA3: φ2, ψ2", "ALA4: φ3, ψ3"]
    entries = {s.name: s for groups in rows.values() for group in groups for s in group}
    for name in ("phi2_positive", "alphaL_C7ax2"):
        assert (entries[name].population.value, entries[name].raw, entries[name].n) == (0.0, 0.0, 0)
    assert entries["phi3_positive"].withheld and entries["phi3_positive"].raw > 0.4  # drawn often, weight on 4
    assert all(entry.reference is None for entry in entries.values())

    path = plot_states(rows, tmp_path / "states.png")
    assert path.read_bytes().startswith(PNG)
    figure = figures[0]
    assert [ax.get_title() for ax in figure.axes] == list(rows)
    shown = texts(figure)
    assert sum("not sampled" in t for t in shown) == 2
    assert sum("(interval withheld)" in t for t in shown) == 2
    assert not any("ref" in t for t in shown)
    assert len(figure.legends[0].get_texts()) == 3  # no reference entry


def test_plots_without_the_report_estimate_the_populations_as_the_report_does(dipeptide, tmp_path, monkeypatch):
    import boltzflow.analysis.plots as plots

    seen, plot = [], plots.plot_states
    monkeypatch.setattr(plots, "plot_states", lambda rows, path, **options: seen.append(rows) or plot(rows, path,
                                                                                                      **options))
    samples = weighted(dipeptide, n=600)
    report_plots(samples, tmp_path / "own", seed=1)
    report = free_energy_report(samples, seed=1)
    report_plots(samples, tmp_path / "report", report=report)
    first, second = ({s.name: s.population for groups in rows.values() for group in groups for s in group}
                     for rows in seen)
    assert first == second
    assert (tmp_path / "own" / "states.png").read_bytes().startswith(PNG)
