"""The normflows paper's cylinder: reverse KL reaches ESS >= 90% and the exact log Z; the figure is drawn."""

from boltzflow.examples.cylinder import plot_densities, train_cylinder


def test_reverse_kl_learns_the_cylinder(tmp_path, one_torch_thread):
    result = train_cylinder(steps=300)
    assert result.ess > 0.9
    assert abs(result.log_z - result.target.log_z) < 0.02
    plot_densities(result, tmp_path / "cylinder.png", grid=40)
    assert (tmp_path / "cylinder.png").read_bytes()[:4] == b"\x89PNG"
