"""Plots are written as PNG files, atomically, without a screen."""

import math

import torch

from boltzflow.analysis import pmf, ramachandran
from boltzflow.analysis.plots import plot_pmf, plot_ramachandran

PNG = b"\x89PNG\r\n\x1a\n"


def test_ramachandran_and_pmf_plots_are_pngs(tmp_path):
    generator = torch.Generator().manual_seed(0)
    phi = torch.randn(5000, dtype=torch.float64, generator=generator) - 1.5
    psi = torch.remainder(torch.randn(5000, dtype=torch.float64, generator=generator) + 2.5 + math.pi,
                          2 * math.pi) - math.pi
    log_w = -0.5 * phi
    surfaces = {"flow": ramachandran(phi, psi), "reweighted": ramachandran(phi, psi, log_w),
                "reference": ramachandran(phi, psi, bins=32)}
    path = plot_ramachandran(surfaces, tmp_path / "figures" / "rama.png")
    assert path.read_bytes().startswith(PNG)
    profiles = {"flow": pmf(phi, n_boot=20), "reweighted": pmf(phi, log_w, n_boot=20)}
    path = plot_pmf(profiles, tmp_path / "pmf.png", cv="phi")
    assert path.read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figures", "pmf.png", "rama.png"]  # no temporary files
