"""Results across runs: each finished run's final metrics, runs that differ only by their seed
grouped, mean ± standard error per group, as one table in CSV and markdown."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..errors import BoltzflowError
from ..io import read_toml
from ..training.run import SWEEP_FILE
from .sweep import flatten

RUN_FILES = ("config.toml", "summary.json", SWEEP_FILE)  # any of them marks a run directory
REPLICATE_KEYS = ("seed", "time_limit")  # settings that do not make a different experiment
FIRST_LABELS = ("system", "objective")


@dataclass(frozen=True)
class RunResult:
    """One run directory: its flat settings (``config.toml``), ``summary.json`` and final metrics
    (the last ``metrics.jsonl`` record, overridden by the numbers in ``summary.json``)."""

    path: Path
    settings: dict
    summary: dict
    metrics: dict

    @property
    def finished(self) -> bool:
        return self.summary.get("stopped") == "done"

    @property
    def status(self) -> str:
        if self.finished:
            return "done"
        if self.summary:
            s = self.summary
            return f"stopped ({s.get('stopped')}) at step {s.get('step')} of {s.get('steps')}"
        return "running or crashed (no summary.json)" if (self.path / "config.toml").is_file() else "not started"


def _numbers(record: dict, settings: dict) -> dict:
    """The numbers in ``record`` that are results: not settings (seed, lr, ...) nor step counts."""
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in settings and k not in ("step", "steps")}


def _last_record(path: Path) -> dict:
    """The last complete JSON line of ``metrics.jsonl`` ({} if none)."""
    if not path.is_file():
        return {}
    for line in reversed(path.read_text().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
    return {}


def read_run(path: Union[str, Path]) -> RunResult:
    """Read a run directory; missing files give empty fields."""
    path = Path(path)
    settings = flatten(read_toml(path / "config.toml")) if (path / "config.toml").is_file() else {}
    summary = {}
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except json.JSONDecodeError as exc:
            raise BoltzflowError(f"{path / 'summary.json'}: not valid JSON: {exc}") from None
    metrics = {**_numbers(_last_record(path / "metrics.jsonl"), settings), **_numbers(summary, settings)}
    return RunResult(path, settings, summary, metrics)


def find_run_dirs(paths: Iterable[Union[str, Path]]) -> list[Path]:
    """Run directories among ``paths``: a path is one if it holds a run file, otherwise its
    subdirectories that do are taken (a sweep directory)."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise BoltzflowError(f"no such directory: {path}")
        if any((path / f).is_file() for f in RUN_FILES):
            found.append(path)
            continue
        runs = [p for p in sorted(path.iterdir()) if p.is_dir() and any((p / f).is_file() for f in RUN_FILES)]
        if not runs:
            raise BoltzflowError(f"{path} is neither a run directory nor holds any (they have {' or '.join(RUN_FILES)})")
        found += runs
    return list(dict.fromkeys(found))


def format_estimate(mean: float, sem: Optional[float]) -> str:
    """``mean ± sem`` with the error to two significant digits and the mean to the same place."""
    if sem is None or not math.isfinite(sem) or sem == 0 or not math.isfinite(mean):
        return f"{mean:.4g}"
    places = 1 - math.floor(math.log10(sem))
    if places > 0:
        return f"{mean:.{places}f} ± {sem:.{places}f}"
    return f"{round(mean, places):.0f} ± {round(sem, places):.0f}"


def _text(value) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


@dataclass(frozen=True)
class ResultTable:
    """One row per group of runs: its distinguishing ``labels``, ``n`` runs and per metric
    ``(mean, standard error)`` (error ``None`` for a single run)."""

    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: tuple[dict, ...]

    def csv(self) -> str:
        """Columns: the labels, ``n``, then ``<metric>_mean`` and ``<metric>_sem`` per metric."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.labels, "n", *(f"{m}_{s}" for m in self.metrics for s in ("mean", "sem"))])
        for row in self.rows:
            estimates = [("" if x is None else repr(x)) for m in self.metrics for x in row.get(m, (None, None))]
            writer.writerow([*(_text(row[k]) for k in self.labels), row["n"], *estimates])
        return out.getvalue()

    def markdown(self) -> str:
        """A markdown table with ``mean ± se`` cells."""
        head = [*self.labels, "n", *self.metrics]
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] * len(self.labels) + ["---:"] * (1 + len(self.metrics))) + "|"]
        for row in self.rows:
            cells = [_text(row[k]).replace("|", "\\|") for k in self.labels] + [str(row["n"])]
            cells += [format_estimate(*row[m]) if m in row else "" for m in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _estimate(values: list[float]) -> tuple[float, Optional[float]]:
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return statistics.fmean(values), sem


def collect_runs(paths: Iterable[Union[str, Path]],
                 metrics: Optional[Sequence[str]] = None) -> tuple[ResultTable, list[RunResult]]:
    """The table of finished runs under ``paths`` (see ``find_run_dirs``), grouped by all their
    settings but the seed; also returns the runs left out because they have not finished.

    ``metrics`` picks and orders the columns (default: every final number the runs report).
    """
    results = [read_run(p) for p in find_run_dirs(paths)]
    finished = [r for r in results if r.finished]
    if not finished:
        raise BoltzflowError("no finished run (summary.json with stopped = \"done\") among: "
                             + ", ".join(str(r.path) for r in results))
    available = list(dict.fromkeys(k for r in finished for k in r.metrics))
    for name in metrics or ():
        if name not in available:
            raise BoltzflowError(f"no run reports the metric {name!r}; available: {', '.join(available)}")
    metrics = tuple(metrics or available)
    groups: dict[str, list[RunResult]] = {}
    for run in finished:
        key = {k: v for k, v in run.settings.items() if k not in REPLICATE_KEYS}
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(run)
    keys = list(dict.fromkeys(k for r in finished for k in r.settings if k not in REPLICATE_KEYS))
    varying = [k for k in keys if len({json.dumps(g[0].settings.get(k)) for g in groups.values()}) > 1]
    labels = tuple(k for k in FIRST_LABELS if k in keys) + tuple(k for k in varying if k not in FIRST_LABELS)
    rows = []
    for runs in groups.values():
        row = {k: runs[0].settings.get(k) for k in labels}
        row["n"] = len(runs)
        for m in metrics:
            values = [r.metrics[m] for r in runs if m in r.metrics]
            if values:
                row[m] = _estimate(values)
        rows.append(row)
    return ResultTable(labels, metrics, tuple(rows)), [r for r in results if not r.finished]
