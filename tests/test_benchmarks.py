"""Smoke tests: the benchmarks still run (at toy size), so they cannot rot.

They check that the scripts work and print their table, not their timings.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    if str(BENCHMARKS) not in sys.path:  # the scripts import their shared `timing` module
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_flow_benchmark_runs_at_toy_size(capsys):
    pytest.importorskip("normflows")
    bench = load("flows")
    rows = bench.main(["--batch", "8", "--repeats", "1", "--warmup", "0", "--layers", "2",
                       "--hidden", "16", "--blocks", "1", "--threads", "1", "--markdown"])
    assert [r["operation"] for r in rows] == list(bench.OPERATIONS)
    for r in rows:
        for key in ("boltzflow", "normflows", "normflows-lean", "floor"):
            assert r[key] > 0
    out = capsys.readouterr().out
    assert "| reverse-KL step |" in out and "normflows-lean / boltzflow" in out


def test_flow_benchmark_models_match_in_size():
    """Both libraries get conditioners of the same depth and width (the premise of the table)."""
    pytest.importorskip("normflows")
    bench = load("flows")
    cfg = bench.Config(layers=2, hidden=16, blocks=1)
    doms = bench.domains()
    ours = bench.linear_shapes(bench.build_boltzflow(doms, cfg))
    theirs = bench.linear_shapes(bench.build_normflows(doms, cfg, unconditional=False))
    assert len(ours) == len(theirs) == 2 * (2 * cfg.blocks + 2)
    # hidden layers identical; inputs differ by the circles' (cos, sin) features, outputs by
    # boltzflow's extra rotation parameter per dimension
    assert [s for s in ours if s == (16, 16)] == [s for s in theirs if s == (16, 16)]


def test_training_benchmark_runs_at_toy_size(tmp_path, capsys):
    bench = load("train_alanine_dipeptide")
    tiny = ["steps=2", "batch_size=8", "model.layers=2", "model.hidden=[16]", "final_samples=32",
            "eval_batch_size=16", "fab.n_intermediate=1", "fab.n_leapfrog=1", "anneal.samples=16"]
    rows = bench.main(["--samples", "64", "--out", str(tmp_path), "--markdown"]
                      + [a for t in tiny for a in ("--set", t)])
    assert [r["contender"] for r in rows] == list(bench.CONTENDERS)
    assert all(r["steps"] == 2 and 0 < r["ess"] <= 1 for r in rows)
    assert "| rkl+anneal |" in capsys.readouterr().out


TINY_RUN = ["steps=2", "batch_size=8", "model.layers=2", "model.hidden=[16]", "final_samples=32",
            "eval_batch_size=16"]


def test_quality_benchmark_runs_at_toy_size(tmp_path, capsys):
    bench = load("quality")
    rows = bench.main(["--seeds", "0,1", "--samples", "64", "--out", str(tmp_path), "--markdown", "--ais", "2"]
                      + [a for t in TINY_RUN for a in ("--set", t)])
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(0 < r["ess"] <= 1 and r["evaluations"] == 16 for r in rows)
    assert all(0 < r["ais_ess"] <= 1 and r["ais_samples"] == 64 and r["ais_gradient_evaluations_per_sample"] == 2 * 4
               for r in rows)  # K (1 + L) gradients per sample: 2 levels, 3 leapfrog steps
    assert (tmp_path / "default-seed0" / "ais-2.h5").is_file()
    out = capsys.readouterr().out
    assert "| **median of 2** |" in out and "published TA-BG" in out and "| default, seed 1 + AIS 2 |" in out


def test_quality_benchmark_judges_each_residue_of_a_tetrapeptide(tmp_path, capsys):
    rows = load("quality").main(["--system", "alanine-tetrapeptide", "--seeds", "0", "--samples", "64",
                                 "--out", str(tmp_path), "--markdown"] + [a for t in TINY_RUN for a in ("--set", t)])
    assert len(rows[0]["phi_positive_by_residue"]) == 3 and rows[0]["phi_positive"] == rows[0]["phi_positive_by_residue"][0]
    out = capsys.readouterr().out
    assert "| published CMT | 1e8–2e8 | GPU | 68.6% |" in out and out.count("% / ") >= 2


def test_energy_scaling_runs_at_toy_size(capsys):
    load("energy").main(["--scaling", "--sequences", "AG", "--eager", "--batch", "4", "--loop-size", "2", "--repeats", "1",
                         "--markdown"])
    out = capsys.readouterr().out
    assert "| alanine-hexapeptide | 62 |" in out and "| ace-ag-nme | 29 |" in out


def test_weights_diagnosis_runs_at_toy_size(tmp_path, capsys):
    quality, bench = load("quality"), load("weights_diagnosis")
    quality.main(["--seeds", "0", "--samples", "16", "--out", str(tmp_path)]
                 + [a for t in TINY_RUN for a in ("--set", t)])
    result = bench.main([str(tmp_path / "default-seed0"), "-n", "256", "--top", "10", "--markdown"])
    assert 0 < result["ess"] <= 1 and len(result["unusual_coordinates"]) == 8
    assert abs(sum(s["reweighted"] for name, s in result["states"].items()
                   if name.startswith("phi_")) - 1) < 1e-9   # φ < 0 and φ > 0 split the mass
    assert "| coordinate | kind |" in capsys.readouterr().out


def test_umbrella_halves_runs_at_toy_size(tmp_path, capsys):
    pytest.importorskip("pymbar")
    from boltzflow.reference import run_umbrella
    from boltzflow.systems import load_system

    run_umbrella(load_system("alanine-dipeptide-vacuum"), cv="phi,psi", windows=3, ps=0.4, equilibration_ps=0.04,
                 sample_interval=20, force_constant=20.0, repeats=2, bins=12, plane_bins=12, out=tmp_path)
    result = load("umbrella_halves").main([str(tmp_path), "--markdown"])
    first, second, drift = result["phi_negative -> phi_positive"].values()
    assert drift[0] == pytest.approx(second[0] - first[0])  # mean of differences = difference of means
    assert "| phi_negative → phi_positive |" in capsys.readouterr().out


def test_peptide_reference_runs_at_toy_size_and_reads_as_a_reference(tmp_path, capsys):
    import numpy as np

    from boltzflow.runs.references import load_reference
    from boltzflow.systems import load_system

    theta = np.linspace(-np.pi, np.pi, 24, endpoint=False)
    np.savetxt(tmp_path / "pmf.csv", np.column_stack([np.degrees(theta), theta, 2 - 2 * np.cos(theta + 1.4)]),
               delimiter=",", header="cv_deg,cv_rad,free_energy_kT")
    argv = ["--system", "alanine-dipeptide-vacuum", "--profile", str(tmp_path / "pmf.csv"), "--order", "2",
            "--ns", "0.0004", "--equilibration-ns", "0.0001", "--repeats", "2", "--sample-interval", "10",
            "--out", str(tmp_path / "ref"), "--markdown"]
    free = load("peptide_reference").main(argv)
    assert free["per_repeat_delta_f"].keys() == free["delta_f"].keys() == {
        "phi_negative -> phi_positive", "C7eq_beta -> alphaR", "C7eq_beta -> alphaL_C7ax"}
    assert free["delta_f"]["C7eq_beta -> alphaR"]["n"] + free["delta_f"]["C7eq_beta -> alphaR"]["n_excluded"] == 2
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert [r["frames"] for r in summary["repeats"]] == [30, 30] and summary["settings"]["cv"] == "phi"
    reference = load_reference(tmp_path / "ref", load_system("alanine-dipeptide-vacuum"))
    assert reference.delta_f.keys() == free["delta_f"].keys()
    assert "| phi_negative -> phi_positive |" in capsys.readouterr().out


def test_gpu_check_runs_every_stage_tiny_on_the_cpu(tmp_path, capsys):
    bench = load("gpu_check")
    out = tmp_path / "check"
    assert bench.main(["--out", str(out), "--cpu-smoke"]) == 0
    report = json.loads((out / "results.json").read_text())
    stages = report["stages"]
    assert {name: stage["status"] for name, stage in stages.items()} == dict.fromkeys(bench.STAGES, "ok")
    accuracy = stages["energies"]["results"]["alanine-dipeptide · torch cpu float64 eager · batch 4 + accuracy"]
    assert accuracy["max_dF"] < 1e-6 * accuracy["max_F"]   # the force field matches OpenMM's Reference
    assert stages["training"]["results"]["training"]["steps"] == 3
    assert [r["samples"] for r in stages["sampling"]["results"].values()] == [64, 64]
    (tests,) = stages["correctness"]["results"].values()
    assert tests["failed"] == 0 and tests["skipped"] > 0   # the CUDA cases skip on the CPU
    markdown = (out / "results.md").read_text()
    assert "| training | ok |" in markdown and "| reverse-KL step |" in markdown
    assert "results.md" in capsys.readouterr().out


def test_gpu_check_kills_a_stage_at_its_cap_and_goes_on(tmp_path):
    bench = load("gpu_check")
    assert bench.main(["--out", str(tmp_path), "--cpu-smoke", "--stages", "flows,environment",
                       "--cap", "flows=0.01"]) == 1
    stages = json.loads((tmp_path / "results.json").read_text())["stages"]
    assert stages["flows"]["status"] == "timeout" and "0.01 s cap" in stages["flows"]["error"]
    assert stages["environment"]["status"] == "ok"


@pytest.mark.parametrize("args, message", [
    (["--stages", "flows,gpu"], "--stages 'flows,gpu': choose from"),
    (["--cap", "flows=soon"], "--cap 'flows=soon': write STAGE=SECONDS"),
    (["--out", "FILE"], "is a file; name a folder"),
])
def test_gpu_check_bad_input_is_one_line(tmp_path, capsys, args, message):
    bench = load("gpu_check")
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / a) if a == "FILE" else a for a in args]
    with pytest.raises(SystemExit) as stop:
        bench.main(["--out", str(tmp_path / "check"), *args, "--cpu-smoke"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_gpu_check_without_cuda_says_so_and_exits_0(tmp_path, capsys):
    bench = load("gpu_check")
    if bench.torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert bench.main(["--out", str(tmp_path / "check")]) == 0
    assert "no CUDA device" in capsys.readouterr().out and not (tmp_path / "check").exists()



def test_fixman_factor_runs_at_toy_size(capsys):
    result = load("fixman_factor").main(["alanine-tetrapeptide-hbonds", "--ps", "2", "--equilibration-ps", "0.2",
                                         "--markdown"])
    assert result["frames"] == 4 and result["factor_std"] > 0 and 0 < result["ess"] <= 1
    assert abs(sum(s["reweighted"] for name, s in result["states"].items() if name.startswith("phi1_")) - 1) < 1e-9
    assert "| alphaR2 |" in capsys.readouterr().out
