"""The training loop: optimiser, schedule, checkpoints, exact resume, time limit, signals, metrics,
gradient accumulation over shards and data-parallel training over processes.

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

Shards and processes. A step's batch is made of ``world_size × len(shards)`` shards, each
drawn by its own loss function. Process r of a ``torch.distributed`` group (see
``distributed``; one process: r = 0) computes shards r·S … r·S + S − 1 one after another,
accumulating their gradients, and the gradients are then summed over the processes in one
all-reduce of a flat buffer per step (what DDP's reducer does; ``DistributedDataParallel``
itself does not fit, as objectives draw their own samples instead of calling the model).
Shard g draws all its random numbers from its own stream: shard 0 continues torch's
generator as the caller left it (so one shard is a plain training loop), shard g > 0
starts from ``stream_seed(seed, g)``. Each process keeps its first shard's stream in torch's
generator (CPU and the model's CUDA device) and swaps the others in while computing them,
so the numbers depend on the shard, not on the process computing it: 2 processes × 1 shard
and 1 process × 2 shards train the same model up to float rounding. A step's loss is the
mean of its shards' losses and its gradient their mean gradient; the shards' ``stats`` are
combined: counts (int values) summed, other values averaged.

A non-finite loss on any shard, or a non-finite gradient, skips the step everywhere; a
stop signal or the time limit on any process stops all of them after the same step. Rank 0
alone writes metrics, checkpoints and ``model.pt`` and calls ``evaluate`` (which draws from
shard 0's stream, as in a single process). A checkpoint holds every shard's stream and
objective state, gathered from all processes; on resume each process takes its own, so a
run may resume with another split of the same number of shards (processes × shards).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import signal
import statistics
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, Union, runtime_checkable

import torch
from torch import Tensor, nn

from ..errors import BoltzflowError
from ..io import atomic_path, load_checkpoint, save_checkpoint
from ..io.checkpoints import LAST_CHECKPOINT, save_tensors
from . import distributed

LossFn = Callable[[int], tuple[Tensor, dict]]
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s)


@runtime_checkable
class Stateful(Protocol):
    """An objective whose state a checkpoint carries (FAB's buffer, the annealing stage,
    counters): it has both methods. Plain functions have no state."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def objective_state(objective: Callable) -> dict:
    """The state of a ``Stateful`` objective, {} for any other."""
    return objective.state_dict() if isinstance(objective, Stateful) else {}


def load_objective_state(objective: Callable, state: dict) -> None:
    """Restore what ``objective_state`` returned."""
    if isinstance(objective, Stateful):
        objective.load_state_dict(state)


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


def clip_gradients(parameters, max_norm: float) -> bool:
    """Scale the gradients so that their total norm is at most ``max_norm``; False (nothing
    changed) when a gradient is not finite. The norm is taken in float64: a finite float32
    gradient whose norm overflows float32 is clipped, not skipped."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return True
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads]))
    if not torch.isfinite(norm):
        return False
    scale = (max_norm / (norm + 1e-12)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return True


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; +inf for a blank or torn line (cut on resume)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def stream_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``'s random stream in a run seeded ``seed`` (for shards > 0)."""
    digest = hashlib.sha256(f"boltzflow shard {seed} {shard}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _rng(device: torch.device) -> dict[str, Tensor]:
    """Torch's generator state: the CPU's and, on CUDA, ``device``'s."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _seeded_rng(seed: int, device: torch.device) -> dict[str, Tensor]:
    """What ``_rng`` returns after seeding with ``seed``, leaving torch's generators alone."""
    state = {"cpu": torch.Generator().manual_seed(seed).get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.Generator(device).manual_seed(seed).get_state()
    return state


def _combine(stats: Sequence[dict]) -> dict:
    """The shards' stats in one: int values (counts) summed, other values averaged."""
    combined = {}
    for key in stats[0]:
        values = [s[key] for s in stats if key in s]
        counts = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        combined[key] = sum(values) if counts else math.fsum(values) / len(values)
    return combined


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
def on_stop_signals(handle: Callable[[str], None], signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Call ``handle(signal name)`` on ``signals`` (SIGTERM, SIGINT and SIGUSR1) for the duration
    (main thread only; elsewhere the handlers are left alone); the previous handlers come back after."""
    try:
        previous = {s: signal.signal(s, lambda number, frame: handle(signal.Signals(number).name))
                    for s in signals}
    except ValueError:  # not the main thread
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
            ``(loss, stats)``; ``stats`` values are floats (or int counts) logged to metrics
            (e.g. ``ess``). If it has ``state_dict``/``load_state_dict`` (MCMC step sizes, a
            replay buffer), that state is checkpointed too. A list of them: this process's
            shards (module docstring), each drawing its part of the batch.
        schedule: ``Schedule``.
        run_dir: the run directory.
        config: the resolved configuration, saved in checkpoints (plain data).
        evaluate: optional ``() -> dict`` of held-out metrics, called every ``log_every`` steps
            (on rank 0).
        seed: the seed of the shards' streams (``stream_seed``).
    """

    def __init__(self, model: nn.Module, loss_fn: Union[LossFn, Sequence[LossFn]], schedule: Schedule,
                 run_dir: Path, config: Optional[dict] = None, evaluate: Optional[Callable[[], dict]] = None,
                 seed: int = 0):
        self.model, self.loss_fn, self.schedule = model, loss_fn, schedule
        self.run_dir = Path(run_dir)
        self.config = dict(config or {})
        self.evaluate = evaluate
        self.seed = seed
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
        self.step = 0
        self.restored = False  # restore() was called: run(resume=True) continues from there
        self.skipped = 0
        self.elapsed = 0.0  # wall time (s) of earlier invocations of this run
        self._streams: list[dict[str, Tensor]] = []  # RNG states of this process's shards 1, 2, …

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / LAST_CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def shards(self) -> list[LossFn]:
        """This process's shards' loss functions."""
        return list(self.loss_fn) if isinstance(self.loss_fn, (list, tuple)) else [self.loss_fn]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _start_streams(self) -> None:
        """Seed this process's shards' streams; its first shard's goes into torch's generator."""
        first, n = self.rank * len(self.shards), len(self.shards)
        if first > 0:
            _set_rng(_seeded_rng(stream_seed(self.seed, first), self.device), self.device)
        self._streams = [_seeded_rng(stream_seed(self.seed, g), self.device) for g in range(first + 1, first + n)]

    def _in_stream(self, k: int, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` drawing from the stream of this process's shard ``k``."""
        if k == 0:
            return fn(*args)
        device = self.device
        own = _rng(device)
        _set_rng(self._streams[k - 1], device)
        try:
            return fn(*args)
        finally:
            self._streams[k - 1] = _rng(device)
            _set_rng(own, device)

    def state(self) -> dict:
        """The checkpoint's content, with every process's shard states (every process calls this)."""
        local = [{"rng": _rng(self.device) if k == 0 else self._streams[k - 1],
                  "objective": objective_state(fn)}
                 for k, fn in enumerate(self.shards)]
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "skipped": self.skipped, "config": self.config, "elapsed": self.elapsed,
                "shards": distributed.gather_lists(local)}

    def save(self) -> Path:
        """Write ``checkpoints/last.pt`` (rank 0 writes; every process calls this)."""
        state = self.state()
        if self.rank == 0:
            save_checkpoint(self.checkpoint_path, state)
        return self.checkpoint_path

    def restore(self) -> None:
        """Load ``checkpoints/last.pt`` (this process's shards' streams and objective states
        included) and cut metrics logged after it."""
        if not self.checkpoint_path.is_file():
            raise BoltzflowError(f"cannot resume: no checkpoint at {self.checkpoint_path}")
        device, n = self.device, len(self.shards)
        state = load_checkpoint(self.checkpoint_path, map_location=device)
        if "shards" not in state:
            raise BoltzflowError(f"cannot resume from {self.checkpoint_path}: written by an earlier boltzflow "
                                 "without shard states; start a new run")
        if len(state["shards"]) != self.world_size * n:
            raise BoltzflowError(f"cannot resume: {self.checkpoint_path} holds {len(state['shards'])} shard(s), "
                                 f"this run has {self.world_size} process(es) × {n} shard(s); "
                                 f"resume with processes × shards = {len(state['shards'])}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError):  # another architecture, or not a trainer's state
            raise BoltzflowError(f"cannot resume from {self.checkpoint_path}: it does not hold a model of this run's "
                                 "architecture (a file from another run); start a new run in another folder") from None
        self.step, self.skipped, self.elapsed = state["step"], state["skipped"], state["elapsed"]
        mine = state["shards"][self.rank * n:(self.rank + 1) * n]
        for fn, shard in zip(self.shards, mine):
            load_objective_state(fn, shard["objective"])
        _set_rng(mine[0]["rng"], device)
        self._streams = [{k: v.cpu() for k, v in shard["rng"].items()} for shard in mine[1:]]
        if self.rank == 0 and self.metrics_path.is_file():
            kept = [line for line in self.metrics_path.read_text().splitlines() if _logged_step(line) <= self.step]
            with atomic_path(self.metrics_path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))
        self.restored = True

    def _train_step(self) -> tuple[float, dict]:
        """One step over all shards: (mean loss, or NaN when skipped; combined stats)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr * self.schedule.factor(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total = self.world_size * len(self.shards)

        def shard_step(loss_fn: LossFn) -> tuple[float, dict]:
            loss, stats = loss_fn(self.step)
            if not torch.isfinite(loss):
                return math.nan, stats
            (loss / total).backward()
            return loss.item(), stats

        results = distributed.gather_lists([self._in_stream(k, shard_step, fn) for k, fn in enumerate(self.shards)])
        losses, stats = [loss for loss, _ in results], _combine([s for _, s in results])
        if not all(math.isfinite(loss) for loss in losses):
            self.optimizer.zero_grad(set_to_none=True)
            return math.nan, stats
        distributed.sum_gradients(self.model)
        if not clip_gradients(self.model.parameters(), self.schedule.clip_grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            return math.nan, stats
        self.optimizer.step()
        return math.fsum(losses) / total, stats

    def run(self, resume: bool = False, on_step: Optional[Callable[[int, dict], None]] = None) -> dict:
        """Train until ``schedule.steps``, the time limit or a stop signal; returns a summary
        with ``stopped`` in {"done", "time-limit", "signal"}. ``resume``: continue from the
        checkpoint (``restore`` it first, unless that was done already)."""
        if not resume:
            self._start_streams()
            distributed.broadcast_parameters(self.model)
        elif not self.restored:
            self.restore()
        main = self.rank == 0
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        start, flag, durations = time.monotonic(), {}, deque(maxlen=64)  # recent step times
        earlier = self.elapsed
        wall_time = lambda: earlier + time.monotonic() - start  # noqa: E731  (over all invocations)
        stopped = "done"
        self.model.train()
        # a run that starts (again) from step 0 starts its metrics afresh: a run killed before its
        # first checkpoint and started again must not log its steps twice
        mode = "a" if resume else "w"
        stop = on_stop_signals(lambda name: flag.__setitem__("signal", name))
        with stop, (open(self.metrics_path, mode) if main else nullcontext()) as metrics:
            while self.step < self.schedule.steps:
                t0 = time.monotonic()
                loss, stats = self._train_step()
                self.skipped += math.isnan(loss)
                self.step += 1
                durations.append(time.monotonic() - t0)
                record = {"step": self.step, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                          "skipped": self.skipped, **stats}
                if main and (self.step % self.schedule.log_every == 0 or self.step == self.schedule.steps):
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
                limit = self.schedule.time_limit
                late = limit is not None and time.monotonic() - start + 3 * statistics.median(durations) + 5 > limit
                reason = distributed.all_max(2 if flag else int(late), self.device)  # every process stops alike
                if reason:
                    stopped = "signal" if reason == 2 else "time-limit"
                    break
        self.elapsed = wall_time()
        self.save()
        if stopped == "done" and main:
            save_tensors(self.run_dir / "model.pt", self.model.state_dict())
        return {"stopped": stopped, "signal": flag.get("signal"), "step": self.step,
                "skipped": self.skipped, "wall_time": self.elapsed}
