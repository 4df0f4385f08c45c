"""One GPU check in five minutes: energies, flows, training, sampling and the CUDA tests.

Made for a GPU lent for a few minutes: start it once on a CUDA machine with the project
installed, then paste its tables. Stages, in this order, each in its own process:

- ``environment``: GPUs (model, memory, compute capability), driver, CUDA, cuDNN, torch,
  OpenMM and its platforms (with plugin load failures), boltzflow and its commit, the CPU.
- ``energies``: for every shipped system and the peptides of benchmarks/energy.py's
  ``--scaling`` (Ace-(Ala)9-Nme, GYDPETGTW, Ace-(Ala)19-Nme: 102, 140, 202 atoms, built at the
  start of the stage), the torch force field on the device (float64 and float32, eager and
  ``compile=True``) against OpenMM's Reference platform on the same
  conformations (largest |ΔE| in kJ/mol, |ΔF| in kJ/mol/nm), and energies + forces per second
  at batch 1,024 / 16,384 / 131,072; beside them one OpenMM CUDA (else OpenCL) context looped
  over conformations, and the CPU: torch float32 eager at batch 1,024 and one OpenMM CPU
  context (the contenders of benchmarks/energy.py).
- ``flows``: the 60-D spline flow of benchmarks/flows.py at batch 1,024 and 16,384:
  sample_and_log_prob, ML step and reverse-KL step in ms, normflows on the same device when
  it is installed, and the matrix-product floor.
- ``training``: 300 steps of the ``literature`` preset for alanine dipeptide (compiled force
  field) through ``boltzflow.training.run.train``: steps/s and target evaluations/s from the
  first logged step on (after compilation), held-out and final ESS, peak GPU memory, and the
  wall time of the preset's 250,000 steps at that rate.
- ``sampling``: what ``boltzflow sample`` does (``write_samples``) for 1,000,000 samples of the
  trained model (an untrained one if training left none), flow only and with the AIS
  correction (16 levels, HMC with 3 leapfrog steps): samples/s, ESS, peak GPU memory.
- ``correctness``: ``pytest -k cuda`` over tests/: passed, failed and skipped cases.

Time caps (``Scale.caps``, seconds; ``--cap STAGE=SECONDS`` changes one): the stage's process
group is killed at its cap. Before that the stage starts no sub-step after 90% of its cap,
gives training a time limit and stops sampling at its share of the time, and writes its log
after every sub-step, so a stage cut short keeps what it finished. A failing sub-step is
recorded with its error and the stage goes on; a failing stage does not stop the others.
The GPU caps add up to 290 s.

    python benchmarks/gpu_check.py --out gpu-check                 # on a CUDA machine
    python benchmarks/gpu_check.py --out /tmp/smoke --cpu-smoke    # every stage, tiny, on the CPU

Output: ``DIR/results.json`` (per stage: status ok | partial | failed | timeout, seconds, cap,
results, errors, skipped sub-steps), ``DIR/results.md`` (tables for benchmarks/RESULTS.md)
and ``DIR/stages/`` (each stage's log and output). Without CUDA and without ``--cpu-smoke``
it says so in one line and exits 0; otherwise it exits 1 when a stage failed or timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from timing import machine, markdown_table, measure

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("environment", "energies", "flows", "training", "sampling", "correctness")
SOFT_CAP = 0.9            # a stage starts no sub-step after this fraction of its cap
SYSTEM = "alanine-dipeptide"
TRAIN_DIR = "training-run"


@dataclass(frozen=True)
class Scale:
    """The sizes of one mode: the five-minute GPU check, or a tiny run of the same code on the CPU."""

    device: str
    caps: dict                    # stage → seconds
    energy_batches: tuple         # conformations per timed call of the torch force field
    accuracy_batch: int           # conformations compared with OpenMM's Reference platform
    loop: int                     # conformations per timed call of an OpenMM context loop
    cpu_batch: int                # batch of the CPU torch figure
    compile: bool                 # also time the force field with compile=True
    repeats: int                  # timed calls per figure (their median)
    flow: dict                    # flows.Config settings besides batch and device
    flow_batches: tuple
    training: tuple               # --set assignments on top of the literature preset
    samples: int                  # per sampling run
    sample_batch: int             # boltzflow sample's default
    ais: dict                     # AISCorrection settings
    tests: tuple                  # pytest paths in the checkout
    sequences: tuple              # peptides built for the energies stage, besides the shipped systems


GPU = Scale(device="cuda", caps={"environment": 15, "energies": 80, "flows": 40, "training": 70, "sampling": 50,
                                 "correctness": 35},
            energy_batches=(1024, 16384, 131072), accuracy_batch=64, loop=256, cpu_batch=1024, compile=True,
            repeats=5, flow={}, flow_batches=(1024, 16384), training=("steps=300",), samples=1_000_000,
            sample_batch=8192, ais={"levels": 16, "leapfrog": 3}, tests=("tests",),
            sequences=("AAAAAAAAA", "GYDPETGTW", "A" * 19))
# compile=True is left out on the CPU: inductor's C++ build takes minutes on a busy core
SMOKE = Scale(device="cpu", caps=dict.fromkeys(STAGES, 120), energy_batches=(4, 8), accuracy_batch=4, loop=4,
              cpu_batch=4, compile=False, repeats=1, flow={"layers": 2, "hidden": 16, "blocks": 1},
              flow_batches=(8, 16),
              training=("steps=3", "batch_size=8", "model.layers=2", "model.hidden=[16]", "final_samples=32",
                        "eval_batch_size=16", "log_every=1", "energy.compile=false"),
              samples=64, sample_batch=32, ais={"levels": 2, "leapfrog": 1, "warmup": 1, "warmup_size": 8},
              tests=("tests/flows/test_base.py",), sequences=("AG",))


class OutOfTime(Exception):
    """A long sub-step reached its share of the stage's time."""


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class StageLog:
    """What a stage has found so far, written to ``path`` (JSON) after every sub-step, so that a
    stage killed at its cap keeps what it finished. ``deadline``: time.time() after which the
    stage starts no more sub-steps."""

    path: Path
    deadline: float
    results: dict = field(default_factory=dict)   # sub-step → its figures
    errors: dict = field(default_factory=dict)    # sub-step → one-line error
    skipped: list = field(default_factory=list)   # sub-steps not run, or cut, for lack of time
    notes: list = field(default_factory=list)
    error: Optional[str] = None                   # the stage itself failed

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - time.time()

    def step(self, name: str, run: Callable[[], dict]) -> None:
        """Run sub-step ``name`` unless the time is up; keep its figures or its error."""
        if self.left() <= 0:
            self.skipped.append(name)
        else:
            try:
                self.results[name] = run()
            except Exception as error:  # recorded: the stage goes on with its next sub-step
                self.errors[name] = one_line(error)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.save()

    def save(self) -> None:
        from boltzflow.io import atomic_path

        record = {key: getattr(self, key) for key in ("results", "errors", "skipped", "notes", "error")}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")


def reset_peak_memory(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: str) -> Optional[float]:
    """Peak memory allocated on a CUDA ``device`` since the last reset (MiB); None on the CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if torch.device(device).type == "cuda" else None


def openmm_platforms() -> list[str]:
    import openmm

    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def median_rate(run: Callable[[], object], count: int, repeats: int) -> float:
    """``count`` items per call of ``run`` → items per second (median over ``repeats`` calls after one warm-up)."""
    return count / statistics.median(measure({"run": run}, repeats, warmup=1)["run"])


# ----------------------------------------------------------------------------- stages
def environment(scale: Scale, log: StageLog, out: Path) -> None:
    import openmm

    import boltzflow
    import flows

    def versions() -> dict:
        git = shutil.which("git")
        commit = subprocess.run([git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() if git else ""
        return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "openmm": openmm.__version__,
                "boltzflow": boltzflow.__version__, "commit": commit or None,
                "normflows": flows.normflows_version(), "machine": machine()}

    def gpus() -> dict:
        driver = None
        if shutil.which("nvidia-smi"):
            query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=10)
            driver = query.stdout.partition("\n")[0].strip() or None
        devices = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        return {"driver": driver, "devices": [
            {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}",
             "multiprocessors": p.multi_processor_count} for p in devices]}

    log.step("versions", versions)
    log.step("gpus", gpus)
    log.step("openmm", lambda: {"platforms": openmm_platforms(),
                                "plugin_load_failures": list(openmm.Platform.getPluginLoadFailures())})


def energies(scale: Scale, log: StageLog, out: Path) -> None:
    import numpy as np
    import openmm

    import energy as bench
    from boltzflow.energy.openmm_backend import OpenMMEvaluator
    from boltzflow.systems import available_systems, load_system

    names = sorted(available_systems(), key=lambda name: name != SYSTEM)  # the training system first
    prepared = {}  # name → (system, XML, accuracy conformations, Reference energies, Reference forces)
    built = {}     # name → System of a peptide built from scale.sequences

    def build() -> dict:
        built.update((system.name, system) for system in bench.built_peptides(scale.sequences, str(out / "peptides")))
        names.extend(built)
        return {name: {"atoms": system.n_atoms} for name, system in built.items()}

    log.step("build the peptides of benchmarks/energy.py --scaling", build)

    def prepare(name: str):
        if name not in prepared:
            system = built[name] if name in built else load_system(name)
            xml = openmm.XmlSerializer.serialize(system.openmm_system)
            xyz = bench.conformations(system, scale.accuracy_batch)
            prepared[name] = (system, xml, xyz, *OpenMMEvaluator(xml, "Reference").evaluate(xyz))
        return prepared[name]

    def torch_variant(name: str, dtype: torch.dtype, compile: bool) -> None:
        """Throughput at each batch of one force field, a sub-step each; the first batch also gives
        the deviations from the Reference platform on its first conformations (the same ones:
        ``conformations`` draws them in order), so a compiled force field compiles once for both."""
        contender = f"torch {scale.device} {str(dtype).removeprefix('torch.')} {'compiled' if compile else 'eager'}"
        make_energy = cache(lambda: prepare(name)[0].energy("torch", compile=compile).to(scale.device, dtype))

        def throughput(batch: int, check: bool) -> dict:
            system, _, _, reference_energies, reference_forces = prepare(name)
            energy = make_energy()
            x = torch.tensor(bench.conformations(system, batch), dtype=dtype, device=scale.device)
            run = bench.energy_and_forces(energy, x)
            row = {"system": name, "contender": contender, "batch": batch}
            if check:
                u, grad = (value[:scale.accuracy_batch].detach().double().cpu().numpy() for value in run())
                row.update(max_dE=float(np.abs(u * energy.kT - reference_energies).max()),
                           max_dF=float(np.abs(-grad * energy.kT - reference_forces).max()),
                           max_F=float(np.abs(reference_forces).max()))
            return {**row, "per_second": median_rate(run, batch, scale.repeats)}

        for i, batch in enumerate(scale.energy_batches):
            log.step(f"{name} · {contender} · batch {batch:,}" + " + accuracy" * (i == 0),
                     partial(throughput, batch, i == 0))

    def loop(name: str, platform_name: Optional[str], prefix: str = "") -> dict:
        """One OpenMM context (benchmarks/energy.py's openmm-loop), conformations set one by one."""
        if platform_name is None:
            raise RuntimeError("OpenMM has neither a CUDA nor an OpenCL platform here (see the environment "
                               "stage's plugin load failures)")
        system, xml, *_ = prepare(name)
        evaluator = OpenMMEvaluator(xml, platform_name)
        key = "Threads" if platform_name == "CPU" else "Precision"
        setting = evaluator.context.getPlatform().getPropertyValue(evaluator.context, key)
        xyz = bench.conformations(system, scale.loop)
        return {"system": name, "contender": f"{prefix}OpenMM {platform_name} ({key.lower()} {setting}), loop",
                "per_second": median_rate(lambda: evaluator.evaluate(xyz), scale.loop, scale.repeats)}

    def cpu_torch(name: str) -> dict:
        system = prepare(name)[0]
        run = bench.torch_contender(system, bench.conformations(system, scale.cpu_batch), "cpu", compile=False)
        return {"system": name, "contender": "CPU: torch float32 eager", "batch": scale.cpu_batch,
                "per_second": median_rate(run, scale.cpu_batch, scale.repeats)}

    gpu_platform = next((p for p in ("CUDA", "OpenCL") if p in openmm_platforms()), None)
    # cheap sub-steps of every system first, the compiled force fields (seconds of compilation each) last
    for name in names:
        for dtype in (torch.float64, torch.float32):
            torch_variant(name, dtype, compile=False)
    for name in names:
        if scale.device == "cuda":
            log.step(f"{name} · OpenMM GPU loop", partial(loop, name, gpu_platform))
        log.step(f"{name} · CPU torch", partial(cpu_torch, name))
        log.step(f"{name} · CPU OpenMM loop", partial(loop, name, "CPU", "CPU: "))
    if scale.compile:
        for name in names:
            for dtype in (torch.float32, torch.float64):
                torch_variant(name, dtype, compile=True)


def flows_stage(scale: Scale, log: StageLog, out: Path) -> None:
    import flows

    version = flows.normflows_version()
    log.notes.append(f"normflows {version}")
    for batch in scale.flow_batches:
        def run(batch: int = batch) -> dict:
            cfg = flows.Config(batch=batch, device=scale.device, **scale.flow)
            runs, _ = flows.build_contenders(cfg, with_normflows=version != "not installed")
            return {"batch": batch, "rows": flows.summarize(measure(runs, scale.repeats, device=scale.device))}

        log.step(f"batch {batch:,}", run)


def training_config(scale: Scale, time_limit: Optional[float] = None) -> dict:
    """The literature preset for alanine dipeptide on the scale's device, with its settings."""
    from boltzflow.training.config import resolve_config

    options = {"device": scale.device, "time_limit": f"{max(1, int(time_limit))}s" if time_limit else None}
    return resolve_config(SYSTEM, "literature", options=options, assignments=scale.training)


def training(scale: Scale, log: StageLog, out: Path) -> None:
    from boltzflow.training.config import PRESETS
    from boltzflow.training.run import train

    run_dir = out / TRAIN_DIR
    if (run_dir / "config.toml").is_file():  # an earlier check's run
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    row: dict = {}
    marks: list = []   # per step: (step, perf_counter, target evaluations so far)
    logged: list = []  # steps with a held-out evaluation

    def rates() -> dict:
        """steps/s and target evaluations/s from the first logged step on (the force field is then
        compiled for the training and the evaluation batch), else after the first tenth of the steps."""
        begin = logged[0] if logged and logged[0] < marks[-1][0] else marks[len(marks) // 10][0]
        (first, t0, e0), (last, t1, e1) = marks[begin - 1], marks[-1]
        return {"steps": last, "first_steps": first, "first_steps_seconds": t0 - start,
                "steps_per_s": (last - first) / (t1 - t0) if t1 > t0 else None,
                "evaluations_per_s": (e1 - e0) / (t1 - t0) if t1 > t0 else None}

    def on_step(step: int, record: dict) -> None:
        marks.append((step, time.perf_counter(), record.get("evaluations", 0)))
        if "eval_ess" in record:  # a logged step: keep the figures so far, in case the stage is killed
            logged.append(step)
            row.update(rates(), eval_ess=record["eval_ess"])
            log.results["training"] = dict(row)
            log.save()

    def run() -> dict:
        reset_peak_memory(scale.device)
        config = training_config(scale, time_limit=0.75 * log.left())  # the rest: final ESS, model file
        row.update(batch=config["batch_size"], eval_samples=config["eval_batch_size"])
        summary = train(config, run_dir, on_step=on_step)
        row.update(rates(), stopped=summary["stopped"], final_ess=summary.get("ess"),
                   final_samples=config["final_samples"], peak_memory_mb=peak_memory_mb(scale.device))
        full = PRESETS["literature"]["steps"]
        if row["steps_per_s"]:
            seconds = row["first_steps_seconds"] + (full - row["first_steps"]) / row["steps_per_s"]
            row.update(full_steps=full, full_hours=seconds / 3600)
        if summary["stopped"] != "done":
            log.skipped.append(f"training beyond step {row['steps']} (time limit)")
        return row

    log.step("training", run)


def sampling(scale: Scale, log: StageLog, out: Path) -> None:
    from boltzflow.analysis import kish_ess
    from boltzflow.errors import BoltzflowError
    from boltzflow.io import read_samples
    from boltzflow.runs import write_samples
    from boltzflow.training.correction import AISCorrection
    from boltzflow.training.run import build_run, load_run
    from boltzflow.training.settings import Settings

    run_dir = out / TRAIN_DIR
    held = {}

    def model():
        if "run" not in held:
            try:
                held.update(run=load_run(run_dir, scale.device), model="trained in the training stage")
            except BoltzflowError:
                held.update(run=build_run(Settings.from_config(training_config(scale))), model="untrained: training left no model")
        return held["run"]

    def draw(correction: Optional[AISCorrection], share: float) -> dict:
        """``scale.samples`` samples into a samples file, stopped when ``share`` of the time left is used."""
        deadline = time.time() + share * log.left()
        run, path, done = model(), out / "samples.h5", [0]

        def progress(count: int, total: int) -> None:
            done[0] = count
            if time.time() > deadline:
                raise OutOfTime

        reset_peak_memory(scale.device)
        start, complete = time.perf_counter(), True
        try:
            write_samples(run, path, scale.samples, batch_size=scale.sample_batch, progress=progress,
                          correction=correction)
        except OutOfTime:
            complete = False
            log.skipped.append(f"{'AIS' if correction else 'flow'} sampling beyond {done[0]:,} samples")
        warmup = correction.warmup_seconds if correction else 0.0
        seconds = time.perf_counter() - start - warmup
        row = {"model": held["model"], "samples": done[0], "requested": scale.samples, "batch": scale.sample_batch,
               "seconds": seconds, "per_second": done[0] / seconds, "peak_memory_mb": peak_memory_mb(scale.device)}
        if correction is not None:
            row.update(levels=correction.levels, leapfrog=correction.leapfrog, warmup_seconds=warmup)
        if complete:
            samples = read_samples(path, positions=False)
            row.update(ess=kish_ess(torch.from_numpy(samples.log_w)).item(), file_mb=path.stat().st_size / 1e6)
            if correction is not None:
                row["ess_flow"] = kish_ess(torch.from_numpy(samples.log_w_flow)).item()
            path.unlink()
        return row

    log.step("flow", lambda: draw(None, 0.4))
    log.step("flow + AIS", lambda: draw(AISCorrection(**scale.ais), 1.0))


def pytest_counts(output: str) -> dict:
    """Outcome counts and failing test ids from ``pytest -v`` output (complete or cut short)."""
    found = re.findall(r"^(\S+::.+?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", output, re.M)
    counts = {outcome.lower(): sum(o == outcome for _, o in found)
              for outcome in ("PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", "XPASS")}
    deselected = re.search(r"(\d+) deselected", output)
    return {**counts, "deselected": int(deselected.group(1)) if deselected else None,
            "failing": [test for test, outcome in found if outcome in ("FAILED", "ERROR")]}


def correctness(scale: Scale, log: StageLog, out: Path) -> None:
    label = "pytest -k cuda " + " ".join(scale.tests)

    def run() -> dict:
        command = [sys.executable, "-m", "pytest", "-v", "-k", "cuda", "-p", "no:cacheprovider", "--color=no",
                   *scale.tests]
        start = time.perf_counter()
        try:
            finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, log.left()))
            output, code = finished.stdout + finished.stderr, finished.returncode
        except subprocess.TimeoutExpired as error:
            output, code = error.stdout or "", None
            output = output.decode(errors="replace") if isinstance(output, bytes) else output
            log.skipped.append(f"{label}: cut at the cap")
        (out / "stages" / "pytest.log").write_text(output)
        row = {"exit_code": code, "seconds": time.perf_counter() - start, **pytest_counts(output)}
        log.results[label] = row
        if code not in (0, None):
            failing = ", ".join(row["failing"][:5]) or (output.strip().splitlines() or [""])[-1]
            raise RuntimeError(f"pytest exit code {code}: {row['failed']} failed, {row['error']} errors ({failing})")
        return row

    log.step(label, run)


STAGE_FUNCTIONS = {"environment": environment, "energies": energies, "flows": flows_stage, "training": training,
                   "sampling": sampling, "correctness": correctness}


def run_stage_here(name: str, scale: Scale, out: Path, deadline: float) -> int:
    """The body of a stage's process: run its sub-steps, keep its log; exit code 1 if it failed."""
    log = StageLog(out / "stages" / f"{name}.json", deadline)
    try:
        STAGE_FUNCTIONS[name](scale, log, out)
    except Exception as error:
        log.error = one_line(error)
        log.save()
        raise
    return 0


# ----------------------------------------------------------------------------- the parent
def run_stage(name: str, out: Path, cap: float, smoke: bool) -> dict:
    """Run stage ``name`` in its own process group, killed at ``cap`` seconds; its record."""
    stages = out / "stages"
    log_path = stages / f"{name}.json"
    log_path.unlink(missing_ok=True)
    start = time.time()
    command = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--run-stage", name,
               "--deadline", repr(start + SOFT_CAP * cap)] + (["--cpu-smoke"] if smoke else [])
    # the stages check the checkout this script is in, whichever boltzflow is installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with open(stages / f"{name}.log", "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            code = None
        finally:  # the stage at its cap, what it left behind, or everything when the check is interrupted
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    seconds = time.time() - start
    record = {"results": {}, "errors": {}, "skipped": [], "notes": [], "error": None}
    if log_path.is_file():
        record.update(json.loads(log_path.read_text()))
    if code is None:
        status, record["error"] = "timeout", f"killed at its {cap:g} s cap"
    elif code != 0:
        tail = (stages / f"{name}.log").read_text().strip().splitlines()
        status, record["error"] = "failed", record["error"] or (tail[-1] if tail else f"exit code {code}")
    else:
        status = "failed" if record["errors"] else "partial" if record["skipped"] else "ok"
    return {"status": status, "seconds": round(seconds, 1), "cap": cap, **record}


def fmt(value, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def energies_table(results: dict) -> str:
    rows: dict = {}  # (system, contender) → deviations, conformations/s by batch ("loop": one by one)
    for figures in results.values():
        if "contender" not in figures:      # the peptides' build step
            continue
        row = rows.setdefault((figures["system"], figures["contender"]), {})
        row[figures.get("batch", "loop")] = figures["per_second"]
        row.update({key: figures[key] for key in ("max_dE", "max_dF") if key in figures})
    batches = sorted({key for row in rows.values() for key in row if isinstance(key, int)})
    header = ["system", "contender", "max \\|ΔE\\| kJ/mol", "max \\|ΔF\\| kJ/mol/nm",
              *[f"conf./s at {b:,}" for b in batches], "conf./s one by one"]
    cells = [[system, contender, fmt(row.get("max_dE"), ".1e"), fmt(row.get("max_dF"), ".1e"),
              *[fmt(row.get(b)) for b in batches], fmt(row.get("loop"))]
             for (system, contender), row in rows.items()]
    return markdown_table(header, cells)


def flows_tables(results: dict) -> str:
    import flows

    parts = []
    for figures in results.values():
        header, cells = flows.table_cells(figures["rows"])
        parts.append(f"Batch {figures['batch']:,}:\n\n" + markdown_table(header, cells))
    return "\n\n".join(parts)


def training_table(results: dict) -> str:
    header = ["steps", "batch", "steps/s", "target evaluations/s", "first steps (s)", "ESS held-out",
              "ESS final", "peak GPU MiB", "full budget (h)"]
    cells = [[fmt(r.get("steps")), fmt(r.get("batch")), fmt(r.get("steps_per_s"), ".2f"),
              fmt(r.get("evaluations_per_s")), fmt(r.get("first_steps_seconds"), ".1f"),
              fmt(r.get("eval_ess"), ".2%"), fmt(r.get("final_ess"), ".2%"), fmt(r.get("peak_memory_mb")),
              fmt(r.get("full_hours"), ".1f")] for r in results.values()]
    return markdown_table(header, cells)


def sampling_table(results: dict) -> str:
    header = ["run", "model", "samples", "batch", "samples/s", "seconds", "ESS", "ESS flow alone", "peak GPU MiB"]
    cells = [[name + (f" (K={r['levels']}, L={r['leapfrog']})" if "levels" in r else ""), r["model"],
              f"{r['samples']:,} of {r['requested']:,}", fmt(r["batch"]), fmt(r["per_second"]),
              fmt(r["seconds"], ".1f"), fmt(r.get("ess"), ".2%"), fmt(r.get("ess_flow"), ".2%"),
              fmt(r["peak_memory_mb"])] for name, r in results.items()]
    return markdown_table(header, cells)


def correctness_table(results: dict) -> str:
    header = ["selection", "passed", "failed", "errors", "skipped", "deselected", "seconds", "failing"]
    cells = [[name, str(r["passed"]), str(r["failed"]), str(r["error"]), str(r["skipped"]), fmt(r["deselected"]),
              fmt(r["seconds"], ".1f"), ", ".join(r["failing"][:10]) or "—"] for name, r in results.items()]
    return markdown_table(header, cells)


TABLES = {"energies": energies_table, "flows": flows_tables, "training": training_table,
          "sampling": sampling_table, "correctness": correctness_table}


def environment_line(stage: dict) -> str:
    results = stage["results"]
    versions, gpus, openmm = (results.get(key, {}) for key in ("versions", "gpus", "openmm"))
    devices = ", ".join(f"{d['name']} ({d['memory_gib']} GiB, sm {d['capability']})" for d in gpus.get("devices", []))
    return (f"GPU: {devices or 'none'}; driver {gpus.get('driver')}, CUDA {versions.get('cuda')}; "
            f"{versions.get('machine')}; OpenMM {versions.get('openmm')} ({', '.join(openmm.get('platforms', []))}); "
            f"boltzflow {versions.get('boltzflow')} ({versions.get('commit')})")


def remarks(stage: dict) -> str:
    """The stage's error, its sub-steps' errors, what it skipped (the first few) and its notes, in one cell."""
    items = [stage["error"]] if stage["error"] else []
    failed: dict = {}  # error → the sub-steps that failed with it
    for name, error in stage["errors"].items():
        failed.setdefault(error, []).append(name)
    items += [names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "") + f": {error}"
              for error, names in failed.items()]
    skipped = stage["skipped"]
    if skipped:
        items.append(f"skipped ({len(skipped)}): " + ", ".join(skipped[:4]) + (", …" if len(skipped) > 4 else ""))
    return "; ".join(items + stage["notes"]).replace("|", "\\|") or "—"


def markdown(report: dict) -> str:
    """results.md: the stages' statuses, then a table per stage with figures."""
    stages = report["stages"]
    lines = [f"GPU check ({report['mode']}, {report['started']}, {report['seconds']:.0f} s)", ""]
    if "environment" in stages:
        lines += [environment_line(stages["environment"]), ""]
    summary = [[name, s["status"], f"{s['seconds']:.1f}", f"{s['cap']:g}", remarks(s)] for name, s in stages.items()]
    lines.append(markdown_table(["stage", "status", "seconds", "cap (s)", "errors, skipped sub-steps, notes"], summary))
    for name, stage in stages.items():
        if name in TABLES and stage["results"]:
            lines += ["", f"{name.capitalize()}:", "", TABLES[name](stage["results"])]
    return "\n".join(lines) + "\n"


def parse(argv: Optional[Sequence[str]]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, results.md and stages/")
    parser.add_argument("--cpu-smoke", action="store_true", help="run every stage tiny on the CPU (no GPU needed)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}")
    parser.add_argument("--cap", action="append", default=[], metavar="STAGE=SECONDS",
                        help="another time cap for a stage (repeatable)")
    parser.add_argument("--run-stage", choices=STAGES, help=argparse.SUPPRESS)   # inside a stage's process
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser, args = parse(argv)
    scale = SMOKE if args.cpu_smoke else GPU
    if args.run_stage:
        return run_stage_here(args.run_stage, scale, args.out, args.deadline)

    def fail(message: str):
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if not stages or set(stages) - set(STAGES):
        fail(f"--stages {args.stages!r}: choose from {', '.join(STAGES)}")
    caps = dict(scale.caps)
    for text in args.cap:
        name, _, seconds = text.partition("=")
        try:
            caps[name] = float(seconds)
        except ValueError:
            caps[name] = 0.0
        if name not in STAGES or not caps[name] > 0:
            fail(f"--cap {text!r}: write STAGE=SECONDS with a stage from {', '.join(STAGES)} and seconds > 0")
    if args.out.exists() and not args.out.is_dir():
        fail(f"--out {args.out} is a file; name a folder for the results")
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device on this machine (torch {torch.__version__}): nothing measured; "
              "run it on a CUDA machine, or add --cpu-smoke for a tiny CPU run of every stage")
        return 0
    out = args.out.resolve()
    try:
        (out / "stages").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"--out {args.out}: cannot create the folder ({error.strerror})")
    started, start = datetime.now().isoformat(timespec="seconds"), time.time()
    report = {"mode": "cpu-smoke" if args.cpu_smoke else "cuda", "started": started, "stages": {}}
    for name in stages:
        stage = report["stages"][name] = run_stage(name, out, caps[name], args.cpu_smoke)
        print(f"{name:<12} {stage['status']:<8} {stage['seconds']:6.1f} s (cap {caps[name]:g} s)"
              + (f"  {stage['error']}" if stage["error"] else ""), flush=True)
    report["seconds"] = time.time() - start
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "results.md").write_text(markdown(report))
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")
    return 1 if any(s["status"] in ("failed", "timeout") for s in report["stages"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
