"""Sharded evaluation under ``torchrun``: the backbone passes split over the ranks.

the samples of an outputs folder are sharded
across ranks by *query* (all exemplars of one conditional input stay on one rank, so
LPIPS diversity groups are whole); each rank runs the backbones (Inception, VGG19,
LPIPS-AlexNet) over its shard only, and the per-item features are gathered to rank 0
with ``all_gather_object``. Rank 0 puts them into the run's feature cache (keys are the
image contents, so a feature is the same whichever rank computed it) and computes every
metric over the whole set exactly as a single process does: set statistics (FID, KID,
SWD) are never averaged over shards. The result is broadcast, so every rank returns it.
Which families shard is declared in :mod:`evalkit.metrics.registry` (``MetricSpec.shards``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch.distributed as dist

from evalkit.distributed import broadcast, env, local_device
from evalkit.errors import EvalkitError


def shard_groups(groups: list[list[int]], rank: int, world_size: int) -> list[int]:
    """Item indices of ``rank``: groups dealt round-robin, each group kept whole, sorted."""
    return sorted(i for g in groups[rank::world_size] for i in g)


def _cache_entries(root: Path) -> dict[tuple[str, str], np.ndarray]:
    """Every entry of a :class:`evalkit.features.FeatureCache` folder (``<ns>/<k[:2]>/<k>.npy``)."""
    out = {}
    for p in root.rglob("*.npy"):
        rel = p.relative_to(root).parts
        if len(rel) == 3 and not p.name.startswith("."):
            out[(rel[0], p.stem)] = np.load(p, allow_pickle=False)
    return out


def evaluate_folders(generated, real, *, exemplars=None, pairs=None, options=None, backbones: dict | None = None,
                     **option_fields) -> pd.DataFrame:
    """:func:`evalkit.metrics.evaluate_folders` with the backbone passes sharded over ranks.

    Every rank must call it with the same arguments. ``options.cache_dir`` is rank 0's
    feature cache (the gathered features land there). ``df.attrs["shard_sizes"]`` lists how
    many samples each rank embedded. In a single process it is the plain evaluation.
    """
    from evalkit.features import FeatureCache
    from evalkit.metrics import registry
    from evalkit.metrics.evaluate import evaluate_arrays, load_inputs
    from evalkit.metrics.evaluate import evaluate_folders as evaluate_all
    from evalkit.metrics.options import options_from

    e = env()
    options = options_from(options, **option_fields)
    options = options.replace(device=local_device(options.device))
    kw = dict(exemplars=exemplars, pairs=pairs, options=options, backbones=backbones, progress=False)
    if e.world_size == 1:
        df = evaluate_all(generated, real, **kw)
        df.attrs["shard_sizes"] = [int(df["n"].max())]
        return df
    inp = load_inputs(generated, real, exemplars=exemplars, pairs=pairs, protocol=options.check().protocol)
    if inp.pairs is None:
        raise EvalkitError(f"{real}: distributed evaluation needs a real image of the same size per generated one")
    grouped = {i for g in inp.groups or [] for i in g}
    groups = list(inp.groups or []) + [[i] for i in range(len(inp.generated)) if i not in grouped]
    mine = shard_groups(groups, e.rank, e.world_size)
    if len(mine) < 2:
        raise EvalkitError(f"rank {e.rank} got {len(mine)} sample(s) of {len(inp.generated)}: too few for "
                           f"{e.world_size} ranks (FID/KID need 2 per shard); use fewer processes")
    local_groups = [[mine.index(i) for i in g] for g in groups[e.rank::e.world_size] if len(g) >= 2]
    wanted = options.metrics or registry.shard_families()
    available = {"groups": bool(local_groups), "sets": True, "pairs": True, "equal-sets": True,
                 "exemplars": inp.exemplars is not None}
    shard_metrics = [f for f in registry.shard_families()
                     if f in wanted and registry.spec(f).unavailable(available, (len(mine), len(mine))) is None]
    with tempfile.TemporaryDirectory(prefix=f"evalkit-rank{e.rank}-") as tmp:
        evaluate_arrays(inp.generated[mine], inp.paired_real[mine],
                        exemplars_uint8=None if inp.exemplars is None else inp.exemplars[mine],
                        groups=local_groups or None, backbones=backbones, encoded=True,
                        options=options.replace(metrics=tuple(shard_metrics), cache_dir=Path(tmp), cache=True))
        entries = _cache_entries(Path(tmp))
    gathered: list = [None] * e.world_size
    dist.all_gather_object(gathered, (len(mine), entries))
    df = None
    if e.is_main:
        cache = FeatureCache(options.cache_root)
        for _, part in gathered:
            for (ns, key), value in part.items():
                cache.put(ns, key, value)
        df = evaluate_all(generated, real, **kw)
    df = broadcast(df)
    df.attrs["shard_sizes"] = [n for n, _ in gathered]
    return df
