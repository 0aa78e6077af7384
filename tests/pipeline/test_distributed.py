import os
import pickle

import pandas as pd
import pytest
import torch.multiprocessing as mp

from evalkit import distributed
from evalkit.methods import ddp
from evalkit.metrics import sharded
from pipeline_helpers import free_port, make_outputs

METRICS = ["fid", "kid", "swd", "lpips", "lpips-diversity", "psnr", "ssim"]


def _backbones():
    """Inception replaced by a toy extractor (8x8 average pool of the 299 px input, 192-d):
    the same resize, cache and gather path, without Inception's cost on two CPU cores."""
    import torch.nn.functional as F

    from evalkit.features import InceptionFID

    return {"inception": InceptionFID("clean", "random", network=lambda x: F.adaptive_avg_pool2d(x, 8).flatten(1),
                                      network_id="toy-avgpool8")}


def _worker(rank, world, port, out_dir, cache, result):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch

    torch.set_num_threads(1)
    e = distributed.init("gloo")
    bb = _backbones()
    assert e.world_size == world and e.rank == rank
    df = sharded.evaluate_folders(f"{out_dir}/reference__blur/images", f"{out_dir}/inputs/real",
                                      exemplars=f"{out_dir}/inputs/exemplar", pairs=f"{out_dir}/inputs/pairs.csv",
                                      metrics=METRICS, weights="random", cache_dir=cache, backbones=bb)
    with open(f"{result}.{rank}", "wb") as f:
        pickle.dump((df, df.attrs["shard_sizes"], bb["inception"].calls), f)
    distributed.shutdown()


def test_shard_groups_keeps_queries_whole():
    groups = [[0, 1], [2, 3], [4, 5], [6]]
    assert sharded.shard_groups(groups, 0, 2) == [0, 1, 4, 5]
    assert sharded.shard_groups(groups, 1, 2) == [2, 3, 6]


def test_two_gloo_ranks_equal_one_process(tmp_path):
    out = make_outputs(tmp_path / "out")
    single = sharded.evaluate_folders(out / "reference__blur" / "images", out / "inputs" / "real",
                                          exemplars=out / "inputs" / "exemplar", pairs=out / "inputs" / "pairs.csv",
                                          metrics=METRICS, weights="random", cache_dir=tmp_path / "cache1",
                                          backbones=_backbones())
    result = tmp_path / "result"
    mp.spawn(_worker, args=(2, free_port(), str(out), str(tmp_path / "cache2"), str(result)), nprocs=2, join=True)
    frames = []
    for rank in (0, 1):
        with open(f"{result}.{rank}", "rb") as f:
            df, shards, calls = pickle.load(f)
        assert shards == [4, 4]  # 4 queries x 2 exemplars, dealt 2 queries a rank
        # One Inception batch per rank (its own 4 generated + 4 real images); rank 0's pass over
        # the whole set reads every feature from what was gathered and runs no backbone again.
        assert calls == 1
        frames.append(df)
    pd.testing.assert_frame_equal(frames[0], frames[1])  # every rank returns the result
    a = single.set_index("metric")["value"]
    b = frames[0].set_index("metric")["value"]
    assert set(a.index) == {"FID", "KID", "KID-std", "SWD", "SWD@16", "SWD@32", "LPIPS-gt", "LPIPS-diversity",
                            "PSNR", "SSIM"}
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index(), rtol=1e-6, atol=1e-9)


def _train_worker(rank, world, port, ckpt_dir, result):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch

    from evalkit.data import get_dataset
    from evalkit.methods.registry import build_translator

    torch.set_num_threads(1)
    distributed.init("gloo")
    ds = get_dataset("shapes", split="train", size=32, n=8, seed=0)
    tr = build_translator("spade", cond_channels=ds.cond_channels, preset="tiny", seed=0, size=32)
    init = {k: v.clone() for k, v in tr.state_dict().items()}
    ddp.train_ddp(tr, ds, steps=2, out_dir=ckpt_dir, resume=False, batch_size=2, seed=0, device="cpu")
    with open(f"{result}.{rank}", "wb") as f:
        pickle.dump(({k: v.clone() for k, v in tr.state_dict().items()}, init), f)
    distributed.shutdown()


def test_ddp_training_keeps_replicas_identical(tmp_path):
    import torch

    result = tmp_path / "state"
    mp.spawn(_train_worker, args=(2, free_port(), str(tmp_path / "ckpt"), str(result)), nprocs=2, join=True)
    states = []
    for rank in (0, 1):
        with open(f"{result}.{rank}", "rb") as f:
            states.append(pickle.load(f))
    (s0, init0), (s1, init1) = states
    # Same seeded init, different samples (rank 0: 0, 2, 4, 6; rank 1: 1, 3, 5, 7), averaged
    # gradients: the replicas take identical steps and end identical, and they did move.
    assert all(torch.equal(init0[k], init1[k]) for k in init0)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert any(not torch.equal(s0[k], init0[k]) for k in s0 if s0[k].is_floating_point())
    assert (tmp_path / "ckpt" / "last.pt").is_file()  # rank 0 writes the checkpoint


def test_torchrun_run_two_ranks_matches_single_process_evaluation(tmp_path):
    """The README's ``torchrun ... -m evalkit run CONFIG`` on the tiny config: both ranks exit 0
    (no abort at exit), rank 0 alone writes results.csv, whose numbers equal a
    single-process evaluation of the same outputs; a second launch skips every stage."""
    import json
    import subprocess
    import sys

    from evalkit.pipeline import evaluate_outputs
    from pipeline_helpers import ROOT, tiny_config
    from evalkit.reports import results as R

    cfg = tiny_config(tmp_path / "runs")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "evalkit", "run", str(cfg), "--json", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    summary = json.loads(first.stdout)  # only rank 0 prints
    assert len(summary["stages_computed"]) == 7 and summary["stages_skipped"] == []
    run_dir = tmp_path / "runs" / "tiny-ci"
    table = R.read(run_dir / "results.csv")
    assert not table.duplicated(["variant", "metric"]).any() and set(table["variant"]) == {"spade", "cocosnet"}
    for variant in ("spade", "cocosnet"):
        single = evaluate_outputs(run_dir / "outputs" / "shapes" / "seed0", variant, metrics=METRICS,
                                  weights="random", cache_dir=tmp_path / f"cache-{variant}")
        a = single.set_index("metric")["value"].sort_index()
        b = table[table["variant"] == variant].set_index("metric")["value"].sort_index()
        pd.testing.assert_series_equal(a, b, rtol=1e-5, atol=1e-7, check_names=False)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads(again.stdout)["stages_skipped"] == summary["stages_computed"]
