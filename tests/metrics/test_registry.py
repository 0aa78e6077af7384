"""The metric registry: a family declared in this file alone is computed by
``evaluate_folders``, ranked by the leaderboard with its direction, and sharded over two
gloo ranks, with no other file touched (issue 10, item 3)."""

from __future__ import annotations

import os
import pickle
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from evalkit.features import FeatureCache, cached_per_item
from evalkit.metrics import registry
from evalkit.metrics.registry import MetricSpec, RowSpec

FAMILY, ROW, BACKBONE = "toy-colour-gap", "ToyColourGap", "toy-mean-colour"


class MeanColour(torch.nn.Module):
    """The toy backbone: each image's mean colour (counts the images it embeds)."""

    resize, backbone, weights_id = "none", BACKBONE, "none"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, images_uint8):
        self.calls += len(images_uint8)
        return images_uint8.double().mean(dim=(2, 3))

    def protocol_key(self) -> dict:
        return {"backbone": BACKBONE}


def _compute(ctx):
    """|| mean colour of the generated set - mean colour of the real set || (a set statistic
    over per-item features, which go through the feature cache, so they shard)."""
    inp, net, n = ctx.inputs, ctx.backbones[BACKBONE], ctx.n
    images = list(inp.generated) + list(inp.real)
    feats = cached_per_item(ctx.cache, FeatureCache.namespace(**net.protocol_key()), inp.gen_hash + inp.real_hash,
                            lambda idx: list(net(torch.stack([images[i] for i in idx])).numpy()), batch_size=4)
    gap = np.linalg.norm(np.mean(feats[:n], axis=0) - np.mean(feats[n:], axis=0))
    return [ctx.row(ROW, "toy", gap, n, ctx.protocol(net))]


def register_toy():
    registry.register_backbone(BACKBONE, lambda options, device: MeanColour(), replace=True)
    registry.register_metric(MetricSpec(FAMILY, rows=(RowSpec(ROW, higher_is_better=False, decimals=2),),
                                        compute=_compute, needs=("sets",), backbone=BACKBONE, shards=True),
                             replace=True)


@pytest.fixture
def toy_family():
    register_toy()
    yield
    registry.unregister_metric(FAMILY)


def _closed_form(gen: np.ndarray, real: np.ndarray) -> float:
    return float(np.linalg.norm(gen.astype(np.float64).mean(axis=(0, 2, 3)) - real.astype(np.float64).mean(axis=(0, 2, 3))))


def test_toy_family_is_computed_ranked_and_listed(toy_family, tmp_path, photos, write_folder):
    from evalkit.metrics import evaluate_folders
    from evalkit.reports import leaderboard
    from evalkit.reports import results as R

    real_imgs = photos(8, 32)
    real = write_folder(tmp_path / "real", real_imgs)
    close = write_folder(tmp_path / "close", np.clip(real_imgs.astype(int) + 3, 0, 255).astype(np.uint8))
    far = write_folder(tmp_path / "far", 255 - real_imgs)
    assert FAMILY in registry.families()
    tables = []
    for name, folder, imgs in (("close", close, np.clip(real_imgs.astype(int) + 3, 0, 255)), ("far", far, 255 - real_imgs)):
        df = evaluate_folders(folder, real, metrics=[FAMILY], weights="random", cache_dir=False, progress=False)
        assert list(df["metric"]) == [ROW]
        assert df["value"].iloc[0] == pytest.approx(_closed_form(imgs, real_imgs), rel=1e-12)
        tables.append(R.make_rows(df, run_id="r", method=name, dataset="d", split="test", seed=0, variant=name))
    # "all that apply" selects it too, and a one-image set skips it with its need's reason
    from evalkit.metrics.evaluate import _select, load_inputs

    assert FAMILY in _select(None, load_inputs(close, real))
    one = write_folder(tmp_path / "one", real_imgs[:1])
    assert FAMILY not in _select(None, load_inputs(one, real))
    assert R.higher_is_better(ROW) is False and R.arrow(ROW) == "↓" and R.decimals(ROW) == 2
    lb = leaderboard.build(pd.concat(tables, ignore_index=True))
    cells = lb.cells.set_index("variant")
    assert cells.loc["close", "rank"] == 1 and cells.loc["far", "rank"] == 2  # real ranks
    assert cells.loc["close", "mark"] == 1 and cells.loc["far", "mark"] == 0  # two rows: only the best is bold
    assert f"{ROW} ↓" in leaderboard.to_markdown(lb)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, gen, real, cache, result):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from evalkit import distributed
    from evalkit.metrics import sharded

    register_toy()  # the spawned rank registers the family from this file, as the parent did
    distributed.init("gloo")
    net = MeanColour()
    df = sharded.evaluate_folders(gen, real, metrics=[FAMILY], weights="random", cache_dir=cache,
                                  backbones={BACKBONE: net})
    with open(f"{result}.{rank}", "wb") as f:
        pickle.dump((df, df.attrs["shard_sizes"], net.calls), f)
    distributed.shutdown()


def test_toy_family_shards_over_two_ranks(toy_family, tmp_path, photos, write_folder):
    from evalkit.metrics import evaluate_folders

    real_imgs = photos(8, 32)
    gen_imgs = 255 - real_imgs
    real = write_folder(tmp_path / "real", real_imgs)
    gen = write_folder(tmp_path / "gen", gen_imgs)
    single = evaluate_folders(gen, real, metrics=[FAMILY], weights="random", cache_dir=False, progress=False)
    result = tmp_path / "result"
    mp.spawn(_worker, args=(2, _free_port(), str(gen), str(real), str(tmp_path / "cache"), str(result)), nprocs=2,
             join=True)
    for rank in (0, 1):
        with open(f"{result}.{rank}", "rb") as f:
            df, shards, calls = pickle.load(f)
        assert shards == [4, 4]
        # each rank embedded only its shard (4 generated + their 4 real images); rank 0's
        # whole-set evaluation read every feature from the gathered cache
        assert calls == 8
        assert df["value"].iloc[0] == pytest.approx(single["value"].iloc[0], rel=1e-12)
        assert df["value"].iloc[0] == pytest.approx(_closed_form(gen_imgs, real_imgs), rel=1e-12)
