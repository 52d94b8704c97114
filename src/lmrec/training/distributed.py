"""Process-group helpers: the same training code runs alone or under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous address; we
pick NCCL when every process has a GPU and gloo otherwise (CPU), and each process uses its own GPU by local
rank.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (``1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment of a ``torchrun`` worker is present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str) -> DistContext:
    """Join the process group ``torchrun`` prepared (idempotent); a single process when not launched by it.

    Parameters
    ----------
    device:
        ``"cuda"`` uses NCCL and binds the process to GPU ``LOCAL_RANK``; anything else uses gloo.
    """
    if not launched_by_torchrun():
        return DistContext()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        # DistributedDataParallel imports torch._dynamo on first use, and that import, made while a process
        # group exists, keeps references to the group that are never dropped (torch 2.13): cleanup's
        # destroy_process_group then cannot tear gloo's loop and worker threads down, and they run on
        # through interpreter shutdown (the likely source of a test worker's rare abort at exit, "terminate
        # called without an active exception"). Imported before the group exists, it holds nothing, and
        # cleanup leaves no thread of the group behind (tests/training/test_distributed.py).
        importlib.import_module("torch._dynamo")
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local)


def process_device(device: str, ctx: DistContext) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` for a distributed GPU run, else ``device`` as given."""
    if device.startswith("cuda") and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


def all_reduce_sum(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over processes (a copy; the input is unchanged). Identity when not distributed."""
    if not ctx.enabled:
        return x
    y = x.clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def broadcast_floats(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every process (how one validation result steers all of them)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (call once at the end of a distributed run, on every process).

    The processes meet at a barrier first, so none tears its connections down while another still talks to
    it (rank 0 hosts the rendezvous store): a process that leaves early can make a busy peer abort at exit.
    A one-process ``torchrun`` job's group is left too (NCCL warns at exit about a group never destroyed).
    """
    if dist.is_initialized() and (ctx.enabled or launched_by_torchrun()):
        if ctx.enabled:
            dist.barrier()
        dist.destroy_process_group()


def machine_threads() -> int:
    """CPU cores this process may use (respects affinity masks and cgroup-pinned sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
