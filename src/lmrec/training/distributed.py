"""Process-group helpers: the same training code runs alone or under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous address; we
pick NCCL when every process has a GPU and gloo otherwise (CPU), and each process uses its own GPU by local
rank.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

#: How long rank 0 waits at :func:`cleanup` for the other ranks to leave before it leaves anyway.
LEAVE_TIMEOUT = timedelta(seconds=60)
_LEFT = "lmrec/left"  # the store keys the other ranks set when they have left


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

    The processes meet at a barrier, then leave one way round: every other rank tears its group down and says
    so in the rendezvous store, and rank 0 leaves last, once all of them have (waiting at most
    :data:`LEAVE_TIMEOUT`). Rank 0 may host the store (an ``env://`` rendezvous outside ``torchrun``), and a
    peer that loses its connections while it is still leaving can abort at exit ("terminate called without
    an active exception": a barrier alone left that to chance, and a fresh-clone CI run hit it).
    A one-process ``torchrun`` job's group is left too (NCCL warns at exit about a group never destroyed).
    """
    if not dist.is_initialized() or not (ctx.enabled or launched_by_torchrun()):
        return
    if not ctx.enabled:
        dist.destroy_process_group()
        return
    store = dist.distributed_c10d._get_default_store()  # kept: the group's own reference goes at destroy
    dist.barrier()
    if ctx.rank != 0:
        dist.destroy_process_group()
        store.set(f"{_LEFT}/{ctx.rank}", "1")
        return
    # a peer that died or hangs: leave anyway (the store raises at the timeout; results are already written)
    with contextlib.suppress(RuntimeError):
        store.wait([f"{_LEFT}/{r}" for r in range(1, ctx.world_size)], LEAVE_TIMEOUT)
    dist.destroy_process_group()


def machine_threads() -> int:
    """CPU cores this process may use (respects affinity masks and cgroup-pinned sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
