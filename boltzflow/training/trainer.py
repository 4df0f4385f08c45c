"""The training loop: optimiser, schedule, checkpoints, exact resume, time limit, signals, metrics.

A run directory holds::

    config.toml        the fully resolved configuration
    metrics.jsonl      one JSON object per logged step
    checkpoints/       last.pt (atomic; every ``checkpoint_every`` steps, on a stop signal,
                       at the time limit and at the end)
    model.pt           the final flow's state dict

``Trainer.run(resume=True)`` continues from ``checkpoints/last.pt`` with the same RNG
streams, optimiser and schedule: on the CPU a resumed run equals an uninterrupted one
step for step. SIGTERM, SIGINT and SIGUSR1 (Slurm's warning signal) finish the current
step, write a checkpoint and return with ``stopped="signal"``.
"""

from __future__ import annotations

import json
import math
from collections import deque
import re
import signal
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from ..errors import BoltzflowError
from ..io import atomic_path, load_checkpoint, save_checkpoint

LossFn = Callable[[int], tuple[Tensor, dict]]
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"3h50m"``, ``"90m"``, ``"45s"``, ``"1:30:00"`` or ``"600"``."""
    text = text.strip().lower()
    if ":" in text:
        parts = text.split(":")
        if len(parts) <= 3 and all(p.isdigit() for p in parts):
            return float(sum(int(p) * 60**k for k, p in enumerate(reversed(parts))))
    elif text.replace(".", "", 1).isdigit():
        return float(text)
    else:
        matches = re.fullmatch(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
        if matches and any(matches.groups()):
            return sum(float(v) * f for v, f in zip(matches.groups(), (86400, 3600, 60, 1)) if v)
    raise BoltzflowError(f"cannot read the duration {text!r}; write e.g. 3h50m, 90m, 45s or 1:30:00")


@dataclass
class Schedule:
    """Optimisation settings: Adam with linear warm-up then cosine decay to ``lr_min``.

    The learning rate is a function of the step alone, so a resumed run follows it exactly.
    """

    steps: int
    lr: float = 5e-4
    lr_min: float = 0.0
    warmup: int = 0
    clip_grad_norm: float = 100.0
    checkpoint_every: int = 250
    log_every: int = 10
    time_limit: Optional[float] = None   # seconds of wall time for this invocation

    def factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        low = self.lr_min / self.lr
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@contextmanager
def _stop_on_signals(flag: dict) -> Iterator[None]:
    """Turn stop signals into ``flag['signal'] = name`` for the duration (main thread only)."""
    try:
        previous = {s: signal.signal(s, lambda n, f: flag.__setitem__("signal", signal.Signals(n).name))
                    for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: leave the handlers alone
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Trainer:
    """Minimise ``loss_fn(step)`` over ``model``'s parameters; write everything to ``run_dir``.

    Args:
        model: the module to train (a ``Flow``, or a module holding it).
        loss_fn: called with the 0-based step; draws its own batch and returns
            ``(loss, stats)``; ``stats`` values are floats logged to metrics (e.g. ``ess``).
            If it has ``state_dict``/``load_state_dict`` (MCMC step sizes, a replay
            buffer), that state is checkpointed too.
        schedule: ``Schedule``.
        run_dir: the run directory.
        config: the resolved configuration, saved in checkpoints (plain data).
        evaluate: optional ``() -> dict`` of held-out metrics, called every ``log_every`` steps.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, schedule: Schedule, run_dir: Path,
                 config: Optional[dict] = None, evaluate: Optional[Callable[[], dict]] = None):
        self.model, self.loss_fn, self.schedule = model, loss_fn, schedule
        self.run_dir = Path(run_dir)
        self.config = dict(config or {})
        self.evaluate = evaluate
        self.optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
        self.step = 0
        self.skipped = 0
        self.elapsed = 0.0  # wall time (s) of earlier invocations of this run

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "skipped": self.skipped, "config": self.config, "elapsed": self.elapsed,
                "objective": self.loss_fn.state_dict() if hasattr(self.loss_fn, "state_dict") else {}}

    def save(self) -> Path:
        return save_checkpoint(self.checkpoint_path, self.state())

    def restore(self) -> None:
        """Load ``checkpoints/last.pt`` (RNG included) and cut metrics logged after it."""
        if not self.checkpoint_path.is_file():
            raise BoltzflowError(f"cannot resume: no checkpoint at {self.checkpoint_path}")
        device = next(self.model.parameters()).device
        state = load_checkpoint(self.checkpoint_path, map_location=device, restore_rng=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.skipped, self.elapsed = state["step"], state["skipped"], state["elapsed"]
        if hasattr(self.loss_fn, "load_state_dict"):
            self.loss_fn.load_state_dict(state["objective"])
        if self.metrics_path.is_file():
            kept = [line for line in self.metrics_path.read_text().splitlines()
                    if line and json.loads(line)["step"] <= self.step]
            with atomic_path(self.metrics_path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))

    def _train_step(self) -> tuple[float, dict]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr * self.schedule.factor(self.step)
        loss, stats = self.loss_fn(self.step)
        if not torch.isfinite(loss):
            return math.nan, stats
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.schedule.clip_grad_norm)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return math.nan, stats
        self.optimizer.step()
        return loss.item(), stats

    def run(self, resume: bool = False, on_step: Optional[Callable[[int, dict], None]] = None) -> dict:
        """Train until ``schedule.steps``, the time limit or a stop signal; returns a summary
        with ``stopped`` in {"done", "time-limit", "signal"}."""
        if resume:
            self.restore()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start, flag, durations = time.monotonic(), {}, deque(maxlen=64)  # recent step times
        earlier = self.elapsed
        wall_time = lambda: earlier + time.monotonic() - start  # noqa: E731  (over all invocations)
        stopped = "done"
        self.model.train()
        with _stop_on_signals(flag), open(self.metrics_path, "a") as metrics:
            while self.step < self.schedule.steps:
                t0 = time.monotonic()
                loss, stats = self._train_step()
                self.skipped += math.isnan(loss)
                self.step += 1
                durations.append(time.monotonic() - t0)
                record = {"step": self.step, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                          "skipped": self.skipped, **stats}
                if self.step % self.schedule.log_every == 0 or self.step == self.schedule.steps:
                    if self.evaluate is not None:
                        record.update(self.evaluate())
                    record["wall_time"] = wall_time()
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                if on_step is not None:
                    on_step(self.step, record)
                if self.step % self.schedule.checkpoint_every == 0:
                    self.elapsed = wall_time()
                    self.save()
                if flag:
                    stopped = "signal"
                    break
                limit = self.schedule.time_limit
                if limit is not None and time.monotonic() - start + 3 * statistics.median(durations) + 5 > limit:
                    stopped = "time-limit"
                    break
        self.elapsed = wall_time()
        self.save()
        if stopped == "done":
            with atomic_path(self.run_dir / "model.pt") as tmp:
                torch.save(self.model.state_dict(), tmp)
        return {"stopped": stopped, "signal": flag.get("signal"), "step": self.step,
                "skipped": self.skipped, "wall_time": self.elapsed}
