"""Process-group helpers for runs under ``torchrun --nproc_per_node N``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init` joins the process group (NCCL on CUDA, gloo on CPU),
:func:`shutdown` leaves it. What runs over the group lives with its concept: sharded
evaluation in :mod:`evalkit.metrics.sharded`, DDP training in :mod:`evalkit.methods.ddp`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env() -> DistEnv:
    """Rank and world size from the process group, else from torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init(backend: str | None = None) -> DistEnv:
    """Join the process group when launched by torchrun with ``WORLD_SIZE > 1`` (idempotent)."""
    e = env()
    if e.world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(e.local_rank)
        dist.init_process_group(backend=backend)
    return env()


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group (no-op when none was joined). ``wait`` first holds every rank
    at a barrier, so no rank closes its gloo connections while a peer is still finishing a
    collective: exiting without this (or while a peer still talks) can abort the process
    at interpreter exit (``terminate called without an active exception``, SIGABRT).
    Pass ``wait=False`` on an error path, where the peers may never reach the barrier."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """This rank's device (``auto`` resolved first): ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun."""
    from evalkit.devices import resolve_device

    device = str(resolve_device(device))
    e = env()
    return f"cuda:{e.local_rank}" if device.startswith("cuda") and e.world_size > 1 else device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
