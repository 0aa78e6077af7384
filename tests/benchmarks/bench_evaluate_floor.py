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
The floor is measured before and after it, and the faster of the two is kept. The images are
PNG crops of the photographs in ../shared/data (``bench_evaluate_scale.write_pairs``).
``EVALKIT_BENCH_FLOOR`` sets the cases as ``N:SIZE`` pairs (default ``32:128,256:256``).
Prints each part of the floor, the wall time and the ratio; writes nothing.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torchvision

from bench_evaluate_scale import run_evaluate_with, write_pairs

BATCH = 32
CASES = [tuple(int(v) for v in case.split(":"))
         for case in os.environ.get("EVALKIT_BENCH_FLOOR", "32:128,256:256").split(",")]


def _seconds(net: torch.nn.Module, n: int, size: int) -> float:
    """One warm channels_last pass of ``net`` over ``n`` images of ``size`` px, batch 32."""
    net = net.eval().to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        net(x[:2])
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            net(x[: min(BATCH, n - first)])
    return time.perf_counter() - start


def floor_seconds(n: int, size: int) -> dict[str, float]:
    """The floor's parts for ``n`` generated, ``n`` real and ``n`` exemplar images."""
    torch.manual_seed(0)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    inception.fc = torch.nn.Identity()
    vgg = torchvision.models.vgg19(weights=None).features[:32]  # through relu5_2
    alex = torchvision.models.alexnet(weights=None).features
    return {"inception-v3 @299 x 2N": _seconds(inception, 2 * n, 299),
            f"vgg19 relu5_2 @{size} x 3N": _seconds(vgg, 3 * n, size),
            f"alexnet @{size} x 2N": _seconds(alex, 2 * n, size)}


@pytest.mark.parametrize("n,size", CASES)
def test_evaluate_against_its_floor(shared_data, tmp_path, n, size):
    gen, real = write_pairs(shared_data, tmp_path / "pairs", n, size)
    _, exemplars = write_pairs(shared_data, tmp_path / "exemplars", n, size, seed=1)
    before = floor_seconds(n, size)
    run = run_evaluate_with(["--generated", str(gen), "--real", str(real), "--exemplars", str(exemplars)])
    after = floor_seconds(n, size)
    parts = {k: min(before[k], after[k]) for k in before}
    floor = sum(parts.values())
    print(f"\n{n} + {n} (+ {n} exemplars) at {size} px, torch threads {torch.get_num_threads()}")
    for name, s in parts.items():
        print(f"  floor {name:<26} {s:7.2f} s")
    print(f"  floor total                      {floor:7.2f} s")
    print(f"  evalkit evaluate (fresh process) {run['wall_s']:7.2f} s  peak RSS {run['peak_rss_gib']:.2f} GiB")
    print(f"  ratio to the floor               {run['wall_s'] / floor:7.2f}  (target 1.3)")
    assert {r["metric"] for r in run["rows"]} >= {"FID", "KID", "SWD", "LPIPS-gt", "style-mean", "PSNR", "SSIM"}
