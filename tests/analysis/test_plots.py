"""Plots are written as PNG files, atomically, without a screen."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from boltzflow.analysis import pmf, ramachandran
from boltzflow.analysis.plots import cv_symbol, plot_pmf, plot_ramachandran, pmf_axis_top

PNG = b"\x89PNG\r\n\x1a\n"


def test_ramachandran_and_pmf_plots_are_pngs(tmp_path):
    generator = torch.Generator().manual_seed(0)
    phi = torch.randn(5000, dtype=torch.float64, generator=generator) - 1.5
    psi = torch.remainder(torch.randn(5000, dtype=torch.float64, generator=generator) + 2.5 + math.pi,
                          2 * math.pi) - math.pi
    log_w = -0.5 * phi
    surfaces = {"flow": ramachandran(phi, psi), "reweighted": ramachandran(phi, psi, log_w),
                "reference": ramachandran(phi, psi, bins=32)}
    path = plot_ramachandran({("phi", "psi"): surfaces}, tmp_path / "figures" / "rama.png")
    assert path.read_bytes().startswith(PNG)
    # a row per residue of a longer peptide; rows may have fewer panels than others
    rows = {("phi1", "psi1"): surfaces, ("phi2", "psi2"): {"flow": surfaces["flow"]}}
    path = plot_ramachandran(rows, tmp_path / "figures" / "rama2.png")
    assert path.read_bytes().startswith(PNG)
    profiles = {"flow": pmf(phi, n_boot=20), "reweighted": pmf(phi, log_w, n_boot=20)}
    path = plot_pmf(profiles, tmp_path / "pmf.png", cv="phi")
    assert path.read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figures", "pmf.png", "rama.png", "rama2.png"]  # no temporary files


def test_cv_symbols():
    assert [cv_symbol(n) for n in ("phi", "psi", "phi12", "psi_x", "chi1")] == ["φ", "ψ", "φ12", "psi_x", "chi1"]


def test_pmf_axis_is_not_stretched_by_a_bin_one_sample_reached():
    """A 140 kT bin (one low-weight sample) must not squash a 0-12 kT curve (issue 15)."""
    phi = torch.linspace(-3.0, 3.0, 20_000, dtype=torch.float64)
    log_w = -12 * (phi / 3) ** 2          # the curve spans 0-12 kT
    log_w[-1] = -140.0                   # one sample alone in its bin, at 140 kT
    phi[-1] = 3.1
    profile = pmf(phi, log_w, n_boot=10)
    f = profile.free_energy
    assert f[torch.isfinite(f)].max() > 100
    assert pmf_axis_top({"flow": profile}, 20.0) == 20.0
    smooth = pmf(phi[:-1], log_w[:-1], n_boot=10)
    assert 12.0 < pmf_axis_top({"flow": smooth}, 20.0) < 13.5


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, in order (they are still written)."""
    import boltzflow.analysis.plots as plots

    saved, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure) or save(figure, path))
    return saved


def rare_basin(n=4000, seed=0):
    """φ (radians) mostly near -80°, 25 samples near +57° spread over a few bins, some bins
    between them empty; log-weights with a little noise."""
    generator = torch.Generator().manual_seed(seed)
    phi = 0.4 * torch.randn(n, dtype=torch.float64, generator=generator) - 1.4
    phi[:25] = 0.3 * torch.randn(25, dtype=torch.float64, generator=generator) + 1.0
    return phi, 0.3 * torch.randn(n, dtype=torch.float64, generator=generator)


def test_pmf_lines_break_at_empty_bins_and_every_plotted_bin_has_its_band(tmp_path, figures):
    phi, log_w = rare_basin()
    profile = pmf(phi, log_w, 72, n_boot=200, generator=torch.Generator().manual_seed(1))
    f = profile.free_energy.numpy()
    sampled = np.isfinite(f)
    assert not sampled.all() and (~sampled[36:]).any() and sampled[36:].any()  # the toy has gaps in φ > 0
    plot_pmf({"flow": profile}, tmp_path / "pmf.png")
    ax = figures[-1].axes[0]
    line = ax.get_lines()[0]
    assert np.array_equal(np.isnan(line.get_ydata()), ~sampled)  # no segment across an empty bin
    boxes = {round(p.get_x() + p.get_width() / 2, 6): p for p in ax.patches}
    x = np.degrees(profile.centers.numpy())
    assert sorted(boxes) == sorted(np.round(x[sampled], 6).tolist())  # a band at every point, only there
    assert [xi for xi, p in boxes.items() if p.get_height() == 0] == [round(x[np.argmin(f)], 6)]  # F = 0 there
    for xi, fi in zip(x[sampled], f[sampled]):
        box = boxes[round(xi, 6)]
        assert box.get_y() <= fi <= box.get_y() + box.get_height()
    # the sparse basin's bootstrap is unbounded above: its boxes reach the top, hatched, and the title says so
    unbounded = [p for p in boxes.values() if p.get_hatch()]
    assert unbounded and all(p.get_y() + p.get_height() >= ax.get_ylim()[1] for p in unbounded)
    assert "hatched: unbounded above" in ax.get_title()


def test_a_band_far_below_the_curve_is_cut_at_the_axis_and_said_so(tmp_path, figures):
    """A degenerate bootstrap (a few samples with all the weight) can put a band's lower end at
    −300 kT: the axis ends BAND_FLOOR below the curve's minimum, not there."""
    from boltzflow.analysis.plots import BAND_FLOOR

    phi, log_w = rare_basin()
    profile = pmf(phi, log_w, 72, n_boot=50, generator=torch.Generator().manual_seed(1))
    deep = dataclasses.replace(profile, low=torch.where(torch.isfinite(profile.low), profile.low - 300, profile.low))
    plot_pmf({"flow": deep}, tmp_path / "deep.png")
    ax = figures[-1].axes[0]
    assert ax.get_ylim()[0] == pytest.approx(-BAND_FLOOR - 0.5)
    assert f"cut {BAND_FLOOR:g} kT below the minimum" in ax.get_title()
    plot_pmf({"flow": profile}, tmp_path / "pmf.png")
    assert "cut" not in figures[-1].axes[0].get_title()


def test_ramachandran_colours_span_the_data_and_show_their_clipping(tmp_path, figures):
    phi, log_w = rare_basin()
    psi = torch.zeros_like(phi)
    surface = ramachandran(phi, psi, log_w, bins=32)
    highest = surface.free_energy[torch.isfinite(surface.free_energy)].max().item()
    assert highest < 8
    plot_ramachandran({("phi", "psi"): {"flow": surface}}, tmp_path / "a.png")
    image = figures[-1].axes[0].images[0]
    assert image.norm.vmax == math.ceil(highest) and image.colorbar.extend == "neither"  # not a fixed 10 kT
    log_w[-1] = -20.0  # one sample alone at ~20 kT: above the 10 kT scale
    phi[-1] = 3.0
    plot_ramachandran({("phi", "psi"): {"flow": ramachandran(phi, psi, log_w, bins=32)}}, tmp_path / "b.png")
    image = figures[-1].axes[0].images[0]
    assert image.norm.vmax == 10 and image.colorbar.extend == "max"
    assert "above 10 kT in the top colour" in image.colorbar.ax.get_ylabel()


def test_a_note_is_written_on_the_figure(tmp_path, figures):
    phi, log_w = rare_basin()
    note = "PSIS k̂ 0.93 > 0.70: unreliable weights"
    plot_pmf({"flow": pmf(phi, log_w, n_boot=10)}, tmp_path / "pmf.png", note=note)
    plot_ramachandran({("phi", "psi"): {"flow": ramachandran(phi, phi, log_w)}}, tmp_path / "rama.png", note=note)
    assert [figure._suptitle.get_text() for figure in figures] == [note, note]
