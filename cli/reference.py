"""``boltzflow md`` and ``boltzflow umbrella``: reference simulations (registered in app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()


def _progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)


def md(
    system: str = typer.Argument(..., help="System name, folder or system.toml path."),
    ns: float = typer.Option(..., "--ns", help="Simulated time in nanoseconds (1 fs steps)."),
    out: Path = typer.Option(Path("md.h5"), help="Trajectory file (mdtraj HDF5); must not exist yet."),
    platform: str = typer.Option("CPU", help="OpenMM platform: CPU, CUDA, OpenCL or Reference."),
    seed: int = typer.Option(0, help="Random seed of the velocities and the Langevin noise."),
    report_interval: int = typer.Option(1000, min=1, help="Steps (fs) between saved frames."),
) -> None:
    """Run reference Langevin MD and save the trajectory; rerun the same command to resume.

    LangevinMiddleIntegrator at the system's temperature: 1 fs steps, friction 1/ps, from the minimised structure.

    Frames go to OUT.partial, a checkpoint to OUT.checkpoint; OUT appears when the run is complete.

    [bold]Example[/bold]: boltzflow md alanine-dipeptide --ns 1 --out md.h5
    """
    from boltzflow.reference import run_md
    from boltzflow.systems import load_system

    loaded = load_system(system)
    with _progress_bar() as bar:
        task = bar.add_task(f"MD of {loaded.name}", total=None)
        result = run_md(loaded, ns, out, platform=platform, seed=seed, report_interval=report_interval,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    resumed = f" (resumed at frame {result.resumed_from})" if result.resumed_from else ""
    console.print(f"wrote {result.frames} frames ({ns:g} ns) to {result.path}{resumed}")


def umbrella(
    system: str = typer.Argument(..., help="System name, folder or system.toml path."),
    cv: str = typer.Option("phi", help="Named dihedral of the system to restrain."),
    windows: int = typer.Option(36, min=2, help="Windows evenly spaced over [-180°, 180°)."),
    ps: float = typer.Option(200.0, help="Sampling time per window (ps), after an equilibration of ps/10."),
    out: Path = typer.Option(Path("umbrella"), help="Output folder; rerun with the same settings to resume."),
    platform: str = typer.Option("CPU", help="OpenMM platform: CPU, CUDA, OpenCL or Reference."),
    force_constant: Optional[float] = typer.Option(
        None, help="Restraint force constant (kJ/mol/rad²); default: restraint width half the window spacing."),
    seed: int = typer.Option(0, help="Random seed of the velocities and the Langevin noise."),
    bins: int = typer.Option(72, min=2, help="PMF bins over [-180°, 180°)."),
) -> None:
    """Umbrella sampling along a dihedral, then MBAR: PMF and ΔF between its states.

    Writes the CV time series to OUT/umbrella.h5 (resumable per window), the PMF (kT) to OUT/pmf.csv and OUT/pmf.png.

    ΔF goes to OUT/free_energies.json. Needs pymbar: pip install 'boltzflow\\[free-energy]'.

    [bold]Example[/bold]: boltzflow umbrella alanine-dipeptide --cv phi --windows 36 --ps 200 --out umbrella
    """
    from boltzflow.analysis.mbar import import_pymbar
    from boltzflow.reference import run_umbrella
    from boltzflow.systems import load_system

    import_pymbar()  # fail before simulating when pymbar is missing
    loaded = load_system(system)
    with _progress_bar() as bar:
        task = bar.add_task(f"umbrella sampling of {loaded.name} along {cv}", total=None)
        result = run_umbrella(loaded, cv=cv, windows=windows, ps=ps, out=out, force_constant=force_constant,
                              platform=platform, seed=seed, bins=bins,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title=f"{loaded.name}: free energies along {cv} (MBAR, {windows} windows × {ps:g} ps)")
    for column in ("ΔF", "kT", "± error (kT)", "95% CI (kT)", "kJ/mol"):
        table.add_column(column, justify="left" if column == "ΔF" else "right")
    for name, estimate in result.delta_f.items():
        table.add_row(name.replace("->", "→"), f"{estimate.value:.3f}", f"{estimate.error:.3f}",
                      f"[{estimate.low:.3f}, {estimate.high:.3f}]", f"{estimate.value * loaded.kT:.3f}")
    if result.delta_f:
        console.print(table)
    else:
        console.print(f"{loaded.name} has fewer than two states defined on {cv} alone: no ΔF to report")
    counts = result.free_energies.samples_per_window
    console.print(f"samples per window after decorrelation: {counts.min()}–{counts.max()}")
    for label, name in (("PMF", "pmf.csv"), ("plot", "pmf.png"), ("ΔF", "free_energies.json"),
                        ("CV samples", "umbrella.h5")):
        console.print(f"{label}: {result.files[name]}")
