"""The Slurm templates in workflows/: they parse, share the resumable-job block with the
generated array scripts, and the chain submits dependent jobs in order."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from boltzflow.hpc import RESUMABLE, array_script, load_sweep

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
SCRIPTS = sorted(p for p in WORKFLOWS.iterdir() if p.suffix in (".sh", ".sbatch"))


def test_the_templates_exist():
    assert {p.name for p in SCRIPTS} >= {"train.sbatch", "chain.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_templates_parse(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_train_template_runs_training_resumably():
    text = (WORKFLOWS / "train.sbatch").read_text()
    assert RESUMABLE in text
    assert "#SBATCH --signal=B:USR1@" in text and "#SBATCH --requeue" in text
    assert 'run_resumable boltzflow train "$@" --out "$run" --resume' in text


def test_example_sweep_expands_into_a_valid_array_script(tmp_path):
    sweep = load_sweep(WORKFLOWS / "sweep.toml", out=tmp_path / "sweep")
    assert [r.name for r in sweep.runs][:2] == ["objective-rkl_seed-0", "objective-rkl_seed-1"]
    assert len(sweep.runs) == 6
    subprocess.run(["bash", "-n"], input=array_script(sweep), text=True, check=True)


def fake_sbatch(tmp_path, samples):
    """The environment of an sbatch that logs one line per call to sbatch.log and answers with
    job ids 101, 102, 103, …; SAMPLES draws for the chain's sample job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/bash\nprintf "%s\\n" "$*" >> sbatch.log\necho "$((100 + $(wc -l < sbatch.log)));cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SAMPLES": str(samples)}


def test_chain_submits_train_sample_and_free_energy_as_dependent_jobs(tmp_path):
    env = fake_sbatch(tmp_path, samples=500)
    proc = subprocess.run(["bash", str(WORKFLOWS / "chain.sh"), "ala", "alanine-dipeptide", "--steps", "10"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "runs/ala: train 101 -> sample 102 -> free-energy 103"
    assert (tmp_path / "runs" / "ala").is_dir()
    train, sample, analysis = (tmp_path / "sbatch.log").read_text().splitlines()
    assert train == f"--parsable --job-name=ala {WORKFLOWS / 'train.sbatch'} alanine-dipeptide --steps 10"
    assert "--dependency=afterok:101" in sample and "boltzflow sample runs/ala -n 500 --out runs/ala/samples.h5" in sample
    assert "--dependency=afterok:102" in analysis and "boltzflow free-energy runs/ala --json" in analysis


def test_chain_explains_its_arguments(tmp_path):
    proc = subprocess.run(["bash", str(WORKFLOWS / "chain.sh"), "a b", "alanine-dipeptide"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_chain_jobs_run_with_the_real_command(tmp_path, tmp_path_factory, one_torch_thread):
    """The sample and free-energy jobs the chain submits, run with the real boltzflow on a tiny
    trained run: both succeed and leave their files (a stub of boltzflow would not notice a
    wrong option)."""
    import re
    import shutil

    from tests.io.runs import tiny_run

    env = fake_sbatch(tmp_path, samples=200)
    subprocess.run(["bash", str(WORKFLOWS / "chain.sh"), "ala", "alanine-dipeptide"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    shutil.rmtree(tmp_path / "runs" / "ala")
    shutil.copytree(tiny_run(tmp_path_factory), tmp_path / "runs" / "ala")  # as if the training job had run
    for line in (tmp_path / "sbatch.log").read_text().splitlines()[1:]:
        command = re.search(r'--wrap=(.*)$', line).group(1)
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (tmp_path / "runs" / "ala" / "samples.h5").is_file()
    report = json.loads((tmp_path / "runs" / "ala" / "free-energy.json").read_text())
    assert report["n"] == 200 and "ess" in report
