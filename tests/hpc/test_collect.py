"""Collecting results: final metrics per run, runs grouped by everything but the seed,
mean ± standard error, CSV and markdown, and the ``collect`` command."""

import json
import math
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError
from boltzflow.hpc import collect_runs, format_estimate
from boltzflow.hpc.collect import read_run

runner = CliRunner()


def make_run(folder: Path, objective: str = "rkl", seed: int = 0, ess: float = 0.5, stopped: str = "done",
             temperature: float = 300.0) -> Path:
    """A run directory as `boltzflow train` leaves it (config, metrics, summary)."""
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(
        f'system = "alanine-dipeptide"\nobjective = "{objective}"\nseed = {seed}\nlr = 0.0005\n'
        f'temperature = {temperature}\ntime_limit = ""\n\n[model]\nlayers = 8\nhidden = [128, 128]\n')
    records = [{"step": 10, "loss": 3.0, "lr": 1e-4, "eval_ess": 0.1},
               {"step": 20, "loss": 2.0, "lr": 0.0, "eval_ess": ess / 2}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 2')
    summary = {"system": "alanine-dipeptide", "objective": objective, "seed": seed, "temperature": temperature,
               "stopped": stopped, "signal": None, "step": 20, "steps": 20, "ess": ess, "evaluations": 320}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def sweep_dir(tmp_path):
    for seed, ess in enumerate([0.2, 0.3, 0.7]):
        make_run(tmp_path / "sweep" / f"objective-rkl_seed-{seed}", "rkl", seed, ess)
    for seed, ess in enumerate([0.5, 0.6]):
        make_run(tmp_path / "sweep" / f"objective-fab_seed-{seed}", "fab", seed, ess)
    make_run(tmp_path / "sweep" / "objective-fab_seed-2", "fab", 2, 0.9, stopped="signal")
    (tmp_path / "sweep" / "objective-fab_seed-3").mkdir()
    (tmp_path / "sweep" / "objective-fab_seed-3" / "sweep.json").write_text("{}")
    (tmp_path / "sweep" / "logs").mkdir()
    (tmp_path / "sweep" / "array.sbatch").write_text("#!/bin/bash\n")
    return tmp_path / "sweep"


def test_final_metrics_are_results_not_settings(tmp_path):
    run = read_run(make_run(tmp_path / "run", ess=0.4))
    assert run.settings["model.hidden"] == [128, 128] and run.finished
    # the last complete metrics line, then the summary; no settings (seed, lr, temperature), no step
    assert run.metrics == {"loss": 2.0, "eval_ess": 0.2, "ess": 0.4, "evaluations": 320.0}


def test_runs_differing_only_by_seed_are_grouped_with_mean_and_standard_error(sweep_dir):
    table, left_out = collect_runs([sweep_dir])
    assert table.labels == ("system", "objective")
    assert table.metrics == ("loss", "eval_ess", "ess", "evaluations")
    fab, rkl = table.rows  # in directory order
    assert (rkl["objective"], rkl["n"], fab["objective"], fab["n"]) == ("rkl", 3, "fab", 2)
    values = [0.2, 0.3, 0.7]
    assert rkl["ess"] == pytest.approx((statistics.mean(values), statistics.stdev(values) / math.sqrt(3)))
    assert rkl["evaluations"] == (320.0, 0.0)
    assert sorted((r.path.name, r.status) for r in left_out) == [
        ("objective-fab_seed-2", "stopped (signal) at step 20 of 20"), ("objective-fab_seed-3", "not started")]


def test_labels_show_the_settings_that_differ_between_rows(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / f"cold-{seed}", seed=seed, ess=0.5 + seed / 10)
        make_run(tmp_path / f"hot-{seed}", seed=seed, temperature=600.0)
    table, _ = collect_runs(sorted(tmp_path.iterdir()), metrics=["ess"])
    assert table.labels == ("system", "objective", "temperature")
    assert table.metrics == ("ess",)
    assert [(r["temperature"], r["n"]) for r in table.rows] == [(300.0, 2), (600.0, 2)]
    assert table.csv() == ("system,objective,temperature,n,ess_mean,ess_sem\n"
                           "alanine-dipeptide,rkl,300.0,2,0.55,0.04999999999999999\n"
                           "alanine-dipeptide,rkl,600.0,2,0.5,0.0\n")
    assert table.markdown() == ("| system | objective | temperature | n | ess |\n"
                                "|---|---|---|---:|---:|\n"
                                "| alanine-dipeptide | rkl | 300.0 | 2 | 0.550 ± 0.050 |\n"
                                "| alanine-dipeptide | rkl | 600.0 | 2 | 0.5 |\n")


@pytest.mark.parametrize("mean, sem, text", [
    (0.53217, 0.01234, "0.532 ± 0.012"),
    (3.2, 1.49, "3.2 ± 1.5"),
    (1234567.0, 12345.0, "1235000 ± 12000"),
    (0.5, None, "0.5"),
    (0.123456, 0.0, "0.1235"),
    (math.nan, 0.1, "nan"),
])
def test_estimates_are_rounded_to_the_error(mean, sem, text):
    assert format_estimate(mean, sem) == text


def test_a_single_run_has_no_error(tmp_path):
    table, _ = collect_runs([make_run(tmp_path / "run")], metrics=["ess"])
    assert table.rows[0]["n"] == 1 and table.rows[0]["ess"] == (0.5, None)
    assert table.csv().splitlines()[1] == "alanine-dipeptide,rkl,1,0.5,"
    assert table.markdown().splitlines()[2] == "| alanine-dipeptide | rkl | 1 | 0.5 |"


def test_mistakes_are_user_errors(tmp_path, sweep_dir):
    with pytest.raises(BoltzflowError, match="no such directory"):
        collect_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BoltzflowError, match="neither a run directory nor holds any"):
        collect_runs([tmp_path / "empty"])
    with pytest.raises(BoltzflowError, match="no finished run"):
        collect_runs([sweep_dir / "objective-fab_seed-2"])
    with pytest.raises(BoltzflowError, match="no run reports the metric 'essx'; available: loss, eval_ess"):
        collect_runs([sweep_dir], metrics=["essx"])


def test_collect_command_prints_markdown_and_writes_files(tmp_path, sweep_dir):
    csv_path, md_path = tmp_path / "out" / "results.csv", tmp_path / "results.md"
    result = runner.invoke(app, ["collect", str(sweep_dir), "--csv", str(csv_path), "--markdown", str(md_path),
                                 "-m", "ess", "-m", "eval_ess"])
    assert result.exit_code == 0, result.output
    assert "| system | objective | n | ess | eval_ess |" in result.stdout
    assert "| alanine-dipeptide | rkl | 3 | 0.40 ± 0.15 | 0.200 ± 0.076 |" in result.stdout
    assert "left out" in result.stderr and "objective-fab_seed-3: not started" in result.stderr.replace("\n", "")
    assert md_path.read_text() == result.stdout
    assert csv_path.read_text().splitlines()[0] == "system,objective,n,ess_mean,ess_sem,eval_ess_mean,eval_ess_sem"
