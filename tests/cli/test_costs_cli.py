"""What a command costs, reported whole: ``sample --ais`` counts its warm-up in the wall time and
shows the warm-up's progress; ``train`` counts its final evaluation and shows its progress. Without
a terminal (here: captured output) the progress comes as plain lines."""

import json
import re
import shutil
import time

import h5py
from typer.testing import CliRunner

from boltzflow.cli.app import app
from tests.cli.test_failures_cli import TINY, boltzflow
from tests.io.runs import one_thread, tiny_run  # noqa: F401

SLOW = 2.0  # seconds added to the phase under test


def test_sample_ais_wall_time_includes_the_warm_up_whose_progress_is_logged(tmp_path_factory, monkeypatch):
    from boltzflow.sampling.ais import AIS

    run = tmp_path_factory.mktemp("costs") / "run"
    shutil.copytree(tiny_run(tmp_path_factory), run)
    warm_up = AIS.warm_up

    def slow_warm_up(self, *args, **kwargs):
        time.sleep(SLOW)
        return warm_up(self, *args, **kwargs)

    monkeypatch.setattr(AIS, "warm_up", slow_warm_up)
    result = CliRunner().invoke(app, ["sample", str(run), "-n", "48", "--batch-size", "32", "--ais", "2",
                                      "--ais-leapfrog", "1", "--ais-warmup", "2", "--ais-warmup-size", "8"])
    assert result.exit_code == 0, result.output
    for line in ("AIS warm-up: batch 1/2", "AIS warm-up: batch 2/2", "sampling: 32/48 samples", "sampling: 48/48"):
        assert line in result.output, line
    with h5py.File(run / "samples.h5", "r") as f:
        warmup, drawing = f.attrs["ais_warmup_seconds"], f.attrs["sampling_seconds"]
    wall = float(re.search(r"wall time\s+│?\s*([\d.]+) s in all", result.output).group(1))
    assert warmup >= SLOW and wall >= warmup + drawing - 0.1  # printed to 0.1 s
    assert f"AIS warm-up {warmup:.1f} s" in result.output


def test_train_wall_time_includes_the_final_evaluation_whose_progress_is_logged(tmp_path, monkeypatch, capsys):
    import boltzflow.cli.train as cli_train

    final_report = cli_train._final_report

    def slow_final_report(*args, **kwargs):
        time.sleep(SLOW)
        return final_report(*args, **kwargs)

    monkeypatch.setattr(cli_train, "_final_report", slow_final_report)
    out = tmp_path / "run"
    code, stdout, err = boltzflow(monkeypatch, capsys, "train", "alanine-dipeptide", "--steps", "2", "--out", out,
                                  *TINY)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_seconds"] >= SLOW and summary["wall_time"] > 0
    assert "final evaluation: 64/64 samples" in stdout  # the plain line without a terminal
    total = (summary["wall_time"] + summary["final_seconds"]) / 60
    assert re.search(rf"wall time\s+│?\s*{total:.1f} min in all \(training [\d.]+ min, final evaluation", stdout)
