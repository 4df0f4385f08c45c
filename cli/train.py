"""``boltzflow train``: train a Boltzmann generator for a molecular system into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from boltzflow.cli.console import LogLines, Stopped, console, progress_bar, raise_stopped

if TYPE_CHECKING:
    from boltzflow.training.settings import Settings


AIS_HINT_BELOW = 0.5  # an ESS under this gets the `boltzflow sample --ais` command that improves it


def _default_out(system: str, objective: str, seed: int) -> Path:
    path = Path(system)
    name = path.parent.name if path.suffix == ".toml" else path.name
    return Path("runs") / f"{name}-{objective}-seed{seed}"


def _summary_table(summary: dict, out: Path) -> Table:
    table = Table(title=f"{summary['system']} · {summary['objective']} · seed {summary['seed']}", show_header=False)
    table.add_row("stopped", f"{summary['stopped']} at step {summary['step']:,} of {summary['steps']:,}")
    table.add_row("target evaluations", f"{summary['evaluations']:,}")
    training, final = summary["wall_time"], summary["final_seconds"]
    table.add_row("wall time", f"{(training + final) / 60:.1f} min in all (training {training / 60:.1f} min, final "
                               f"evaluation {final / 60:.1f} min)" if summary["stopped"] == "done" else
                               f"{training / 60:.1f} min of training")
    if summary["skipped"]:
        table.add_row("skipped steps", f"{summary['skipped']} (non-finite loss or gradient)")
    table.add_row("run directory", str(out))
    return table


def train(
    system: str = typer.Argument(..., help="System name (see boltzflow systems), folder or system.toml."),
    objective: Optional[str] = typer.Option(None, help="rkl (reverse KL), ml (data), snf or fab. Default: rkl."),
    steps: Optional[int] = typer.Option(None, min=1, help="Training steps."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Samples per step."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (Adam, cosine decay)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any settings (see config.toml of a run)."),
    preset: str = typer.Option("default", help="default (about 10 min on two CPU cores), cpu-hour (about an hour on one CPU core) or literature (published budget, for a GPU)."),
    out: Optional[Path] = typer.Option(None, help="Run directory. Default: runs/SYSTEM-OBJECTIVE-seedS."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N. Default: cpu."),
    seed: Optional[int] = typer.Option(None, help="Random seed. Default: 0."),
    threads: Optional[int] = typer.Option(None, min=0, help="CPU threads for PyTorch and OpenMM. Default: "
                                                            "OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else the CPUs this "
                                                            "process may use; 1 on a node shared with other jobs."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint (starts it if none)."),
    time_limit: Optional[str] = typer.Option(None, help="Stop cleanly with a checkpoint before this wall time, e.g. 3h50m."),
    assignments: list[str] = typer.Option([], "--set", help="Any setting as KEY=VALUE, e.g. --set fab.n_intermediate=8."),
) -> None:
    """Train a flow to the Boltzmann distribution of a molecular system.

    Writes OUT/config.toml (the resolved settings), metrics.jsonl, checkpoints/last.pt, model.pt and summary.json.

    SIGTERM, SIGINT and SIGUSR1 stop with a checkpoint; so does --time-limit. Exit code 0: finished; 75: stopped early, run again with --resume.

    Started by torchrun or srun as several processes, they train together (data parallel, gloo on the CPU, NCCL on CUDA with --device cuda); --batch-size is the total over the processes; rank 0 prints and writes OUT.

    [bold]Examples[/bold]:
      boltzflow train alanine-dipeptide
      boltzflow train alanine-dipeptide --objective fab --steps 20000 --out runs/fab
      boltzflow train alanine-dipeptide --set anneal.start=1200 --time-limit 3h50m --resume --out runs/ta
      torchrun --nproc-per-node 2 -m boltzflow.cli.app train alanine-dipeptide --batch-size 512
    """
    from boltzflow.training.run import EARLY_STOP_EXIT_CODE
    from boltzflow.training.trainer import on_stop_signals

    # a stop signal at any moment ends the command with 75 (requeue, then --resume); inside the
    # training loop the trainer takes the signals over and writes a checkpoint first
    stopped = {"hint": f"run the same command again with --resume{'' if out else ' --out RUN'}"}
    try:
        with on_stop_signals(raise_stopped):
            _train(system, objective, steps, batch_size, lr, config, preset, out, device, seed, threads, resume,
                   time_limit, assignments, stopped)
    except Stopped as stop:
        console.print(f"stopped by {stop} before training finished or while evaluating; {stopped['hint']}",
                      soft_wrap=True)
        raise typer.Exit(EARLY_STOP_EXIT_CODE) from None


def _train(system: str, objective: Optional[str], steps: Optional[int], batch_size: Optional[int],
           lr: Optional[float], config: Optional[Path], preset: str, out: Optional[Path], device: Optional[str],
           seed: Optional[int], threads: Optional[int], resume: bool, time_limit: Optional[str],
           assignments: list[str], stopped: dict) -> None:
    """The body of ``boltzflow train``; ``stopped['hint']`` is set to the resume command."""
    from boltzflow.errors import storage_errors
    from boltzflow.io import check_writable
    from boltzflow.systems import system_file
    from boltzflow.threads import use_threads
    from boltzflow.training.config import resolve_config
    from boltzflow.training.distributed import environment
    from boltzflow.training.run import EARLY_STOP_EXIT_CODE, check_run_dir, device_of
    from boltzflow.training.run import train as train_run
    from boltzflow.training.settings import Settings

    options = {"objective": objective, "steps": steps, "batch_size": batch_size, "lr": lr, "device": device,
               "seed": seed, "time_limit": time_limit, "threads": threads}
    # --resume continues the run as it was configured: its config.toml, then what is given again
    saved = out is not None and resume and (out / "config.toml").is_file()
    resolved = resolve_config(system, preset, config, options, assignments, run_dir=out if saved else None)
    settings = Settings.from_config(resolved)
    system_file(settings.system)  # an unknown system fails here, before anything is announced
    if environment() is None:  # under torchrun / srun each process is given its own device later
        device_of(settings.device)
    use_threads(settings.threads)
    out = out or _default_out(system, settings.objective, settings.seed)
    check_writable(out, "run directory", directory=True)
    check_run_dir(out, resume)
    resume_hint = f"continue with: boltzflow train {system} --out {out} --resume"
    stopped["hint"] = resume_hint
    launch = environment()
    printer = console if launch is None or launch.rank == 0 else Console(quiet=True)  # one process prints
    answer: dict = {}

    def final(run) -> dict:  # one draw of fresh samples: summary.json, report.json and the plots
        evaluation = bar.add_task("final evaluation", total=settings.final_samples, info="")
        log_evaluation = LogLines(printer)

        def progress(done: int, total: int) -> None:
            bar.update(evaluation, completed=done)
            log_evaluation(f"final evaluation: {done:,}/{total:,} samples", last=done == total)

        answer["report"], answer["plots"] = _final_report(run, out, settings, progress)
        report = answer["report"]
        return {"ess": report.ess, "khat": report.psis.khat, "log_z": report.log_z.value,
                "mirror": report.n_mirror / max(1, report.n),
                **{f"pop_{name}": estimate.value for name, estimate in report.populations.items()}}

    total = max(settings.steps, settings.final_samples)
    with progress_bar("final evaluation", printer, total=total, info=True, disable=printer.quiet) as bar:
        task = bar.add_task("training", total=settings.steps, info="")
        state: dict = {}
        held_out = settings.eval_batch_size
        log = LogLines(printer)

        def on_step(step: int, record: dict) -> None:
            if "eval_ess" in record:  # a small-sample figure: heavy-tailed weights make it overstate
                state["eval"] = f"ESS {100 * record['eval_ess']:.1f}% of {held_out:,}"
            loss = record["loss"]
            info = f"loss {loss:.2f}" if loss == loss else "loss skipped"
            info = f"{info}  {state.get('eval', '')}  evals {record.get('evaluations', 0):,}"
            bar.update(task, completed=step, info=info)
            if "eval_ess" in record:  # no terminal: a plain line at the logged steps, at most every 30 s
                log(f"step {step:,}/{settings.steps:,}  {info}  wall {record.get('wall_time', 0) / 60:.1f} min",
                    last=step == settings.steps)

        printer.print(f"training {settings.objective} on {settings.system} → {out}")
        with storage_errors(out, f"the last checkpoint is kept; free space or make it writable, then {resume_hint}"):
            summary = train_run(resolved, out, resume=resume, on_step=on_step, final=final)
    printer.print(_summary_table(summary, out))
    if summary["stopped"] != "done":
        printer.print(f"stopped early ({summary['stopped']}); {resume_hint}", soft_wrap=True)
        raise typer.Exit(EARLY_STOP_EXIT_CODE)
    if not printer.quiet:
        _print_answer(answer["report"], answer["plots"], out, printer)


def _final_report(run, out: Path, settings: Settings, progress=None):
    """What the trained generator says: ESS with k̂, populations and ΔF with intervals on
    ``final_samples`` fresh samples (OUT/report.json), the Ramachandran, state-coverage and PMF plots in OUT;
    ``progress(done, total)`` after each batch of samples drawn."""
    import json

    from boltzflow.runs.references import shipped_reference
    from boltzflow.runs.report import draw_weighted_samples, free_energy_report, report_plots
    from boltzflow.io import atomic_path

    samples = draw_weighted_samples(run, settings.final_samples, seed=settings.seed, run_dir=out, progress=progress)
    reference = shipped_reference(run.system)
    report = free_energy_report(samples, reference, seed=settings.seed)
    plots = report_plots(samples, out, reference, report=report)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps({**report.as_dict(), "plots": [str(p) for p in plots]}, indent=1) + "\n")
    return report, plots


def _print_answer(report, plots: list, out: Path, console: Console) -> None:
    from boltzflow.cli.samples import report_table

    console.print(report_table(report))
    for path in plots:
        console.print(f"plot: {path}")
    console.print(f"ESS {100 * report.ess:.1f}% (k̂ {report.psis.khat:.2f}, {report.psis.verdict}); "
                  f"every number: {out / 'report.json'}")
    if report.ess < AIS_HINT_BELOW:
        console.print(f"to correct the weights by annealed importance sampling (64 gradient evaluations per "
                      f"sample): boltzflow sample {out} -n 100000 --ais 16 --ais-leapfrog 3", soft_wrap=True)
