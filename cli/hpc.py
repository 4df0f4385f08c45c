"""The ``sweep`` and ``collect`` commands: batch work on a Slurm cluster and its results."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from boltzflow.errors import BoltzflowError
from boltzflow.cli.console import console, err_console


def sweep(
    file: Path = typer.Argument(
        ..., help="Sweep file (TOML): \\[train] settings, \\[grid] lists of values, \\[slurm] options."),
    out: Optional[Path] = typer.Option(None, help="Sweep directory. Default: the file's `out`, else runs/FILE-NAME."),
    submit: bool = typer.Option(False, "--submit", help="Submit the array job with sbatch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only write the array script; no run directories."),
) -> None:
    """Expand a grid of training runs into run directories and one Slurm array script.

    Array task i trains run i with --resume; warned before its time limit, it checkpoints and requeues itself.

    Example sweep file: workflows/sweep.toml.

    [bold]Examples[/bold]:
      boltzflow sweep workflows/sweep.toml --dry-run
      boltzflow sweep workflows/sweep.toml --submit
    """
    from boltzflow.hpc import load_sweep, submit as sbatch, write_sweep

    if submit and dry_run:
        raise BoltzflowError("--submit and --dry-run exclude each other")
    spec = load_sweep(file, out)
    script = write_sweep(spec, dry_run=dry_run)
    table = Table(title=f"{len(spec.runs)} run(s) in {spec.out}")
    table.add_column("task", justify="right")
    table.add_column("run directory")
    for i, run in enumerate(spec.runs):
        table.add_row(str(i), run.name)
    console.print(table)
    if submit:
        console.print(f"submitted array job {sbatch(script)} ({script})")
    else:
        console.print(f"submit with: sbatch {script}")


def collect(
    runs: List[Path] = typer.Argument(..., help="Run directories, or sweep directories holding them."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the table as CSV (mean and sem columns)."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the markdown table to this file."),
    metric: Optional[List[str]] = typer.Option(
        None, "--metric", "-m", help="A metric column (repeatable). Default: every final number the runs report."),
) -> None:
    """Tabulate the final metrics of finished runs, mean ± standard error over seeds.

    Runs that differ only by their seed form one row; unfinished runs are named and left out.

    Prints the markdown table; --csv and --markdown also write the table to files.

    [bold]Examples[/bold]:
      boltzflow collect runs/objectives
      boltzflow collect runs/* --csv results.csv -m ess -m eval_ess
    """
    from boltzflow.hpc import collect_runs
    from boltzflow.io import atomic_path

    table, unfinished = collect_runs(runs, metric or None)
    for run in unfinished:
        err_console.print(f"[yellow]left out[/yellow] {run.path}: {run.status}")
    text = table.markdown()
    typer.echo(text, nl=False)
    err_console.print("±: the standard error of the mean over the runs of a row (their seeds)")
    for path, content in ((csv, table.csv()), (markdown, text)):
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(content)
