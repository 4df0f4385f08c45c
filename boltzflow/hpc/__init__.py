"""Batch work on clusters: sweeps of training runs as Slurm job arrays that survive time limits
and preemption, and one table of results across runs (mean ± standard error over seeds)."""

from .collect import ResultTable, RunResult, collect_runs, format_estimate, read_run
from .slurm import RESUMABLE, SlurmOptions, submit
from .sweep import Run, Sweep, array_script, expand, load_sweep, write_sweep

__all__ = ["RESUMABLE", "ResultTable", "Run", "RunResult", "SlurmOptions", "Sweep", "array_script", "collect_runs",
           "expand", "format_estimate", "load_sweep", "read_run", "submit", "write_sweep"]
