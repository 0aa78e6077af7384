"""`evalkit evaluate` against its floor (opt-in benchmark, issue 15 item 1):

    .venv/bin/python -m pytest tests/benchmarks/bench_evaluate_floor.py -s

The floor is one forward pass of each backbone `evaluate` needs over each image that needs
it, the fastest straightforward way on this CPU: torchvision's networks, warm, channels_last,
batch 32, on tensors already at the network's size —
- Inception-v3 at 299 over the generated and the real images (FID, KID, prdc);
- VGG19 to relu5_2 at the images' size over the generated, the real and the exemplar images
  (semantic and style consistency);
- AlexNet's trunk at the images' size over the generated and the real images (LPIPS).

Against it, `evalkit evaluate --generated G --real R --exemplars E --weights random --no-cache
--json` runs in a fresh process as a user runs it from the shell (every metric that applies).
The floor (at each batch) is measured before and after it, and the faster of the two is kept.
The images are PNG crops of the photographs in ../shared/data (``bench_evaluate_scale.write_pairs``).
``EVALKIT_BENCH_FLOOR`` sets the cases as ``N:SIZE`` pairs (default ``32:128,256:256``).
``EVALKIT_BENCH_BEFORE=CHECKOUT`` also runs another checkout's evalkit (``python -m evalkit``
from its root) on the same images, the two interleaved ``EVALKIT_BENCH_REPEATS`` times (default
1): before and after side by side in one run, each with its median. The issue's floor runs batch
32; on this CPU a smaller batch can run a network faster (Inception-v3 5.18 s at batch 8 against
5.68 s at 32 in one run), so the floor is also measured at batches 16 and 8, and the ratio to the
floor at each network's fastest batch is printed beside it. Prints each part of the floor, the
wall times and the ratios; writes nothing.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
import torch
import torchvision

from bench_evaluate_scale import ROOT, run_evaluate_with, write_pairs

BATCH = 32
SMALLER_BATCHES = (16, 8)
CASES = [tuple(int(v) for v in case.split(":"))
         for case in os.environ.get("EVALKIT_BENCH_FLOOR", "32:128,256:256").split(",")]


def _seconds(net: torch.nn.Module, n: int, size: int, batch: int = BATCH) -> float:
    """One warm channels_last pass of ``net`` over ``n`` images of ``size`` px in batches of ``batch``."""
    net = net.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        net(x[:2])
        start = time.perf_counter()
        for first in range(0, n, batch):
            net(x[: min(batch, n - first)])
    return time.perf_counter() - start


def floor_seconds(n: int, size: int, batch: int = BATCH) -> dict[str, float]:
    """The floor's parts for ``n`` generated, ``n`` real and ``n`` exemplar images."""
    torch.manual_seed(0)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    inception.fc = torch.nn.Identity()
    vgg = torchvision.models.vgg19(weights=None).features[:32]  # through relu5_2
    alex = torchvision.models.alexnet(weights=None).features
    return {"inception-v3 @299 x 2N": _seconds(inception, 2 * n, 299, batch),
            f"vgg19 relu5_2 @{size} x 3N": _seconds(vgg, 3 * n, size, batch),
            f"alexnet @{size} x 2N": _seconds(alex, 2 * n, size, batch)}


@pytest.mark.parametrize("n,size", CASES)
def test_evaluate_against_its_floor(shared_data, tmp_path, n, size):
    gen, real = write_pairs(shared_data, tmp_path / "pairs", n, size)
    _, exemplars = write_pairs(shared_data, tmp_path / "exemplars", n, size, seed=1)
    args = ["--generated", str(gen), "--real", str(real), "--exemplars", str(exemplars)]
    roots = {"this checkout": ROOT}
    if os.environ.get("EVALKIT_BENCH_BEFORE"):
        roots = {"before": Path(os.environ["EVALKIT_BENCH_BEFORE"]).resolve(), **roots}
    before = floor_seconds(n, size)
    smaller_before = {b: floor_seconds(n, size, b) for b in SMALLER_BATCHES}
    runs = {name: [] for name in roots}
    for _ in range(int(os.environ.get("EVALKIT_BENCH_REPEATS", "1"))):
        for name, root in roots.items():
            runs[name].append(run_evaluate_with(args, root))
    after = floor_seconds(n, size)
    smaller_after = {b: floor_seconds(n, size, b) for b in SMALLER_BATCHES}
    parts = {k: min(before[k], after[k]) for k in before}
    smaller = {b: {k: min(smaller_before[b][k], smaller_after[b][k]) for k in parts} for b in SMALLER_BATCHES}
    floor = sum(parts.values())
    fastest = {k: min([parts[k]] + [smaller[b][k] for b in SMALLER_BATCHES]) for k in parts}
    print(f"\n{n} + {n} (+ {n} exemplars) at {size} px, torch threads {torch.get_num_threads()}")
    for name, s in parts.items():
        print(f"  floor {name:<26} {s:7.2f} s")
    print(f"  floor total                      {floor:7.2f} s")
    for b in SMALLER_BATCHES:
        print(f"  floor at batch {b:<2}: " + ", ".join(f"{k.split()[0]} {v:.2f} s" for k, v in smaller[b].items())
              + f"; total {sum(smaller[b].values()):.2f} s")
    print(f"  floor at each network's fastest of batches {BATCH}, {', '.join(map(str, SMALLER_BATCHES))}: {sum(fastest.values()):.2f} s")
    for name, done in runs.items():
        walls = [run["wall_s"] for run in done]
        print(f"  evalkit evaluate, {name} (fresh process): " + " ".join(f"{w:.2f}" for w in walls)
              + f" s, peak RSS {max(run['peak_rss_gib'] for run in done):.2f} GiB")
        print(f"    median {statistics.median(walls):7.2f} s  ratio to the floor {statistics.median(walls) / floor:5.2f}"
              f"  (min {min(walls) / floor:.2f}; target 1.3); to the fastest batches' floor "
              f"{statistics.median(walls) / sum(fastest.values()):5.2f}")
    for done in runs.values():
        assert {r["metric"] for r in done[0]["rows"]} >= {"FID", "KID", "SWD", "LPIPS-gt", "style-mean", "PSNR", "SSIM"}
    if len(runs) > 1:  # a change may move numbers on purpose: said, not refused
        values = [{(r["metric"], r.get("metric_variant")): r["value"] for r in done[0]["rows"]} for done in runs.values()]
        differ = sorted(str(k[0]) for k in values[0] if values[0][k] != values[1].get(k))
        print("  the two checkouts' numbers: " + (f"differ in {', '.join(differ)}" if differ else "equal"))
