"""What every benchmark here shares: interleaved timing and a description of the machine."""

from __future__ import annotations

import os
import platform
import time
from typing import Callable, Optional, Sequence

import torch


def measure(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 2,
            device: str = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each contender, interleaved A, B, C, A, B, C, ... so that a shared
    machine's drift hits every contender alike. On a CUDA ``device`` each time includes
    waiting for the call's kernels to finish."""
    wait = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            wait()
            start = time.perf_counter()
            run()
            wait()
            times[key].append(time.perf_counter() - start)
    return times


def machine(**versions: str) -> str:
    """CPU model, cores, torch and its threads, Python, and any ``versions`` given (name=version)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    extra = "".join(f", {name} {version}" for name, version in versions.items())
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
            f"{extra}, Python {platform.python_version()}")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, width: Optional[int] = None) -> None:
    """Print string cells as a markdown table, or as a rich table for a terminal."""
    if markdown:
        print(markdown_table(header, rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console(width=width).print(table)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of string cells, one sequence a row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
