"""Sweeps: a grid of training runs described in TOML, one run directory per grid point.

A sweep file has three tables and an optional ``out``::

    out = "runs/objectives"         # the sweep directory, from the current directory
                                    # (default: runs/<file name without .toml>)
    [train]                         # settings of every run: `boltzflow train` options
    system = "alanine-dipeptide"    # (objective, seed, steps, batch_size, lr, config,
    steps = 20000                   # preset, device, time_limit) or any configuration
    [train.fab]                     # key, dotted or as a table; a config file is
    n_intermediate = 8              # relative to this file

    [grid]                          # one run per combination; the last key varies fastest
    objective = ["rkl", "fab"]
    seed = [0, 1, 2]

    [slurm]                         # see ``SlurmOptions``
    time = "04:00:00"

Runs are named after their grid point (``objective-rkl_seed-0``), so a run keeps its
directory when the grid grows, and array task ``i`` trains ``Sweep.runs[i]``.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import BoltzflowError
from ..io import atomic_path, read_toml
from ..training.config import resolve_config
from ..training.run import SWEEP_FILE
from .slurm import RESUMABLE, SlurmOptions, sbatch_lines

# settings that `boltzflow train` takes as options; every other key goes through --set
TRAIN_OPTIONS = ("objective", "seed", "steps", "batch_size", "lr", "config", "preset", "device", "time_limit")
SECTIONS = ("out", "train", "grid", "slurm")


@dataclass(frozen=True)
class Run:
    """One grid point: its directory name, its settings and its `boltzflow train` arguments
    (without ``--out`` and ``--resume``)."""

    name: str
    params: dict
    args: tuple[str, ...]


@dataclass(frozen=True)
class Sweep:
    """A sweep file expanded: where it lives, its runs in array-task order, the Slurm options."""

    path: Path
    out: Path
    runs: tuple[Run, ...]
    slurm: SlurmOptions

    def run_dir(self, run: Run) -> Path:
        return self.out / run.name


def flatten(table: dict, prefix: str = "") -> dict:
    """``{"fab": {"n": 8}, "seed": 0}`` → ``{"fab.n": 8, "seed": 0}``."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _toml_value(value: Any) -> str:
    """A value as `--set` reads it (TOML); JSON's scalars and arrays are valid TOML."""
    return json.dumps(value, allow_nan=False)


def _split(params: dict, base: Path) -> tuple[dict, list[str]]:
    """``params`` as `boltzflow train` takes them: options (``config`` made absolute from
    ``base``) and ``--set`` assignments."""
    options, assignments = {}, []
    for key, value in params.items():
        if key in TRAIN_OPTIONS:
            options[key] = str((base / str(value)).resolve()) if key == "config" else value
        elif key != "system":
            assignments.append(f"{key}={_toml_value(value)}")
    return options, assignments


def train_args(params: dict, base: Path) -> tuple[str, ...]:
    """`boltzflow train` arguments for flat settings; ``config`` is relative to ``base``."""
    options, assignments = _split(params, base)
    args = [str(params["system"])]
    for key, value in options.items():
        args += ["--" + key.replace("_", "-"), value if isinstance(value, str) else _toml_value(value)]
    for assignment in assignments:
        args += ["--set", assignment]
    return tuple(args)


def check_settings(params: dict, base: Path) -> None:
    """Raise ``BoltzflowError`` where `boltzflow train` would reject these settings."""
    options, assignments = _split(params, base)
    preset, config = options.pop("preset", "default"), options.pop("config", None)
    resolve_config(str(params["system"]), preset, config, options, assignments)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "-"


def run_name(point: dict) -> str:
    """Directory name of a grid point: ``key-value`` pairs joined by ``_``."""
    parts = [f"{_slug(key)}-{_slug(v if isinstance(v, str) else _toml_value(v))}" for key, v in point.items()]
    return "_".join(parts) or "run"


def _table(spec: dict, name: str, path: Path) -> dict:
    table = spec.get(name, {})
    if not isinstance(table, dict):
        raise BoltzflowError(f"{path}: '{name}' must be a table, e.g. [{name}]")
    return flatten(table)


def expand(spec: dict, path: Path, out: Optional[Path] = None) -> Sweep:
    """Expand a parsed sweep file (``spec``, read from ``path``) into its runs."""
    unknown = set(spec) - set(SECTIONS)
    if unknown:
        raise BoltzflowError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    train, grid = _table(spec, "train", path), _table(spec, "grid", path)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise BoltzflowError(f"{path}: grid key '{key}' must be a non-empty list of values, got {values!r}")
    both = sorted(set(train) & set(grid))
    if both:
        raise BoltzflowError(f"{path}: {', '.join(both)} given both in [train] and in [grid]")
    if "system" not in train and "system" not in grid:
        raise BoltzflowError(f"{path}: no system; set system = \"alanine-dipeptide\" in [train] or list systems in [grid]")
    if out is None:
        out = spec.get("out", f"runs/{path.stem}")
        if not isinstance(out, str):
            raise BoltzflowError(f"{path}: out = {out!r} must be a directory path (a string)")
    out = Path(out).resolve()
    runs, seen = [], {}
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        name = run_name(point)
        if name in seen:
            raise BoltzflowError(f"{path}: grid points {seen[name]} and {point} share the directory name {name!r}")
        seen[name] = point
        params = {**train, **point}
        try:
            check_settings(params, path.parent)
        except BoltzflowError as exc:
            raise BoltzflowError(f"{path}: run {name}: {exc}") from None
        runs.append(Run(name, params, train_args(params, path.parent)))
    slurm = SlurmOptions.from_table(_table(spec, "slurm", path), default_name=out.name, source=str(path))
    return Sweep(path=path.resolve(), out=out, runs=tuple(runs), slurm=slurm)


def load_sweep(path: Union[str, Path], out: Union[str, Path, None] = None) -> Sweep:
    """Read and expand a sweep file; ``out`` overrides its sweep directory."""
    path = Path(path)
    return expand(read_toml(path), path, None if out is None else Path(out))


def array_script(sweep: Sweep) -> str:
    """The ``sbatch`` script of a sweep: array task ``i`` trains ``sweep.runs[i]`` in its directory."""
    n = len(sweep.runs)
    array = f"0-{n - 1}" + (f"%{sweep.slurm.max_parallel}" if sweep.slurm.max_parallel else "")
    cases = [f"    {i}) run={shlex.quote(run.name)}\n       args=({shlex.join(run.args)}) ;;"
             for i, run in enumerate(sweep.runs)]
    command = shlex.join(shlex.split(sweep.slurm.command))
    return "\n".join([
        "#!/bin/bash",
        f"# Written by `boltzflow sweep {sweep.path.name}`: {n} run(s), array task i trains run i below",
        "# in its own directory and resumes it when requeued or submitted again.",
        f"#   submit: sbatch {shlex.quote(str(sweep.out / 'array.sbatch'))}",
        *sbatch_lines(sweep.slurm, array, sweep.out / "logs" / "%a.out"),
        "set -uo pipefail",
        "",
        f"sweep={shlex.quote(str(sweep.out))}",
        'case "${SLURM_ARRAY_TASK_ID:?submit this script with sbatch}" in',
        *cases,
        '    *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        'echo "array task $SLURM_ARRAY_TASK_ID, job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}: $sweep/$run"',
        *(["", *sweep.slurm.setup] if sweep.slurm.setup else []),
        "",
        RESUMABLE,
        f'run_resumable {command} train "${{args[@]}}" --out "$sweep/$run" --resume',
        "",
    ])


def write_sweep(sweep: Sweep, dry_run: bool = False) -> Path:
    """Write ``OUT/array.sbatch`` and its log folder ``OUT/logs``; unless ``dry_run``, also
    each run's directory with ``sweep.json`` (its settings and arguments). Returns the script."""
    script = sweep.out / "array.sbatch"
    (sweep.out / "logs").mkdir(parents=True, exist_ok=True)
    with atomic_path(script) as tmp:
        tmp.write_text(array_script(sweep))
    if not dry_run:
        for run in sweep.runs:
            record = {"sweep": str(sweep.path), "params": run.params, "args": list(run.args)}
            with atomic_path(sweep.run_dir(run) / SWEEP_FILE) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n")
    return script
