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
from methods.registry import build_translator

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
