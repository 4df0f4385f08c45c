"""Multi-process data-parallel training: the process group from the launcher's environment,
and the few collectives the trainer needs.

``boltzflow train`` started by ``torchrun`` or by ``srun`` (one task per process) joins a
process group by itself (``process_group``):

- torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
- srun: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` and ``SLURM_LOCALID``. The step's task
  count (not ``SLURM_NTASKS``, which the batch script itself sees too) tells an srun task
  from the batch shell. ``MASTER_ADDR`` defaults to the first host of
  ``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``), ``MASTER_PORT`` to
  20000 + job id mod 20000; set either to override (``process_group`` exports both).

With one process (no such variables, or a world size of 1) nothing is initialised and every
helper below is the identity. The backend is gloo on the CPU and NCCL on CUDA, where
``--device cuda`` becomes ``cuda:LOCAL_RANK`` (modulo the visible devices, so that a task
that sees only its own GPU, as with ``srun --gpus-per-task=1``, takes ``cuda:0``).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..errors import BoltzflowError


@dataclass(frozen=True)
class Launch:
    """This process's place in a multi-process launch."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: str


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``"node[03-04,07],gpu1"`` → ``"node03"``."""
    entry = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], entry)


def environment(env: Mapping[str, str] = os.environ) -> Optional[Launch]:
    """The launch described by ``env`` (torchrun, then srun), or None for a single process."""
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
        addr, port = env.get("MASTER_ADDR", "127.0.0.1"), env.get("MASTER_PORT", "29500")
    elif int(env.get("SLURM_STEP_NUM_TASKS", 1)) > 1:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"])
        local = int(env.get("SLURM_LOCALID", 0))
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "127.0.0.1")
        addr = env.get("MASTER_ADDR") or first_host(nodes)
        port = env.get("MASTER_PORT") or str(20000 + int(env.get("SLURM_JOB_ID", 0)) % 20000)
    else:
        return None
    return Launch(rank, world, local, addr, port) if world > 1 else None


@contextmanager
def process_group(device: str) -> Iterator[str]:
    """Join the launch's process group for the duration; yields this process's device.

    Without a multi-process launch, or inside a group that already exists (the caller's
    own), yields ``device`` unchanged and leaves the group alone."""
    launch = environment()
    if launch is None or dist.is_initialized():
        yield device
        return
    if device.startswith("cuda"):
        if device != "cuda":
            raise BoltzflowError(f"device {device!r}: with several processes use device 'cuda' "
                                 "(each process takes cuda:LOCAL_RANK)")
        if not torch.cuda.is_available():
            raise BoltzflowError("device 'cuda' requested but CUDA is not available here; use device 'cpu'")
        device, backend = f"cuda:{launch.local_rank % torch.cuda.device_count()}", "nccl"
        torch.cuda.set_device(device)
    else:
        backend = "gloo"
    os.environ.setdefault("MASTER_ADDR", launch.master_addr)
    os.environ.setdefault("MASTER_PORT", launch.master_port)
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def barrier() -> None:
    if _active():
        dist.barrier()


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def gather_lists(items: list) -> list:
    """Every process's ``items`` concatenated in rank order, on every process (tensors on the CPU)."""
    if not _active():
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, _to_cpu(items))
    return [item for part in parts for item in part]


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_max(value: int, device: torch.device) -> int:
    """The largest ``value`` over the processes."""
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_sum(value: int, device: torch.device) -> int:
    """The sum of ``value`` over the processes."""
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return int(t.item())


def broadcast_parameters(model: nn.Module) -> None:
    """Rank 0's parameter values on every process (buffers, e.g. MCMC step sizes, stay per process)."""
    if _active():
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def sum_gradients(model: nn.Module) -> None:
    """Replace each parameter's gradient by its sum over the processes, in one all-reduce of a
    flat buffer (as DDP's reducer does). A parameter without a gradient here but with one
    elsewhere counts as zero here; one without a gradient anywhere keeps ``None``."""
    if not _active():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    params = [p for p, used in zip(params, present.tolist()) if used]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    for p, chunk in zip(params, flat.split([p.numel() for p in params])):
        p.grad = chunk.view_as(p)
