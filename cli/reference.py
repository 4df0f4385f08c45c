"""``boltzflow md`` and ``boltzflow umbrella``: reference simulations (registered in app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from boltzflow.cli.console import Stopped, console, progress_bar, raise_stopped


def md(
    system: str = typer.Argument(..., help="System name, folder or system.toml path."),
    ns: float = typer.Option(..., "--ns", help="Simulated time in nanoseconds (1 fs steps; 2 fs with constrained bonds)."),
    out: Path = typer.Option(Path("md.h5"), help="Trajectory file (mdtraj HDF5); must not exist yet."),
    platform: str = typer.Option("CPU", help="OpenMM platform: CPU, CUDA, OpenCL or Reference."),
    seed: int = typer.Option(0, help="Random seed of the velocities and the Langevin noise."),
    threads: Optional[int] = typer.Option(None, min=0, help="CPU threads for PyTorch and OpenMM. Default: OMP_NUM_THREADS, "
                                                      "SLURM_CPUS_PER_TASK, else the CPUs this process may use; "
                                                      "1 on a node shared with other jobs."),
    report_interval: int = typer.Option(1000, min=1, help="Integration steps between saved frames (1 fs each; 2 fs with constrained bonds)."),
) -> None:
    """Run reference Langevin MD and save the trajectory; rerun the same command to resume.

    LangevinMiddleIntegrator at the system's temperature: 1 fs steps (2 fs with constrained bonds), friction 1/ps, from the minimised structure.

    Frames go to OUT.partial, a checkpoint to OUT.checkpoint; OUT appears when the run is complete.
    SIGTERM, SIGINT and SIGUSR1 stop it after the frame under way with exit code 75 (run the same
    command again to continue from the last checkpoint).

    [bold]Example[/bold]: boltzflow md alanine-dipeptide --ns 1 --out md.h5
    """
    from boltzflow.errors import EX_TEMPFAIL, storage_errors
    from boltzflow.reference import run_md
    from boltzflow.reference.md import md_paths
    from boltzflow.systems import load_system
    from boltzflow.threads import use_threads
    from boltzflow.training.trainer import on_stop_signals

    use_threads(threads)

    loaded = load_system(system)
    then = "the frames up to the last checkpoint are kept; free space or make it writable, then run the same command"
    title = f"MD of {loaded.name}"
    signals: list = []   # a stop signal is taken between two frames, never inside a write

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if signals:
            raise Stopped(signals[0])

    try:
        with on_stop_signals(signals.append), progress_bar(title, console) as bar, storage_errors(out, then):
            task = bar.add_task(title, total=None)
            result = run_md(loaded, ns, out, platform=platform, seed=seed, report_interval=report_interval,
                            progress=progress)
    except Stopped as stop:
        console.print(f"stopped by {stop}; the frames up to the last checkpoint are kept in {md_paths(out)[1]}: "
                      "run the same command again to continue", soft_wrap=True)
        raise typer.Exit(EX_TEMPFAIL) from None
    resumed = f" (resumed at frame {result.resumed_from})" if result.resumed_from else ""
    console.print(f"wrote {result.frames} frames ({ns:g} ns) to {result.path}{resumed}")


def umbrella(
    system: str = typer.Argument(..., help="System name, folder or system.toml path."),
    cv: str = typer.Option("phi", help="Named dihedral of the system to restrain, or two separated by a comma "
                                       "(phi,psi) for a 2-D grid of windows."),
    windows: int = typer.Option(36, help="Windows evenly spaced over [-180°, 180°) per CV (two CVs: a grid of "
                                         "windows × windows); at least 2."),
    ps: float = typer.Option(200.0, help="Sampling time per window (ps), after the equilibration."),
    equilibration_ps: Optional[float] = typer.Option(None, help="Discarded at the start of each window (ps); "
                                                                "default ps/10, at least 10 ps."),
    repeats: int = typer.Option(1, help="Independent repeats (seeds SEED, SEED+1, …); with 2 or more, errors "
                                        "come from their spread."),
    out: Path = typer.Option(Path("umbrella"), help="Output folder; rerun with the same settings to resume, or "
                                                    "with more --repeats to add repeats."),
    platform: str = typer.Option("CPU", help="OpenMM platform: CPU, CUDA, OpenCL or Reference."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for OpenMM (and PyTorch). Default: "
                                                     "OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else the CPUs "
                                                     "this process may use."),
    force_constant: Optional[float] = typer.Option(
        None, help="Restraint force constant on each CV (kJ/mol/rad²); default: restraint width half the window "
                   "spacing."),
    seed: int = typer.Option(0, help="Random seed of the velocities and the Langevin noise (first repeat)."),
    bins: int = typer.Option(72, min=2, help="PMF bins over [-180°, 180°) (first CV)."),
    plane_bins: int = typer.Option(64, min=2, help="Bins per axis of the reweighted 2-D histogram (two CVs)."),
) -> None:
    """Umbrella sampling along a dihedral or on a grid of two, then MBAR: PMF and ΔF between states.

    Writes the CV time series to OUT/umbrella.h5 (resumable per window), the PMF along the first CV (kT) to OUT/pmf.csv
    and OUT/pmf.png, ΔF with the state definitions, per-repeat values and cost to OUT/free_energies.json.

    With two CVs (--cv phi,psi) also the reweighted histogram of the plane, mean over repeats and per repeat, with its
    total-variation noise floor (OUT/ramachandran.npz) and its free-energy surface (OUT/ramachandran.png).

    SIGTERM, SIGINT and SIGUSR1 stop it with exit code 75 (the finished windows are kept: run the same command again
    to continue; on one CPU thread the data are then the same as if it had never stopped).

    Needs pymbar: pip install 'boltzflow\\[free-energy]'.

    [bold]Examples[/bold]:
      boltzflow umbrella alanine-dipeptide --cv phi --windows 36 --ps 200 --out umbrella
      boltzflow umbrella alanine-dipeptide --cv phi,psi --windows 12 --ps 30 --repeats 3 --out umbrella2d
    """
    from boltzflow.analysis.mbar import import_pymbar
    from boltzflow.errors import EX_TEMPFAIL, BoltzflowError
    from boltzflow.reference import run_umbrella
    from boltzflow.reference.umbrella import DATA_FILE, parse_cvs
    from boltzflow.systems import load_system
    from boltzflow.threads import use_threads
    from boltzflow.training.trainer import on_stop_signals

    import_pymbar()  # fail before simulating when pymbar is missing
    if threads is not None and (threads < 1 or platform != "CPU"):
        raise BoltzflowError(f"--threads needs the CPU platform and a positive number, got {threads} on {platform}")
    loaded = load_system(system)
    cvs = parse_cvs(loaded, cv)
    grid = f"{windows}×{windows} windows" if len(cvs) == 2 else f"{windows} windows"
    count = use_threads(threads)
    properties = {"Threads": str(count)} if platform == "CPU" else None
    try:  # a stop signal exits 75, so that Slurm requeues; the window under way is lost, the others are saved
        with on_stop_signals(raise_stopped), progress_bar(f"umbrella {','.join(cvs)}", console) as bar:
            task = bar.add_task(f"umbrella {','.join(cvs)}", total=None)
            result = run_umbrella(loaded, cv=cvs, windows=windows, ps=ps, out=out, force_constant=force_constant,
                                  platform=platform, seed=seed, equilibration_ps=equilibration_ps, bins=bins,
                                  properties=properties, repeats=repeats, plane_bins=plane_bins,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    except Stopped as stop:
        console.print(f"stopped by {stop}; the finished windows are kept in {out / DATA_FILE}: run the same "
                      "command again to continue", soft_wrap=True)
        raise typer.Exit(EX_TEMPFAIL) from None
    summary = result.summary
    title = f"{loaded.name}: free energies on {','.join(cvs)} (MBAR, {grid} × {ps:g} ps"
    title += f", {repeats} repeats)" if repeats > 1 else ")"
    table = Table(title=title)
    for column in ("ΔF", "kT", "± error (kT)", "95% CI (kT)", "kJ/mol"):
        table.add_column(column, justify="left" if column == "ΔF" else "right")
    if repeats > 1:
        table.add_column("per repeat (kT)", justify="right")
    for name, estimate in result.delta_f.items():
        row = [name.replace("->", "→"), f"{estimate.value:.3f}", f"{estimate.error:.3f}",
               f"[{estimate.low:.3f}, {estimate.high:.3f}]", f"{estimate.value * loaded.kT:.3f}"]
        if repeats > 1:
            row.append(", ".join(f"{each[name].value:.3f}" for each in result.per_repeat))
        table.add_row(*row)
    if result.delta_f:
        console.print(table)
        console.print(f"± error: {summary['uncertainty']}")
        for name, ranges in summary["states"].items():
            bounds = ", ".join(f"{c} ∈ [{lo:g}°, {hi:g}°)" for c, (lo, hi) in ranges.items())
            console.print(f"state {name}: {bounds}")
    else:
        console.print(f"{loaded.name} has fewer than two disjoint states defined on {','.join(cvs)}: no ΔF to report")
    counts = result.free_energies.samples_per_window
    thinned = " after decorrelation" if repeats == 1 else ""
    console.print(f"samples per window{thinned}: {counts.min()}–{counts.max()}")
    overlap = min(r["overlap"]["weakest_best_neighbour"] for r in summary["repeats"])
    console.print(f"weakest window's overlap with its best neighbour (MBAR overlap matrix): {overlap:.3f}")
    cost = summary["cost"]
    console.print(f"cost: {cost['simulated_ns']:.3f} ns simulated in {cost['wall_seconds']:.0f} s "
                  f"({cost.get('platform', '?')}, threads: {cost.get('threads') or 'n/a'})")
    if "ramachandran" in summary:
        plane = summary["ramachandran"]
        floor = plane["noise_floor"]
        console.print(f"Ramachandran histogram {plane['bins']}×{plane['bins']}: TV between repeats "
                      f"{floor['between_repeats']['mean']:.4f}; a perfect generator with N samples shows TV "
                      + ", ".join(f"{v:.4f} (N={int(n):,})" for n, v in floor["perfect_generator"].items()))
    for label, path in result.files.items():
        console.print(f"{label}: {path}")
