"""Data loading throughput (run explicitly):

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/bench_data.py --benchmark-enable -q -s

Images/s = samples (query + exemplar + condition each) per second through a DataLoader.
"""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from evalkit.data import collate, get_dataset

REPEATS = 4  # passes over the 6 ADE20K validation samples per round


def _drain(loader) -> int:
    n = 0
    for _ in range(REPEATS):
        for batch in loader:
            n += len(batch)
    return n


@pytest.mark.parametrize("workers", [0, 2])
def test_ade20k_256_throughput(benchmark, shared_data, workers):
    ds = get_dataset("ade20k", root=shared_data / "cocosnet_samples" / "imgs" / "ade20k", size=256)
    loader = DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate, persistent_workers=workers > 0)
    _drain(loader)  # warm-up: worker start-up and file cache are not counted
    n = benchmark.pedantic(_drain, args=(loader,), rounds=3, iterations=1)
    rate = n / benchmark.stats.stats.mean
    benchmark.extra_info["images_per_s"] = rate
    print(f"\nADE20K 256px, num_workers={workers}: {rate:.1f} images/s")


def test_shapes_64_samples_64px(benchmark):
    ds = get_dataset("shapes", size=64, n=64, seed=0)
    benchmark.pedantic(lambda: [ds[i] for i in range(64)], rounds=5, iterations=1)
    print(f"\nshapes: 64 samples at 64px in {benchmark.stats.stats.mean:.3f} s")
