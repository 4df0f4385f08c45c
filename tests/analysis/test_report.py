"""The free-energy report: state pairs, numbers identical to calling the estimators directly,
mirror images excluded or kept, comparisons with MD and umbrella references, plots, JSON."""

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from boltzflow.analysis import (eubo, kish_ess, log_normalizer_interval, marginal_kl, pareto_khat,
                                ramachandran_divergence, state_delta_f)
from boltzflow.analysis.compare import kl_divergence
from boltzflow.analysis.histograms import angle_bin_index, histogram
from boltzflow.runs.references import load_reference
from boltzflow.runs.report import (WeightedSamples, draw_weighted_samples, free_energy_report, report_plots,
                                   samples_for, state_groups, state_pairs)
from boltzflow.errors import BoltzflowError
from boltzflow.runs import write_samples
from boltzflow.reference import run_md
from boltzflow.systems import State, load_system
from tests.io.runs import one_thread, run, run_dir  # noqa: F401

N_BOOT = 200


@pytest.fixture(scope="module")
def system():
    return load_system("alanine-dipeptide")


@pytest.fixture(scope="module")
def md_reference(system, tmp_path_factory, one_openmm_thread):
    return run_md(system, 0.002, tmp_path_factory.mktemp("md") / "md.h5", report_interval=100).path


@pytest.fixture(scope="module")
def umbrella_reference(system, tmp_path_factory, one_openmm_thread):
    pytest.importorskip("pymbar")
    from boltzflow.reference import run_umbrella

    return run_umbrella(system, "phi", windows=4, ps=0.5, equilibration_ps=0.05, sample_interval=50, bins=24,
                        out=tmp_path_factory.mktemp("umbrella") / "umbrella")


def synthetic(system, n=3000, seed=0):
    """Samples with known arrays: uniform dihedrals, log-weights favouring φ < 0, 5% mirror images."""
    g = torch.Generator().manual_seed(seed)
    phi, psi = (2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64) - math.pi for _ in range(2))
    log_w = torch.randn(n, generator=g, dtype=torch.float64) - 2.0 * (phi > 0) - 700.0
    right_handed = torch.rand(n, generator=g) > 0.05
    return WeightedSamples(log_w, right_handed, {"phi": phi, "psi": psi}, system, 300.0, system.kT, "synthetic")


def test_states_split_into_groups_of_disjoint_states(system):
    assert state_groups(system) == [["phi_negative", "phi_positive"], ["C7eq_beta", "alphaR", "alphaL_C7ax"]]
    populations = {"phi_negative": 0.9, "phi_positive": 0.1, "C7eq_beta": 0.3, "alphaR": 0.6, "alphaL_C7ax": 0.1}
    declared = [("phi_negative", "phi_positive"), ("C7eq_beta", "alphaR"), ("C7eq_beta", "alphaL_C7ax")]
    assert state_pairs(system, populations) == declared  # the system's order, not the most populated first
    assert state_pairs(system, dict(populations, phi_negative=0.1, phi_positive=0.9)) == declared
    empty = dict(populations, alphaR=0.0, C7eq_beta=0.0, alphaL_C7ax=0.0)
    assert state_pairs(system, empty) == [("phi_negative", "phi_positive")]
    assert state_pairs(system, dict(empty, alphaL_C7ax=0.2)) == [("phi_negative", "phi_positive"),
                                                                  ("C7eq_beta", "alphaL_C7ax")]
    deg = math.radians
    states = {"wrapped": State("wrapped", {"psi": (deg(50), deg(-100))}),  # through ±180°
              "rest": State("rest", {"psi": (deg(-100), deg(50))}),
              "inside": State("inside", {"psi": (deg(100), deg(120))}),
              "other": State("other", {"phi": (0.0, 1.0)})}
    assert state_groups(SimpleNamespace(states=states)) == [["wrapped", "rest"], ["inside"], ["other"]]


@pytest.mark.parametrize("keep_mirror", [False, True])
def test_report_numbers_are_the_estimators(system, keep_mirror):
    samples = synthetic(system)
    report = free_energy_report(samples, keep_mirror=keep_mirror, n_boot=N_BOOT, seed=3)
    mirror = ~samples.right_handed
    exclude = None if keep_mirror else mirror
    masked = samples.log_w if keep_mirror else samples.log_w.masked_fill(mirror, -math.inf)
    assert (report.n, report.n_mirror, report.mirror_excluded) == (3000, int(mirror.sum()), not keep_mirror)
    assert report.ess == kish_ess(masked).item()
    assert report.psis.khat == pareto_khat(masked) and report.psis.n == 3000
    assert report.log_z == log_normalizer_interval(samples.log_w, exclude=exclude)
    w = torch.softmax(masked, 0)
    for name, state in system.states.items():
        assert report.populations[name].value == pytest.approx((w * state.contains(samples.cvs)).sum().item(), rel=1e-12)
    assert list(report.delta_f) == ["phi_negative -> phi_positive", "C7eq_beta -> alphaR", "C7eq_beta -> alphaL_C7ax"]
    for key, estimate in report.delta_f.items():
        a, b = key.split(" -> ")
        direct = state_delta_f(system, samples.cvs, a, b, samples.log_w, exclude, n_boot=N_BOOT,
                               generator=torch.Generator().manual_seed(3))
        assert estimate == direct
    assert report.delta_f["phi_negative -> phi_positive"].value == pytest.approx(2.0, abs=0.2)  # the −2 of log w


def test_json_has_every_number_and_no_nan(system):
    samples = synthetic(system)
    samples = WeightedSamples(samples.log_w, samples.right_handed, dict(samples.cvs, phi=-samples.cvs["phi"].abs()),
                              system, 300.0, system.kT, "all φ < 0")
    data = json.loads(json.dumps(free_energy_report(samples, n_boot=N_BOOT).as_dict(), allow_nan=False))
    assert {"system", "temperature", "kT", "source", "n", "n_mirror", "mirror_excluded", "ess", "ess_samples", "psis",
            "log_z", "populations", "delta_f", "comparison"} <= set(data)
    assert data["psis"]["verdict"] in ("good", "ok", "unreliable") and data["comparison"] is None
    assert data["delta_f"]["phi_negative -> phi_positive"]["value"] is None  # +inf: φ > 0 never sampled


def test_no_weight_left_is_a_user_error(system):
    samples = synthetic(system)
    none_right = WeightedSamples(samples.log_w, torch.zeros(3000, dtype=torch.bool), samples.cvs, system, 300.0,
                                 system.kT, "mirror images only")
    with pytest.raises(BoltzflowError, match="mirror images excluded"):
        free_energy_report(none_right)
    assert free_energy_report(none_right, keep_mirror=True, n_boot=N_BOOT).n_mirror == 3000


def test_comparison_with_an_md_trajectory(system, run, run_dir, md_reference):
    samples = draw_weighted_samples(run, 400, 128, seed=1, run_dir=run_dir)
    reference = load_reference(md_reference, system)
    assert reference.kind == "trajectory" and reference.xyz.shape == (20, 22, 3)
    report = free_energy_report(samples, reference, run, n_boot=N_BOOT)
    comparison, exclude = report.comparison, ~samples.right_handed
    stacked = [torch.stack([c["phi"], c["psi"]], 1) for c in (reference.cvs, samples.cvs)]
    kl = marginal_kl(*stacked, samples.log_w, periodic=[True, True], bins=200, exclude=exclude)
    assert comparison.marginal_kl == {"phi": kl[0].item(), "psi": kl[1].item()}
    assert comparison.bins == {"phi": 200, "psi": 200, "ramachandran": 64}
    assert comparison.ramachandran == ramachandran_divergence(reference.cvs["phi"], reference.cvs["psi"],
                                                              samples.cvs["phi"], samples.cvs["psi"], samples.log_w,
                                                              bins=64, exclude=exclude)
    for key, estimate in comparison.delta_f.items():
        a, b = key.split(" -> ")
        try:
            direct = state_delta_f(system, reference.cvs, a, b, n_boot=N_BOOT,
                                   generator=torch.Generator().manual_seed(0))
        except BoltzflowError:
            direct = None
        assert estimate == direct
        if direct is not None:
            assert comparison.delta_f_difference[key] == report.delta_f[key].value - direct.value
    with torch.no_grad():
        z, _ = run.coordinates.inverse(torch.from_numpy(reference.xyz))
        log_p, log_q = run.target.evaluate(z)["log_p"], run.flow.log_prob(z)
    assert comparison.eubo.value == pytest.approx(eubo(log_p.double(), log_q.double()).value, rel=1e-9)
    assert comparison.forward_kl.value == pytest.approx(comparison.eubo.value - report.log_z.value, rel=1e-12)
    assert comparison.eubo.value >= report.log_z.value  # EUBO ≥ log Z up to the (large) errors of a 3-step flow
    without_model = free_energy_report(samples, reference, n_boot=N_BOOT).comparison
    assert without_model.eubo is None and "run's model" in without_model.note


def test_comparison_with_umbrella_sampling(system, umbrella_reference, tmp_path):
    reference = load_reference(umbrella_reference.folder, system)
    profile = reference.profiles["phi"]
    assert reference.kind == "umbrella" and len(profile.centers) == 24
    expected = umbrella_reference.free_energies.profile.free_energy
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(profile.free_energy), finite)
    assert torch.allclose(profile.free_energy[finite], expected[finite], rtol=1e-5, atol=1e-5)
    samples = synthetic(system)
    comparison = free_energy_report(samples, reference, n_boot=N_BOOT).comparison
    histogram_q = histogram(angle_bin_index(samples.cvs["phi"], 24),
                            torch.softmax(samples.log_w.masked_fill(~samples.right_handed, -math.inf), 0), 24)
    direct = kl_divergence(torch.exp(-profile.free_energy), histogram_q).item()
    assert comparison.marginal_kl["phi"] == pytest.approx(direct)
    assert comparison.ramachandran is None and comparison.eubo is None
    # ΔF given the other way round is negated; the flow's pair reads phi_negative -> phi_positive
    folder = tmp_path / "umbrella"
    shutil.copytree(umbrella_reference.folder, folder)
    data = json.loads((folder / "free_energies.json").read_text())
    data["delta_f"] = {"phi_positive -> phi_negative": {"value": -1.5, "error": 0.2, "low": -1.9, "high": -1.1,
                                                          "level": 0.95, "method": "MBAR"}}
    (folder / "free_energies.json").write_text(json.dumps(data))
    report = free_energy_report(samples, load_reference(folder, system), n_boot=N_BOOT)
    delta = report.comparison.delta_f["phi_negative -> phi_positive"]
    assert (delta.value, delta.low, delta.high) == (1.5, 1.1, 1.9)
    assert report.comparison.delta_f_difference == {
        "phi_negative -> phi_positive": report.delta_f["phi_negative -> phi_positive"].value - 1.5}
    data["settings"]["system"] = "alanine-dipeptide-vacuum"
    (folder / "free_energies.json").write_text(json.dumps(data))
    with pytest.raises(BoltzflowError, match="umbrella sampling of alanine-dipeptide-vacuum"):
        load_reference(folder, system)


def test_a_2d_umbrella_reference_gives_its_delta_f_and_the_ramachandran_distance(system, umbrella_reference,
                                                                                  tmp_path):
    from boltzflow.analysis.compare import total_variation
    from boltzflow.analysis.histograms import plane_bin_index

    folder = tmp_path / "umbrella2d"
    shutil.copytree(umbrella_reference.folder, folder)
    data = json.loads((folder / "free_energies.json").read_text())
    data["settings"]["cv"] = "phi,psi"
    data["delta_f"] = {"phi_negative -> phi_positive": {"value": 6.0, "error": 0.1, "low": 5.7, "high": 6.3,
                                                          "level": 0.95, "method": "repeats", "n": 4}}
    (folder / "free_energies.json").write_text(json.dumps(data))
    bins = 16
    p = np.zeros((bins, bins))
    p[: bins // 2] = 1 / (bins * bins / 2)  # uniform over φ < 0
    np.savez(folder / "ramachandran.npz", probability=p)
    reference = load_reference(folder, system)
    assert reference.plane[0] == ("phi", "psi") and set(reference.profiles) == {"phi"}
    samples = synthetic(system)
    report = free_energy_report(samples, reference, n_boot=N_BOOT)
    comparison = report.comparison
    assert comparison.delta_f["phi_negative -> phi_positive"].value == 6.0
    weights = torch.softmax(samples.log_w.masked_fill(~samples.right_handed, -math.inf), 0)
    q = histogram(plane_bin_index(samples.cvs["phi"], samples.cvs["psi"], bins), weights, bins * bins)
    expected = total_variation(torch.from_numpy(p.reshape(-1)), q).item()
    assert comparison.ramachandran["total_variation"] == pytest.approx(expected, rel=1e-12)
    assert comparison.bins["ramachandran"] == bins and "PMF only" not in comparison.note


def test_plots_are_written(system, md_reference, umbrella_reference, tmp_path):
    samples = synthetic(system)
    for name, reference in (("md", md_reference), ("umbrella", umbrella_reference.folder)):
        paths = report_plots(samples, tmp_path / name, load_reference(reference, system))
        assert [p.name for p in paths] == ["ramachandran.png", "states.png", "pmf_phi.png", "pmf_psi.png"]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_samples_for_reads_the_runs_samples_file_only_from_its_model(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    drawn, loaded = samples_for(copy, n=100, batch_size=64)
    assert len(drawn.log_w) == 100 and loaded is not None and drawn.run_dir == copy
    write_samples(loaded, copy / "samples.h5", 150, run_dir=copy)
    stored, none = samples_for(copy)
    assert none is None and len(stored.log_w) == 150 and "samples.h5" in stored.source and stored.run_dir == copy
    state = torch.load(copy / "model.pt", weights_only=True)
    torch.save({k: v + 1e-3 if v.is_floating_point() else v for k, v in state.items()}, copy / "model.pt")
    with pytest.raises(BoltzflowError, match="another model"):
        samples_for(copy)
    assert samples_for(copy / "samples.h5")[0].run_dir is None  # read, but no longer tied to the run
    assert len(samples_for(copy, n=50, batch_size=64)[0].log_w) == 50


def test_bad_references_are_user_errors(system, tmp_path):
    with pytest.raises(BoltzflowError, match="no free_energies.json"):
        load_reference(tmp_path, system)
    with pytest.raises(BoltzflowError, match="not found"):
        load_reference(tmp_path / "md.h5", system)
    np.save(tmp_path / "frames.npy", np.zeros(3))
    with pytest.raises(BoltzflowError, match="cannot read"):
        load_reference(tmp_path / "frames.npy", system)


def test_a_state_on_too_few_effective_samples_has_its_interval_withheld(system):
    """φ > 0 kept on 4 samples with weight: its population and the ΔF to it keep their values,
    their intervals become the whole range, and the JSON and the table say so."""
    import io

    from rich.console import Console

    from boltzflow.cli.samples import report_table

    samples = synthetic(system)
    positive = samples.cvs["phi"] > 0
    log_w = samples.log_w.masked_fill(positive, -math.inf)
    log_w[positive.nonzero()[:4, 0]] = log_w.max()
    samples = WeightedSamples(log_w, torch.ones(3000, dtype=torch.bool), samples.cvs, system, 300.0, system.kT, "rare")
    report = free_energy_report(samples, n_boot=N_BOOT)
    rare, common = report.states["phi_positive"], report.states["phi_negative"]
    assert (rare.n, rare.enough) == (4, False) and rare.n_effective == pytest.approx(4.0)
    assert common.enough and common.n == int((~positive).sum())
    population = report.populations["phi_positive"]
    assert (population.low, population.high, population.error) == (0.0, 1.0, math.inf)
    assert "interval withheld" in population.method and population.value > 0
    assert report.populations["phi_negative"].high < 1
    assert (report.delta_f["phi_negative -> phi_positive"].low, report.delta_f["phi_negative -> phi_positive"].high) \
        == (-math.inf, math.inf)
    data = report.as_dict()
    assert data["states"]["phi_positive"] == {"n": 4, "n_effective": pytest.approx(4.0), "enough": False}
    assert data["populations"]["phi_positive"]["error"] is None
    console = Console(file=io.StringIO(), width=200)
    console.print(report_table(report))
    text = console.file.getvalue()
    assert "interval withheld  (N 4, effective 4.0)" in text and "fewer than 10 effective samples" in text
    assert "± the standard error (bootstrap over the samples; log Z: delta method), [ ] the 95% interval" in text


def test_plots_of_unreliable_weights_carry_the_verdict(system, tmp_path, monkeypatch):
    import boltzflow.analysis.plots as plots
    from boltzflow.analysis.psis import ParetoDiagnostic

    notes, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda figure, path: notes.append(figure._suptitle) or save(figure, path))
    report_plots(synthetic(system), tmp_path / "good", psis=ParetoDiagnostic(0.3, 0.7, 3000))
    assert notes == [None, None, None, None]
    report_plots(synthetic(system), tmp_path / "bad", psis=ParetoDiagnostic(0.93, 0.7, 3000))
    assert len(notes) == 8 and all("k̂ 0.93" in t.get_text() and "unreliable" in t.get_text() for t in notes[4:])


def test_only_the_shipped_system_has_its_shipped_reference(system, tmp_path):
    from boltzflow.runs import shipped_reference

    reference = shipped_reference(system)
    assert reference.kind == "umbrella" and reference.profiles == {} and reference.plane is None
    estimate = reference.delta_f["phi_negative -> phi_positive"]
    assert (estimate.value, estimate.low, estimate.high, estimate.n) == (5.8298, 5.75, 5.9097, 6)
    assert shipped_reference(load_system("alanine-dipeptide-vacuum")) is None  # none shipped
    copy = tmp_path / "mine"  # a folder of the user's with the same name: another force field, perhaps
    shutil.copytree(system.folder, copy, ignore=shutil.ignore_patterns("*.py"))
    assert shipped_reference(load_system(copy)) is None
    comparison = free_energy_report(synthetic(system), reference, n_boot=N_BOOT).comparison
    assert comparison.delta_f_difference and comparison.note == "umbrella reference: ΔF only"
