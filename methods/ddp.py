"""DDP training under ``torchrun``.

Training (:func:`average_gradients`): every rank trains on its own shard of batches
and gradients are averaged across ranks after each backward pass (what DDP's reducer
does), so all replicas take identical optimiser steps.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from evalkit.devices import resolve_device
from evalkit.distributed import barrier, env


def average_gradients(module: torch.nn.Module) -> list:
    """Average every parameter's gradient over the process group right after it is
    accumulated (one ``all_reduce`` per parameter); returns the hook handles."""
    if not dist.is_initialized():
        return []
    world = dist.get_world_size()

    def hook(p):
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)

    return [p.register_post_accumulate_grad_hook(hook) for p in module.parameters() if p.requires_grad]


def train_ddp(translator, dataset, *, steps: int, out_dir: str | Path, resume: bool, batch_size: int, seed: int,
              device=None) -> Path:
    """:func:`evalkit.methods.training.train` on every rank: rank ``r`` draws its batches from
    samples ``r, r + W, ...`` and gradients are averaged over ranks (:func:`average_gradients`),
    so the effective batch is ``W · batch_size`` and every replica stays identical.
    Rank 0 writes the checkpoints into ``out_dir``; the others keep theirs in a temp folder
    (seeded from rank 0's checkpoint when resuming). Call on every rank."""
    import shutil

    from torch.utils.data import Subset

    from evalkit.methods.training import CHECKPOINT, train

    e = env()
    out_dir = Path(out_dir)
    shard = Subset(dataset, list(range(e.rank, len(dataset), e.world_size)))
    shard.name = getattr(dataset, "name", type(dataset).__name__)
    device = resolve_device(device)
    translator = translator.prepare_device(device) if hasattr(translator, "prepare_device") else translator.to(device)
    handles = average_gradients(translator)
    try:
        with tempfile.TemporaryDirectory(prefix=f"evalkit-train-rank{e.rank}-") as tmp:
            own = out_dir if e.is_main else Path(tmp)
            if resume and not e.is_main:
                shutil.copyfile(out_dir / CHECKPOINT, own / CHECKPOINT)
            train(translator, shard, steps=steps, out_dir=own, resume=resume, batch_size=batch_size, seed=seed,
                  progress=False, device=device)
            barrier()
    finally:
        for h in handles:
            h.remove()
    return out_dir / CHECKPOINT
