"""Training-step time of the translators at the ``tiny`` preset (run explicitly):

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/bench_methods.py --benchmark-enable -q -s

One step = one generator and one discriminator update on a batch of 4 shapes samples at
64x64, one thread. Reports wall seconds per step (pytest-benchmark) and process CPU
seconds per step (``time.process_time``: close to the uncontended wall time on a shared
machine).
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch

from evalkit.data import collate, get_dataset
from evalkit.methods.registry import build_translator

VARIANTS = ["spade", "spade-vae", "cocosnet", "rabit", "rabit-code", "unite", "unite-code"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_train_step(benchmark, variant):
    torch.set_num_threads(1)
    ds = get_dataset("shapes", split="train", size=64, n=8, seed=0)
    batch = collate([ds[i] for i in range(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = build_translator(variant, cond_channels=ds.cond_channels, preset="tiny")
        t.train_step(batch)  # warm-up: lazy VGG, optimiser state, allocator
        cpu0 = time.process_time()
        benchmark.pedantic(t.train_step, args=(batch,), rounds=5, iterations=1)
        cpu = (time.process_time() - cpu0) / 5
    benchmark.extra_info["cpu_s_per_step"] = cpu
    print(f"\n{variant}: {benchmark.stats.stats.mean:.3f} s/step wall, {cpu:.3f} s/step CPU (tiny, 64px, batch 4, 1 thread)")


STYLE_VARIANTS = ["spade", "spade-vae", "cocosnet", "rabit", "rabit-code", "unite", "unite-code"]


def test_style_transfer_table(tmp_path_factory):
    """Short training per variant on shapes, then style consistency and LPIPS to the ground truth.

    ``EVALKIT_BENCH_STEPS`` (default 300) steps at the tiny preset, batch 4, 512 training
    samples; 64 test samples. Metrics use random-init backbones unless the pretrained
    files are installed (the protocol column says which). Prints one row per variant.
    """
    import os

    from evalkit.metrics import evaluate_folders
    from evalkit.methods.training import infer, train

    steps = int(os.environ.get("EVALKIT_BENCH_STEPS", "300"))
    root = tmp_path_factory.mktemp("style")
    train_ds = get_dataset("shapes", split="train", size=64, n=512, seed=0)
    test_ds = get_dataset("shapes", split="test", size=64, n=64, seed=0)
    rows = []
    for variant in STYLE_VARIANTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = build_translator(variant, cond_channels=train_ds.cond_channels, preset="tiny")
            train(t, train_ds, steps=steps, out_dir=root / variant.replace("/", "__"), batch_size=4, progress=False)
            vdir = infer(t, test_ds, root / "outputs", progress=False)
        df = evaluate_folders(vdir / "images", root / "outputs" / "inputs" / "real",
                              exemplars=root / "outputs" / "inputs" / "exemplar", metrics=["lpips", "vgg", "psnr"],
                              weights="random", progress=False)
        rows.append((variant, {r.metric: r.value for r in df.itertuples()}))
    names = sorted({m for _, vals in rows for m in vals})
    print("\n| variant | " + " | ".join(names) + " |")
    for variant, vals in rows:
        print(f"| {variant} | " + " | ".join(f"{vals.get(m, float('nan')):.4f}" for m in names) + " |")
