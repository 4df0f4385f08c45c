"""Plots are written as PNG files, atomically, without a screen."""

import math

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
