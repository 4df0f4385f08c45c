"""The progress bar: a remaining time that does not jump, and the essentials kept when narrow."""

import io

from rich.console import Console
from rich.progress import Progress

from boltzflow.cli.console import SteadyRemainingColumn, progress_bar


def render(width: int, completed: int, elapsed: float) -> str:
    clock = {"now": 0.0}
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    bar = progress_bar("training", console, total=4000, info=True)
    bar.get_time = lambda: clock["now"]
    task = bar.add_task("training", total=4000, info="loss 181.23  ESS 12.3% of 2,048  evals 1,024,000")
    clock["now"] = elapsed
    bar.update(task, completed=completed)
    console.print(bar.get_renderable())
    return console.file.getvalue()


def test_remaining_time_is_the_average_rate_over_the_whole_run():
    clock = {"now": 100.0}
    column = SteadyRemainingColumn()
    console = Console(file=io.StringIO())
    progress = Progress(column, console=console, get_time=lambda: clock["now"])
    task_id = progress.add_task("t", total=1000)
    task = progress.tasks[0]
    assert str(column.render(task)) == "ETA -:--:--"  # nothing done yet
    clock["now"] = 160.0  # 250 steps in 60 s: 750 more take 180 s
    progress.update(task_id, completed=250)
    assert str(column.render(task)) == "ETA 0:03:00"
    clock["now"] = 161.0  # a burst of fast steps barely moves it (a last-seconds rate would say 0:00:07)
    progress.update(task_id, completed=350)
    assert str(column.render(task)) == "ETA 0:01:53"  # 61 s × 650 / 350


def test_a_narrow_terminal_keeps_counter_elapsed_and_remaining_whole():
    for width in (60, 80, 120):
        line = render(width, 405, 62.0).splitlines()[0]
        assert len(line) <= width
        for essential in ("training", "405/4000", "0:01:02", "ETA 0:09:10"):  # 62 s × 3595 / 405
            assert essential in line, (width, line)
    assert "evals 1,024,000" in render(120, 405, 62.0)


def test_each_phase_has_its_own_row_named_by_its_task():
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    bar = progress_bar("AIS warm-up", console, total=4000)
    warm_up = bar.add_task("AIS warm-up", total=20)
    bar.add_task("sampling", total=4000)
    bar.update(warm_up, completed=7)
    console.print(bar.get_renderable())
    first, second = console.file.getvalue().splitlines()[:2]
    assert first.startswith("AIS warm-up") and "7/20" in first
    assert second.startswith("sampling") and "0/4000" in second


def test_log_lines_only_without_a_terminal_first_and_last_and_at_most_every_interval():
    from boltzflow.cli.console import LogLines

    terminal = Console(file=io.StringIO(), force_terminal=True)
    LogLines(terminal)("step 1", last=True)
    assert terminal.file.getvalue() == ""  # the bar shows it
    plain = Console(file=io.StringIO(), force_terminal=False)
    log = LogLines(plain, every=3600)
    for step in range(1, 6):
        log(f"step {step}", last=step == 5)
    assert plain.file.getvalue().splitlines() == ["step 1", "step 5"]
