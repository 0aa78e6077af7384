"""Multi-process runs under ``torchrun --nproc_per_node N`` (DDP), and their evaluation.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init` joins the process group (NCCL on CUDA, gloo on CPU).

Evaluation (:func:`evaluate_folders`): the samples of an outputs folder are sharded
across ranks by *query* (all exemplars of one conditional input stay on one rank, so
LPIPS diversity groups are whole); each rank runs the backbones (Inception, VGG19,
LPIPS-AlexNet) over its shard only, and the per-item features are gathered to rank 0
with ``all_gather_object``. Rank 0 puts them into the run's feature cache (keys are the
image contents, so a feature is the same whichever rank computed it) and computes every
metric over the whole set exactly as a single process does: set statistics (FID, KID,
SWD) are never averaged over shards. The result is broadcast, so every rank returns it.

Training (:func:`average_gradients`): every rank trains on its own shard of batches
and gradients are averaged across ranks after each backward pass (what DDP's reducer
does), so all replicas take identical optimiser steps.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from evalkit.errors import EvalkitError

SHARD_METRICS = ("fid", "kid", "lpips", "lpips-diversity", "vgg")  # the families with per-item features


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
    """This rank's device: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun."""
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


def shard_groups(groups: list[list[int]], rank: int, world_size: int) -> list[int]:
    """Item indices of ``rank``: groups dealt round-robin, each group kept whole, sorted."""
    return sorted(i for g in groups[rank::world_size] for i in g)


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
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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


def _cache_entries(root: Path) -> dict[tuple[str, str], np.ndarray]:
    """Every entry of a :class:`evalkit.features.FeatureCache` folder (``<ns>/<k[:2]>/<k>.npy``)."""
    out = {}
    for p in root.rglob("*.npy"):
        rel = p.relative_to(root).parts
        if len(rel) == 3 and not p.name.startswith("."):
            out[(rel[0], p.stem)] = np.load(p, allow_pickle=False)
    return out


def _layout(generated: Path, real: Path, exemplars: Path | None, pairs: Path | None):
    """Generated, paired real and exemplar uint8 arrays and the query groups of an outputs folder."""
    from evalkit.images import list_images, load_image, stack_images
    from evalkit.metrics.evaluate import read_pairs

    gen_files = list_images(generated)
    names = [p.stem for p in gen_files]
    real_by = {p.stem: p for p in list_images(real)}
    missing = [n for n in names if n not in real_by]
    if missing:
        raise EvalkitError(f"{real}: distributed evaluation needs a real image per generated one; missing {missing[:3]}")
    rows = read_pairs(pairs) if pairs is not None else [{"name": n, "query": n, "exemplar_name": n} for n in names]
    index = {n: i for i, n in enumerate(names)}
    by_query: dict[str, list[int]] = {}
    for r in rows:
        if r["name"] not in index:
            raise EvalkitError(f"{pairs}: sample '{r['name']}' is listed but {generated} has no image with that name")
        by_query.setdefault(r["query"], []).append(index[r["name"]])
    listed = {i for g in by_query.values() for i in g}
    groups = list(by_query.values()) + [[i] for i in range(len(names)) if i not in listed]
    gen = stack_images([load_image(p) for p in gen_files], names, str(generated))
    re_ = stack_images([load_image(real_by[n]) for n in names], names, str(real))
    ex = None
    if exemplars is not None:
        ex_by = {p.stem: p for p in list_images(exemplars)}
        alias = {r["name"]: r["exemplar_name"] for r in rows}
        ex_files = [ex_by.get(n) or ex_by.get(alias.get(n, "")) for n in names]
        if any(f is None for f in ex_files):
            raise EvalkitError(f"{exemplars}: no exemplar for some samples; add them or fix the pair list")
        ex = stack_images([load_image(p) for p in ex_files], names, str(exemplars))
    return gen, re_, ex, groups


def evaluate_folders(generated, real, *, exemplars=None, pairs=None, metrics=None, weights: str = "pretrained",
                     cache_dir, seed: int = 0, backbones: dict | None = None, device: str = "cpu") -> pd.DataFrame:
    """:func:`evalkit.metrics.evaluate_folders` with the backbone passes sharded over ranks.

    Every rank must call it with the same arguments. ``cache_dir`` is rank 0's feature
    cache (the gathered features land there). ``df.attrs["shard_sizes"]`` lists how many
    samples each rank embedded. In a single process it is the plain evaluation.
    """
    from evalkit.features import FeatureCache
    from evalkit.metrics import evaluate_arrays
    from evalkit.metrics import evaluate_folders as evaluate_all

    e = env()
    device = local_device(device)
    kw = dict(exemplars=exemplars, pairs=pairs, metrics=metrics, weights=weights, seed=seed, backbones=backbones,
              device=device)
    if e.world_size == 1:
        df = evaluate_all(generated, real, cache_dir=cache_dir, progress=False, **kw)
        df.attrs["shard_sizes"] = [int(df["n"].max())]
        return df
    gen, re_, ex, groups = _layout(Path(generated), Path(real), None if exemplars is None else Path(exemplars),
                                   None if pairs is None else Path(pairs))
    mine = shard_groups(groups, e.rank, e.world_size)
    if len(mine) < 2:
        raise EvalkitError(f"rank {e.rank} got {len(mine)} sample(s) of {len(gen)}: too few for {e.world_size} ranks "
                           f"(FID/KID need 2 per shard); use fewer processes")
    local_groups = [[mine.index(i) for i in g] for g in groups[e.rank::e.world_size] if len(g) >= 2]
    wanted = [m.lower() for m in (metrics or SHARD_METRICS)]
    shard_metrics = [m for m in SHARD_METRICS if m in wanted and (m != "lpips-diversity" or local_groups)]
    with tempfile.TemporaryDirectory(prefix=f"evalkit-rank{e.rank}-") as tmp:
        evaluate_arrays(gen[mine], re_[mine], exemplars_uint8=None if ex is None else ex[mine],
                        groups=local_groups or None, metrics=shard_metrics, weights=weights, cache_dir=tmp,
                        seed=seed, backbones=backbones, device=device)
        entries = _cache_entries(Path(tmp))
    gathered: list = [None] * e.world_size
    dist.all_gather_object(gathered, (len(mine), entries))
    df = None
    if e.is_main:
        cache = FeatureCache(cache_dir)
        for _, part in gathered:
            for (ns, key), value in part.items():
                cache.put(ns, key, value)
        df = evaluate_all(generated, real, cache_dir=cache_dir, progress=False, **kw)
    df = broadcast(df)
    df.attrs["shard_sizes"] = [n for n, _ in gathered]
    return df
