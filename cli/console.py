"""The CLI's terminal output: one console for results (stdout), one for messages that must
not mix with them (stderr), and the one progress bar of the long commands (train, sample,
free-energy, md, umbrella, example).

The remaining time comes from the average rate since the start, not from the last seconds'
rate, so evaluation pauses and faster or slower training stages do not make it jump. In a
narrow terminal the free-form information column is cut first; the step counter, elapsed
and remaining time stay whole. Without a terminal (a Slurm log, a pipe) rich draws nothing;
commands print plain lines there (``LogLines``).
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Optional

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn)
from rich.table import Column
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


class SteadyRemainingColumn(ProgressColumn):
    """``ETA h:mm:ss`` = elapsed × (total − done) / done, the average rate over the whole task."""

    def render(self, task: Task) -> Text:
        if not task.total or not task.completed or task.elapsed is None or task.finished:
            return Text("ETA -:--:--", style="progress.remaining")
        seconds = task.elapsed * (task.total - task.completed) / task.completed
        return Text(f"ETA {timedelta(seconds=round(seconds))}", style="progress.remaining")


def progress_bar(description: str, console: Console, total: Optional[int] = None, info: bool = False,
                 disable: bool = False) -> Progress:
    """A transient bar ``description ━━━ 405/4000 0:01:02 ETA 0:09:11 [info]``, a row per task
    (a phase: AIS warm-up, then sampling), each row led by its task's description; ``description``
    is the longest of them (for the column's width). Done/total when ``total`` (the largest count,
    for the column's width) is given, else a percentage; ``info`` adds the task's ``info`` field
    last, the first thing a narrow terminal cuts."""
    def fixed(width: int) -> Column:
        return Column(no_wrap=True, min_width=width)

    counts = (MofNCompleteColumn(table_column=fixed(2 * len(str(total)) + 1)) if total
              else TaskProgressColumn(table_column=fixed(6)))
    columns = [TextColumn("[bold]{task.description}[/bold]", table_column=fixed(len(description))),
               BarColumn(bar_width=None, table_column=Column(min_width=10, ratio=1)), counts,
               TimeElapsedColumn(table_column=fixed(7)), SteadyRemainingColumn(table_column=fixed(11))]
    if info:
        columns.append(TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                                             ratio=2)))
    return Progress(*columns, console=console, transient=True, disable=disable)


class LogLines:
    """Progress as plain lines where rich draws no bar (no terminal: a Slurm log, a pipe):
    ``log(text)`` prints the first line, then at most one every ``every`` seconds, and the
    ``last=True`` one; in a terminal it prints nothing (the bar shows it)."""

    def __init__(self, console: Console, every: float = 30.0):
        self.console, self.every, self.printed = console, every, -math.inf

    def __call__(self, text: str, last: bool = False) -> None:
        now = time.monotonic()
        if self.console.is_terminal or not (last or now - self.printed >= self.every):
            return
        self.printed = now
        self.console.print(text, soft_wrap=True)


class Stopped(Exception):
    """A stop signal (its name) where no loop of the library takes it over."""


def raise_stopped(name: str) -> None:
    """A stop signal handler (``on_stop_signals(raise_stopped)``): raises ``Stopped``, and the command
    exits 75, so that a Slurm batch script requeues it whenever the signal comes."""
    raise Stopped(name)
