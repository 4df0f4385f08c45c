"""Slurm: the options of a sweep's jobs, its array script, and submission through ``sbatch``.

Every job script runs training through ``run_resumable`` (``RESUMABLE``): Slurm's warning
signal (``--signal=B:USR1@N``, sent N seconds before the time limit) reaches the batch
shell, which passes it on; training checkpoints and exits with 75 (``EARLY_STOP_EXIT_CODE``), and the job requeues
itself. The requeued job runs the same command, which resumes (``--resume``).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Union

from ..errors import BoltzflowError
from ..training.run import EARLY_STOP_EXIT_CODE

RESUMABLE = """\
# run_resumable COMMAND...: run COMMAND (which exits %(code)d when it stopped early with a
# checkpoint) and pass USR1 and TERM on to it. After USR1 (Slurm's warning before the time
# limit) or its own time limit, an exit of %(code)d requeues the job, which then resumes; TERM
# (scancel, preemption) does not requeue.
run_resumable() {
    local pid="" status caught="" waiting=1
    trap 'caught=${caught:-USR1}; waiting=1; kill -USR1 "$pid" 2>/dev/null' USR1
    trap 'caught=TERM; waiting=1; kill -TERM "$pid" 2>/dev/null' TERM
    "$@" &
    pid=$!
    while [ "$waiting" = 1 ]; do waiting=0; wait "$pid"; status=$?; done
    trap - USR1 TERM
    if [ "$status" -eq %(code)d ] && [ "$caught" != TERM ]; then
        local job="${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}"
        echo "boltzflow: stopped with a checkpoint; requeueing job $job" >&2
        scontrol requeue "$job"
    fi
    return "$status"
}
""" % {"code": EARLY_STOP_EXIT_CODE}


@dataclass(frozen=True)
class SlurmOptions:
    """The ``[slurm]`` table of a sweep file.

    ``time``, ``partition``, ``account``, ``qos``, ``mem``, ``cpus_per_task`` and ``gpus``
    (``--gres=gpu:N``) become ``#SBATCH`` lines; ``max_parallel`` limits how many array tasks
    run at once; ``signal_seconds`` is how long before the time limit training is warned;
    ``sbatch`` lists further options verbatim (``"--constraint=a100"``); ``setup`` lists shell
    lines run before training (``"module load cuda"``); ``command`` is how the job calls boltzflow.
    """

    job_name: str
    time: Optional[str] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    mem: Optional[str] = None
    cpus_per_task: int = 1
    gpus: int = 0
    max_parallel: Optional[int] = None
    signal_seconds: int = 120
    sbatch: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    command: str = "boltzflow"

    @classmethod
    def from_table(cls, table: dict, default_name: str, source: str) -> "SlurmOptions":
        """Check a ``[slurm]`` table's keys and types; ``time`` and ``mem`` may be numbers."""
        values = {"job_name": default_name}
        for key, value in table.items():
            whole = isinstance(value, int) and not isinstance(value, bool)
            if key in _LISTS:
                ok, expected = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of strings"
                value = tuple(value) if ok else value
            elif key in _STRINGS:
                ok, expected = isinstance(value, str) or (key in ("time", "mem") and whole), "a string"
                value = str(value) if ok else value
            elif key in _COUNTS:
                low = _COUNTS[key]
                ok, expected = whole and value >= low, f"an integer >= {low}"
            else:
                known = ", ".join(f.name for f in fields(cls))
                raise BoltzflowError(f"{source}: unknown [slurm] key '{key}'; known: {known}")
            if not ok:
                raise BoltzflowError(f"{source}: [slurm] {key} = {value!r} must be {expected}")
            values[key] = value
        return cls(**values)


_LISTS = ("sbatch", "setup")
_STRINGS = ("job_name", "time", "partition", "account", "qos", "mem", "command")
_COUNTS = {"cpus_per_task": 1, "max_parallel": 1, "gpus": 0, "signal_seconds": 0}  # smallest allowed


def sbatch_lines(options: SlurmOptions, array: str, output: Path) -> list[str]:
    """The ``#SBATCH`` header of a resumable array job."""
    lines = [f"--job-name={options.job_name}", f"--array={array}", f"--output={output}",
             "--open-mode=append", "--requeue", "--nodes=1", "--ntasks=1",
             f"--cpus-per-task={options.cpus_per_task}"]
    if options.signal_seconds:
        lines.append(f"--signal=B:USR1@{options.signal_seconds}")
    for key in ("time", "partition", "account", "qos", "mem"):
        if getattr(options, key) is not None:
            lines.append(f"--{key}={getattr(options, key)}")
    if options.gpus:
        lines.append(f"--gres=gpu:{options.gpus}")
    lines += options.sbatch
    return [f"#SBATCH {shlex.quote(line)}" for line in lines]


def submit(script: Union[str, Path]) -> str:
    """Submit ``script`` with ``sbatch``; returns the job id."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    except FileNotFoundError:
        raise BoltzflowError(f"sbatch not found: run this on a Slurm login node, or submit {script} yourself") from None
    if proc.returncode != 0:
        raise BoltzflowError(f"sbatch {script} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip().split(";")[0]
