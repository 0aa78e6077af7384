"""`evalkit evaluate` at growing N: peak RSS and wall time, run as a user runs it (issue 15 item 3).

    .venv/bin/python -m pytest tests/benchmarks/bench_evaluate_scale.py -s

Each point is one `evalkit evaluate --generated G --real R --weights random --no-cache --json`
in a fresh process; its peak RSS is the child's ``ru_maxrss`` (``os.wait4``). The images are
random crops of the photographs in ../shared/data at ``SIZE`` px, PNG, written once (the
generated image of a pair is its real crop plus noise), so every N reads the same kind of
file. Settings, by environment variable:

- ``EVALKIT_BENCH_N``: the set sizes (default ``500,1000,2000,4000``);
- ``EVALKIT_BENCH_SIZE``: the side in px (default 256);
- ``EVALKIT_BENCH_METRICS``: ``--metrics`` (default: every metric that applies);
- ``EVALKIT_BENCH_OUT``: where the plot and the figures go (default ``docs/figures``).

It writes ``evaluate_scale_<SIZE>px.png`` (peak RSS and wall vs N, log-log, with the fitted
exponents) and ``evaluate_scale_<SIZE>px.json``, and asserts the target: peak RSS within
10 % from the smallest N to the largest. ``test_512px_set`` checks that a 512 px set evaluates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
GRID = [int(n) for n in os.environ.get("EVALKIT_BENCH_N", "500,1000,2000,4000").split(",")]
SIZE = int(os.environ.get("EVALKIT_BENCH_SIZE", "256"))
METRICS = os.environ.get("EVALKIT_BENCH_METRICS", "")
OUT = Path(os.environ.get("EVALKIT_BENCH_OUT", ROOT / "docs" / "figures"))


def _photos(shared_data: Path) -> list[Image.Image]:
    roots = [shared_data / "cocosnet_samples" / "imgs" / "ade20k", shared_data / "spade_coco_stuff"]
    return [Image.open(p).convert("RGB") for r in roots for p in sorted(r.rglob("*.jpg"))]


def write_pairs(shared_data: Path, root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """``n`` real crops and their noisy generated counterparts as PNG in ``root/{gen,real}``."""
    rng = np.random.default_rng(seed)
    photos = _photos(shared_data)
    gen, real = root / "gen", root / "real"
    gen.mkdir(parents=True, exist_ok=True)
    real.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = photos[i % len(photos)]
        side = int(min(im.size) * rng.uniform(0.5, 1.0))
        left, top = rng.integers(0, im.size[0] - side + 1), rng.integers(0, im.size[1] - side + 1)
        crop = np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC))
        noisy = np.clip(crop + rng.normal(0, 12, crop.shape), 0, 255).astype(np.uint8)
        Image.fromarray(crop).save(real / f"{i:05d}.png")
        Image.fromarray(noisy).save(gen / f"{i:05d}.png")
    return gen, real


def run_evaluate(gen: Path, real: Path, metrics: str = "") -> dict:
    """One `evalkit evaluate` of ``gen`` against ``real`` in a fresh process."""
    return run_evaluate_with(["--generated", str(gen), "--real", str(real),
                              *(["--metrics", metrics] if metrics else [])])


# ``python -m evalkit`` with one atexit hook: the process's own peak RSS (``VmHWM``, the high-water
# mark of the memory it runs in, after exec) into $EVALKIT_BENCH_PEAK_FILE. The child's
# ``ru_maxrss`` is no measure of it: Linux carries the parent's RSS at fork into it.
_WITH_PEAK = ("import atexit, os, runpy, sys\n"
              "def peak():\n"
              "    with open('/proc/self/status') as f:\n"
              "        kib = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))\n"
              "    with open(os.environ['EVALKIT_BENCH_PEAK_FILE'], 'w') as f:\n"
              "        f.write(str(kib))\n"
              "atexit.register(peak)\n"
              "sys.argv = ['evalkit'] + sys.argv[1:]\n"
              "runpy.run_module('evalkit', run_name='__main__', alter_sys=True)\n")


def run_evaluate_with(args: list[str], root: Path = ROOT) -> dict:
    """`evalkit evaluate ARGS --weights random --no-cache --json` in a fresh process, as a user
    runs it from the shell: wall s, peak RSS GiB (the process's own ``VmHWM``), the result rows.
    ``root``: the checkout whose evalkit runs (``python -m evalkit`` from there imports its own)."""
    import tempfile

    cmd = [sys.executable, "-c", _WITH_PEAK, "evaluate", *args, "--weights", "random", "--no-cache", "--json"]
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak_kib"
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root,
                                env={**os.environ, "EVALKIT_BENCH_PEAK_FILE": str(peak_file)})
        out = proc.stdout.read()
        code = proc.wait()
        wall = time.perf_counter() - start
        assert code == 0, f"{' '.join(cmd[3:])} failed"
        peak_kib = int(peak_file.read_text())
    return {"wall_s": wall, "peak_rss_gib": peak_kib / 2 ** 20, "rows": json.loads(out)}


def fitted_exponent(n: list[int], values: list[float]) -> float:
    """The slope of log(value) on log(n): value ~ n^slope."""
    return float(np.polyfit(np.log(n), np.log(values), 1)[0])


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [p["n"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "peak_rss_gib", "peak RSS (GiB)"), (axes[1], "wall_s", "wall (s)")):
        values = [p[key] for p in points]
        if key == "peak_rss_gib":  # from 0, so that flat looks flat
            ax.semilogx(n, values, "o-", base=2)
            ax.set_ylim(0, 1.25 * max(values))
        else:
            ax.loglog(n, values, "o-", base=2)
        ax.set_xlabel("images per set (N)")
        ax.set_ylabel(label)
        ax.set_title(f"{label}: ~ N^{fitted_exponent(n, values):.2f}")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_peak_rss_is_flat_in_n(shared_data, tmp_path):
    root = tmp_path / "sets"
    gen, real = write_pairs(shared_data, root, max(GRID), SIZE)
    points = []
    for n in sorted(GRID):
        sub = tmp_path / f"n{n}"
        for kind, src in (("gen", gen), ("real", real)):
            (sub / kind).mkdir(parents=True)
            for f in sorted(src.iterdir())[:n]:
                os.link(f, sub / kind / f.name)
        result = run_evaluate(sub / "gen", sub / "real", METRICS)
        points.append({"n": n, "wall_s": result["wall_s"], "peak_rss_gib": result["peak_rss_gib"],
                       "metrics": sorted({r["metric"] for r in result["rows"]})})
        print(f"\nN={n} at {SIZE}px: {result['wall_s']:.1f} s, peak RSS {result['peak_rss_gib']:.3f} GiB", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    ns = [p["n"] for p in points]
    summary = {"size": SIZE, "metrics": METRICS or "all that apply", "points": points,
               "rss_exponent": fitted_exponent(ns, [p["peak_rss_gib"] for p in points]),
               "wall_exponent": fitted_exponent(ns, [p["wall_s"] for p in points])}
    (OUT / f"evaluate_scale_{SIZE}px.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(points, OUT / f"evaluate_scale_{SIZE}px.png",
         f"evalkit evaluate at {SIZE} px ({METRICS or 'every metric that applies'}), --weights random --no-cache")
    print(f"peak RSS ~ N^{summary['rss_exponent']:.3f}, wall ~ N^{summary['wall_exponent']:.3f}")
    rss = [p["peak_rss_gib"] for p in points]
    assert max(rss) <= 1.10 * min(rss), f"peak RSS grows with N: {rss}"


def test_512px_set(shared_data, tmp_path):
    gen, real = write_pairs(shared_data, tmp_path, 16, 512)
    result = run_evaluate(gen, real, METRICS)
    metrics = {r["metric"] for r in result["rows"]}
    print(f"\n16 + 16 at 512 px: {result['wall_s']:.1f} s, peak RSS {result['peak_rss_gib']:.3f} GiB, {sorted(metrics)}")
    assert {"FID", "SWD", "PSNR", "SSIM"} <= metrics or METRICS
