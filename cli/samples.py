"""``boltzflow sample``, ``boltzflow export`` and ``boltzflow free-energy``: draw weighted
conformations from a trained run, export them as trajectories, report free energies
(registered in app.py)."""

from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.table import Table

from boltzflow.cli.console import LogLines, console, err_console, progress_bar

# samples per batch with --ais (without: 8192): at 16 levels × 3 leapfrog steps a batch of 8192 tetrapeptide
# samples took 23 min of a loaded core, a long silence in a Slurm log; 1024 report every few minutes
AIS_BATCH = 1024


@contextmanager
def _sigterm_exits() -> Iterator[Callable[[], None]]:
    """SIGTERM ends the command with SystemExit (143) at the next ``check()`` (called between
    batches), so temporary files are removed on the way out. Raising in the handler itself could
    interrupt h5py inside a write, and such a process was once seen to hang instead of exiting."""
    from boltzflow.training.trainer import on_stop_signals

    received: list = []

    def check() -> None:
        if received:
            raise SystemExit(128 + signal.Signals[received[0]])

    with on_stop_signals(received.append, signals=(signal.SIGTERM,)):
        yield check


def sample(
    run: Path = typer.Argument(..., help="Run directory (from boltzflow train)."),
    n: int = typer.Option(..., "-n", "--samples", min=1, help="Number of samples."),
    out: Optional[Path] = typer.Option(None, help="Samples file (HDF5). Default: RUN/samples.h5."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Samples per batch (bounds memory; progress is shown "
                                                               "per batch). Default: 8192, with --ais 1024."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N. Default: the run's."),
    seed: int = typer.Option(0, help="Random seed of the draws and of the resampling."),
    threads: Optional[int] = typer.Option(None, min=0, help="CPU threads for PyTorch and OpenMM. Default: OMP_NUM_THREADS, "
                                                      "SLURM_CPUS_PER_TASK, else the CPUs this process may use; "
                                                      "1 on a node shared with other jobs."),
    resample: int = typer.Option(0, min=0, help="Also store K unweighted, Boltzmann-distributed conformations."),
    ais: int = typer.Option(0, "--ais", help="Correct each flow sample by annealed importance sampling through K "
                                             "intermediate distributions (0: off; at most 10,000)."),
    ais_kernel: str = typer.Option("hmc", "--ais-kernel", help="MCMC kernel of the AIS levels: hmc or mala."),
    ais_leapfrog: int = typer.Option(4, "--ais-leapfrog", help="HMC leapfrog steps per move."),
    ais_steps: int = typer.Option(1, "--ais-steps", help="MCMC moves per AIS level."),
    ais_step_size: float = typer.Option(0.5, "--ais-step-size", help="Initial step size relative to the width per "
                                                                     "coordinate (tuned in the warm-up)."),
    ais_spacing: str = typer.Option("linear", "--ais-spacing", help="Schedule of the levels: linear or geometric."),
    ais_warmup: int = typer.Option(20, "--ais-warmup", help="Warm-up batches that tune the step sizes (weights "
                                                            "discarded)."),
    ais_warmup_size: int = typer.Option(128, "--ais-warmup-size", help="Flow samples per warm-up batch."),
    ais_precondition: str = typer.Option("curvature", "--ais-precondition", help="Step sizes per coordinate relative "
                                         "to each level's conditional width from its gradient (curvature) or to the "
                                         "flow's spread (spread)."),
    plots: Optional[Path] = typer.Option(None, help="Folder for the report's PNGs of the samples written (Ramachandran "
                                                    "plots, state coverage, PMFs), as free-energy --plots writes them; "
                                                    "adds the report's bootstraps (a minute or two per 100,000 samples)."),
) -> None:
    """Draw weighted conformations from a trained run into an HDF5 samples file.

    Stores positions (nm), internal coordinates z, log q, reduced energy u (kT), self-normalised log-weights, chirality,
    dihedrals and state labels; attributes record system, temperature, kT, units, model checksum, version and seed.

    --resample K adds K conformations drawn by systematic resampling (mirror images excluded) under resampled/.
    The file appears only when complete; an existing one is replaced. A second command writing the same file at the
    same time is refused.

    --plots DIR writes the figures of free-energy's report on the samples written, against the reference shipped with
    the system, if any: Ramachandran plots, state coverage (states.png: each state's reweighted population with its
    interval, the flow's raw fraction and the reference's population, a panel per residue) and PMFs.

    --ais K takes every flow sample through K distributions between the flow and the target (HMC or MALA on the
    torch force field). Each level's step size is tuned on --ais-warmup separate batches, whose weights are thrown
    away, and then frozen, so the weights stay unbiased. log_w holds the AIS weights, log_w_flow the flow-only ones of
    the same draws; the attributes record K, the kernel, the frozen step sizes, the acceptance per level and the
    extra evaluations per sample. Each sample costs K × (1 + steps × leapfrog) gradient evaluations (MALA: leapfrog 1).

    [bold]Examples[/bold]:
      boltzflow sample runs/ala -n 100000
      boltzflow sample runs/ala -n 1000000 --resample 10000 --device cuda --out ala.h5
      boltzflow sample runs/ala -n 100000 --ais 16 --ais-kernel hmc --ais-leapfrog 3 --out ala-ais.h5
      boltzflow sample runs/ala -n 100000 --plots figures
    """
    import torch

    from boltzflow.analysis import kish_ess
    from boltzflow.errors import storage_errors
    from boltzflow.io import check_writable, read_samples, read_toml
    from boltzflow.io.lock import file_lock
    from boltzflow.runs import write_samples
    from boltzflow.threads import use_threads
    from boltzflow.training.correction import AISCorrection
    from boltzflow.training.run import load_run

    started = time.perf_counter()
    use_threads(threads)

    # the AIS options are checked before any work (bad values: one error line, exit 2)
    correction = AISCorrection(ais, ais_kernel, ais_leapfrog, ais_steps, ais_step_size, ais_spacing, ais_warmup,
                               ais_warmup_size, ais_precondition)
    if ais == 0:
        correction = None
    elif (run / "config.toml").is_file():
        AISCorrection.check_objective(read_toml(run / "config.toml").get("objective", ""))
    # an AIS sample costs ~ais × leapfrog gradients: smaller batches keep progress lines coming
    batch_size = batch_size or (8192 if correction is None else AIS_BATCH)
    out = out or run / "samples.h5"
    check_writable(out, "samples file")
    if plots is not None:
        check_writable(plots, "plots folder", directory=True)
    # one writer per samples file, from before loading the run to the summary read back from it
    with file_lock(out, "samples file"):
        loaded = load_run(run, device)
        then = "nothing was written; free space or make it writable, then run the same command"
        log_warmup, log_sampling = LogLines(console), LogLines(console)  # each phase's first line at once
        first = "sampling" if correction is None else "AIS warm-up"
        with (progress_bar(first, console, total=max(n, ais_warmup)) as bar, _sigterm_exits() as check_stop,
              storage_errors(out, then)):
            warming = bar.add_task("AIS warm-up", total=ais_warmup) if correction is not None else None
            task = bar.add_task("sampling", total=n)

            def warmup_progress(done: int, total: int) -> None:
                check_stop()
                bar.update(warming, completed=done)
                log_warmup(f"AIS warm-up: batch {done}/{total}, {time.perf_counter() - started:.0f} s",
                           last=done == total)

            def progress(done: int, total: int) -> None:
                check_stop()
                bar.update(task, completed=done)
                log_sampling(f"sampling: {done:,}/{total:,} samples, {time.perf_counter() - started:.0f} s",
                             last=done == total)

            write_samples(loaded, out, n, batch_size=batch_size, seed=seed, resample=resample, run_dir=run,
                          progress=progress, correction=correction, warmup_progress=warmup_progress)
        wall = time.perf_counter() - started
        samples = read_samples(out, positions=False)
        table = Table(title=f"{loaded.system.name} · {n:,} samples · seed {seed}", show_header=False)
        table.add_row("ESS (Kish)", f"[bold]{100 * kish_ess(torch.from_numpy(samples.log_w)).item():.2f}%[/bold]")
        if correction is not None:
            attrs = samples.attrs
            table.add_row("ESS flow alone", f"{100 * kish_ess(torch.from_numpy(samples.log_w_flow)).item():.2f}% "
                                            "(same draws, before AIS)")
            acceptance = attrs["ais_acceptance"]
            table.add_row("AIS", f"{ais} levels, {ais_kernel}; "
                                 f"acceptance {acceptance.min():.2f}–{acceptance.max():.2f}")
            table.add_row("gradient evaluations", f"{attrs['ais_gradient_evaluations_per_sample']} per sample "
                                                  f"(+ {attrs['ais_warmup_evaluations']:,} target evaluations in the "
                                                  "warm-up)")
        drawing = samples.attrs["sampling_seconds"]
        warmup = f"AIS warm-up {samples.attrs['ais_warmup_seconds']:.1f} s, " if correction is not None else ""
        table.add_row("wall time", f"{wall:.1f} s in all ({warmup}drawing {drawing:.1f} s: "
                                   f"{1e3 * drawing / n:.3f} ms per sample)")
        mirror = ~samples.right_handed
        table.add_row("mirror images", f"{mirror.sum():,} ({100 * mirror.mean():.2f}%)")
        if resample:
            table.add_row("resampled", f"{resample:,} conformations (resampled/)")
        table.add_row("model", f"{samples.attrs['model_file']} (sha256 {samples.attrs['model_sha256'][:12]}…)")
        table.add_row("samples file", f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
        console.print(table)
        if plots is not None:
            for path in _sample_plots(out, plots, seed):
                console.print(f"plot: {path}")


def _sample_plots(samples_file: Path, folder: Path, seed: int) -> list:
    """The report's figures of a samples file just written (mirror images excluded), against the
    system's shipped reference, if any; its numbers are free-energy's for the same file and seed."""
    from boltzflow.errors import storage_errors
    from boltzflow.runs import free_energy_report, report_plots, shipped_reference
    from boltzflow.runs.report import load_weighted_samples

    samples = load_weighted_samples(samples_file)
    reference = shipped_reference(samples.system)
    report = free_energy_report(samples, reference, seed=seed)
    with storage_errors(folder, f"the samples are in {samples_file}; free space or make it writable, then: "
                                f"boltzflow free-energy {samples_file} --plots {folder}"):
        return report_plots(samples, folder, reference, seed=seed, report=report)


def export(
    samples: Path = typer.Argument(..., help="Samples file (from boltzflow sample)."),
    format: Optional[str] = typer.Option(None, "--format", help="dcd, xtc, pdb or h5. Default: from --out's suffix."),
    resampled: bool = typer.Option(False, "--resampled", help="Export the resampled (unweighted) conformations."),
    out: Optional[Path] = typer.Option(None, help="Trajectory file. Default: beside SAMPLES, e.g. samples.dcd."),
) -> None:
    """Write the conformations of a samples file as a trajectory MD tools read (through mdtraj).

    The topology is the system's. Weighted samples are not Boltzmann-distributed as they are: their importance weights
    are written beside the trajectory (e.g. samples.weights.txt, one per frame, summing to 1; mirror images 0).
    export --resampled writes conformations that are Boltzmann-distributed as they are. h5 is mdtraj's HDF5 format.

    [bold]Examples[/bold]:
      boltzflow export runs/ala/samples.h5 --format dcd
      boltzflow export runs/ala/samples.h5 --resampled --out boltzmann.xtc
    """
    from boltzflow.errors import storage_errors
    from boltzflow.io import check_writable
    from boltzflow.runs import export_samples
    from boltzflow.runs.export import WITHOUT_TOPOLOGY, topology_file, weights_file

    if out is not None:
        check_writable(out, "trajectory file")
    with storage_errors(out or samples.parent, "free space or make it writable, then run the same command"):
        path = export_samples(samples, out, format, resampled)
    console.print(f"wrote {path}")
    if path.suffix.lstrip(".") in WITHOUT_TOPOLOGY:
        console.print(f"its topology: {topology_file(path)} (e.g. mdtraj.load('{path}', top='{topology_file(path)}'))",
                      soft_wrap=True)
    if not resampled:
        console.print(f"its weights: {weights_file(path)} (importance weights, one per frame, summing to 1: the "
                      "frames are not Boltzmann-distributed without them; --resampled exports frames that are)",
                      soft_wrap=True)


def _estimate(e) -> str:
    if e is None:
        return "—"
    return f"{e.value:.3f} ± {e.error:.3f}  [{e.low:.3f}, {e.high:.3f}]"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%" if fraction >= 1e-4 or fraction == 0 else f"{100 * fraction:.1e}%"


def report_table(report) -> Table:
    """The free-energy report as a table; when PSIS k̂ says the weights are unreliable, every
    number derived from them says so where it is printed. Each population shows the samples in
    its state and their effective number; an interval resting on too few is shown as withheld."""
    from boltzflow.analysis import MIN_STATE_ESS

    table = Table(title=f"{report.system} at {report.temperature:g} K · free energies in kT "
                        f"(1 kT = {report.kT:.3f} kJ/mol)", show_header=False)
    table.add_row("samples", report.source)
    mirror = "excluded" if report.mirror_excluded else "kept"
    table.add_row("N", f"{report.n:,} ({report.n_mirror:,} mirror images, {mirror})")
    table.add_row("ESS (Kish)", f"[bold]{100 * report.ess:.2f}%[/bold] (≈ {report.ess * report.n:,.0f} samples)")
    colour = {"good": "green", "ok": "yellow", "unreliable": "red"}[report.psis.verdict]
    table.add_row("PSIS k̂", f"{report.psis.khat:.3f} [{colour}]{report.psis.verdict}[/{colour}] "
                            f"(threshold {report.psis.threshold:.3f} for this N)")
    caveat = "  [red](k̂: unreliable)[/red]" if report.psis.verdict == "unreliable" else ""
    table.add_row(f"log Z ({report.log_z.level:.0%} CI)", _estimate(report.log_z) + caveat)
    withheld = "[red]interval withheld[/red]"
    for name, e in report.populations.items():
        state = report.states[name]
        interval = f"[{_percent(e.low)}, {_percent(e.high)}]" if state.enough else withheld
        table.add_row(f"population {name}", f"{_percent(e.value)}  {interval}  (N {state.n:,}, effective "
                                            f"{state.n_effective:,.1f}){caveat}")
    for key, e in report.delta_f.items():
        enough = all(report.states[name].enough for name in key.split(" -> "))
        shown = _estimate(e) if enough else f"{e.value:.3f}  {withheld}"
        known = report.comparison.delta_f.get(key) if report.comparison is not None else None
        beside = f"; reference {known.value:.3f} [{known.low:.3f}, {known.high:.3f}]" if known is not None else ""
        table.add_row(f"ΔF {key.replace('->', '→')}", f"{shown}  ({e.value * report.kT:.2f} kJ/mol){caveat}{beside}")
    if not all(state.enough for state in report.states.values()):
        table.add_row("withheld", f"a state with fewer than {MIN_STATE_ESS:g} effective samples: its weight rests on "
                                  "a handful of draws, and resampling them cannot show what they miss; draw more "
                                  "samples or correct them (boltzflow sample --ais)")
    table.add_row("±, [ ]", f"± the standard error (bootstrap over the samples; log Z: delta method), "
                            f"[ ] the {report.log_z.level:.0%} interval")
    return table


def _comparison_table(comparison) -> Table:
    table = Table(title=f"flow vs reference {comparison.path}", show_header=False)
    for cv, value in comparison.marginal_kl.items():
        table.add_row(f"KL {cv} marginal ({comparison.bins[cv]} bins)", f"{value:.4f}")
    if comparison.ramachandran is not None:
        bins = comparison.bins["ramachandran"]
        table.add_row(f"Ramachandran TV ({bins}×{bins})", f"{comparison.ramachandran['total_variation']:.4f}")
        table.add_row(f"Ramachandran KL ({bins}×{bins})", f"{comparison.ramachandran['kl']:.4f}")
    for key, e in comparison.delta_f.items():
        difference = comparison.delta_f_difference[key]
        shown = "—" if difference is None else f"{difference:+.3f}"
        table.add_row(f"ΔF {key.replace('->', '→')} reference", f"{_estimate(e)}  (flow − reference {shown})")
    if comparison.eubo is not None:
        table.add_row("EUBO", _estimate(comparison.eubo))
        table.add_row("forward KL", _estimate(comparison.forward_kl))
    if comparison.note:
        table.add_row("note", comparison.note)
    methods = sorted({e.method for e in comparison.delta_f.values()})
    if methods:
        table.add_row("±, [ ]", f"reference ΔF: ± its standard error, [ ] its interval ({'; '.join(methods)})")
    return table


def free_energy(
    source: Path = typer.Argument(..., help="Run directory or samples file."),
    reference: Optional[Path] = typer.Option(None, help="md.h5 (boltzflow md), any trajectory mdtraj reads, or a "
                                                        "boltzflow umbrella folder. Default: the reference shipped "
                                                        "with the system, if any (alanine-dipeptide: its ΔF)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write every number as JSON to this file; "
                                                                "'-' prints it instead of the tables."),
    plots: Optional[Path] = typer.Option(None, help="Folder for PNGs: Ramachandran plots, state coverage and PMFs."),
    n: Optional[int] = typer.Option(None, "-n", "--samples", min=1,
                                    help="Draw this many samples from the run. Default: RUN/samples.h5, else 100,000."),
    batch_size: int = typer.Option(8192, min=1, help="Samples per batch when drawing."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N. Default: the run's."),
    seed: int = typer.Option(0, help="Random seed of the draws and of the bootstrap."),
    threads: Optional[int] = typer.Option(None, min=0, help="CPU threads for PyTorch and OpenMM. Default: OMP_NUM_THREADS, "
                                                      "SLURM_CPUS_PER_TASK, else the CPUs this process may use; "
                                                      "1 on a node shared with other jobs."),
    keep_mirror: bool = typer.Option(False, "--keep-mirror", help="Keep mirror images (wrong chirality) in the "
                                                                  "estimates instead of giving them weight 0."),
) -> None:
    """Free energies from a trained flow: ESS, PSIS k̂, log Z, state populations and ΔF with confidence intervals.

    From a run directory, reads RUN/samples.h5 when present (it must come from the run's current model) unless -n is
    given; otherwise draws -n samples (default 100,000) without storing them. Mirror images are reported and excluded.

    Each ΔF is shown beside the reference's. Without --reference that is the one shipped with the system, if any
    (alanine-dipeptide: ΔF from 2-D umbrella sampling, 6 repeats, in benchmarks/RESULTS.md).

    --reference adds histogram KLs of the dihedral marginals (200 bins) and the Ramachandran plane (64×64), ΔF of the
    reference and, for trajectories with the run's model, EUBO and forward KL at the reference conformations.

    [bold]Examples[/bold]:
      boltzflow free-energy runs/ala
      boltzflow free-energy runs/ala/samples.h5 --reference md.h5 --plots figures --json report.json
      boltzflow free-energy runs/ala -n 200000 --reference umbrella --json -
    """
    from boltzflow.errors import storage_errors
    from boltzflow.runs import free_energy_report, load_reference, report_plots, samples_for, shipped_reference
    from boltzflow.io import atomic_path, check_writable
    from boltzflow.threads import use_threads
    from boltzflow.training.run import load_run

    use_threads(threads)
    if json_out not in (None, "-"):
        check_writable(json_out, "JSON file")
    if plots is not None:
        check_writable(plots, "plots folder", directory=True)

    quiet = json_out == "-"
    with progress_bar("sampling", err_console if quiet else console, total=n) as bar:
        task = bar.add_task("sampling", total=n)
        samples, run = samples_for(source, n, batch_size, device, seed,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    ref = load_reference(reference, samples.system) if reference is not None else shipped_reference(samples.system)
    if ref is not None and ref.kind == "trajectory" and run is None and samples.run_dir is not None:
        run = load_run(samples.run_dir, device)
    report = free_energy_report(samples, ref, run, keep_mirror, seed=seed)
    then = "free space or make it writable, then run the same command"
    written = []
    if plots is not None:
        with storage_errors(plots, then):
            written = report_plots(samples, plots, ref, keep_mirror, seed=seed, report=report)
    data = {**report.as_dict(), "plots": [str(p) for p in written]}
    text = json.dumps(data, indent=1)
    if quiet:
        sys.stdout.write(text + "\n")
        return
    console.print(report_table(report))
    if report.comparison is not None:
        console.print(_comparison_table(report.comparison))
    if json_out is not None:
        with storage_errors(json_out, then), atomic_path(json_out) as tmp:
            tmp.write_text(text + "\n")
        console.print(f"JSON: {json_out}")
    for path in written:
        console.print(f"plot: {path}")
