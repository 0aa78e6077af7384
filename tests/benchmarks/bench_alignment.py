"""Alignment speed benchmarks (not collected by default; run explicitly):

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/bench_alignment.py \
        --benchmark-enable -q --benchmark-columns=min,mean,max,rounds

Unbalanced Sinkhorn at n = 4096 (64x64 features, 64 channels, UNITE masses and
1 - cos cost), 100 iterations, eps = 1e-2, tau = 1, no early stopping, against POT's
``sinkhorn_unbalanced`` (``method='sinkhorn'`` and ``'sinkhorn_stabilized'``) in float64
and float32; then the paper's eps = 1e-4, where POT returns an all-zero plan; then the
forward time of dense cosine vs RAS at 64x64.  Peak memory: ``evalkit profile memory``.
"""

from __future__ import annotations

import warnings

import ot
import pytest
import torch

from evalkit.methods.alignment import (RankingAttention, cosine_cost, dense_cosine_attention,
                               unbalanced_sinkhorn, unite_masses)

N, ITERS, EPS, TAU = 4096, 100, 1e-2, 1.0


@pytest.fixture(scope="module")
def problem():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, N, generator=g)
    z = torch.randn(1, 64, N, generator=g)
    a, b = unite_masses(x, z)
    return a[0].double(), b[0].double(), cosine_cost(x, z)[0].double()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evalkit_unbalanced_sinkhorn(benchmark, problem, dtype):
    a, b, C = (t.to(getattr(torch, dtype)) for t in problem)
    plan = benchmark.pedantic(unbalanced_sinkhorn, args=(a, b, C),
                              kwargs=dict(eps=EPS, tau=TAU, n_iters=ITERS, tol=0),
                              rounds=3, iterations=1)
    assert torch.isfinite(plan).all() and plan.sum() > 0


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_stabilized"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pot_sinkhorn_unbalanced(benchmark, problem, method, dtype):
    a, b, C = (t.numpy().astype(dtype) for t in problem)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=EPS, reg_m=TAU, method=method,
                                                     numItermax=ITERS, stopThr=0)

    plan = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["total_mass"] = float(plan.sum())


def test_evalkit_unbalanced_sinkhorn_paper_eps(benchmark, problem):
    a, b, C = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), C.numpy(), 1e-4, TAU,
                                                method="sinkhorn_stabilized", numItermax=ITERS)
    assert pot.sum() == 0.0  # POT underflows at the paper's eta
    plan = benchmark.pedantic(unbalanced_sinkhorn, args=(a.float(), b.float(), C.float()),
                              kwargs=dict(eps=1e-4, tau=TAU, n_iters=ITERS, tol=0),
                              rounds=1, iterations=1)
    assert torch.isfinite(plan).all() and plan.sum() > 0
    benchmark.extra_info["total_mass"] = float(plan.sum())


@pytest.mark.parametrize("module", ["cosine", "ras"])
def test_forward_64x64(benchmark, module):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 64, 64, 64, generator=g)
    k = torch.randn(1, 64, 64, 64, generator=g)
    fn = dense_cosine_attention if module == "cosine" else RankingAttention()

    def run():
        with torch.no_grad():
            return fn(q, k).warp(q[:, :3])

    out = benchmark.pedantic(run, rounds=3, iterations=1)
    assert out.shape == (1, 3, 64, 64)


def _ras_features(size: int = 256, channels: int = 64, requires_grad: bool = False):
    """The query and key features ``[1, channels, size, size]`` every RAS benchmark here uses."""
    g = torch.Generator().manual_seed(2)
    return tuple(torch.randn(1, channels, size, size, generator=g, requires_grad=requires_grad)
                 for _ in range(2))


def _best_seconds(fn, rounds: int = 5, repeat: int = 1) -> float:
    """Best of ``rounds`` of the mean seconds of one ``fn()`` over ``repeat`` calls."""
    import time

    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - t0) / repeat)
    return min(times)


def _ras_parts(size: int = 256, channels: int = 64, rounds: int = 2) -> dict:
    """Seconds of RAS at ``size``² (2x2 blocks, k = 3, OT top-k), best of ``rounds``: the block
    scores and their top-k alone (the floor: ``bmm`` + ``topk`` per chunk), RAS forward + warp,
    and the backward of ``sum(out^2)``."""
    import time

    q, key = _ras_features(size, channels, requires_grad=True)
    ras = RankingAttention()
    from evalkit.methods.alignment.ranking import block_features

    best = {"scores + top-k": float("inf"), "forward + warp": float("inf"), "backward": float("inf")}
    for _ in range(rounds):
        with torch.no_grad():
            for _ in range(5):  # bimodal on this machine (0.43 or 0.72 s): keep its best
                t0 = time.perf_counter()
                qb, kb = block_features(q, 2), block_features(key, 2)
                for start in range(0, qb.shape[1], ras.chunk_size):
                    torch.bmm(qb[:, start:start + ras.chunk_size], kb.transpose(1, 2)).topk(3, dim=-1)
                best["scores + top-k"] = min(best["scores + top-k"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = ras(q, key).warp(q[:, :3])
        t1 = time.perf_counter()
        (out ** 2).sum().backward()
        t2 = time.perf_counter()
        best["forward + warp"] = min(best["forward + warp"], t1 - t0)
        best["backward"] = min(best["backward"], t2 - t1)
        q.grad = key.grad = None
    return best


def test_ras_256_against_its_block_scores():
    """Issue 15 item 4: RAS forward + backward at 256² within 3x of the block scores' cost.
    Run side by side with an older checkout by calling ``_ras_parts`` from each."""
    parts = _ras_parts()
    ratio = (parts["forward + warp"] + parts["backward"]) / parts["scores + top-k"]
    print("\nRAS 256x256, C=64, 2x2 blocks, k=3: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
          + f"; (forward + backward) / block scores = {ratio:.2f}")


def test_ras_memberships_above_float32_resolution():
    """Why RAS's threshold cannot be solved on a candidate set at the benchmark's settings: the
    share of each row's OT top-k memberships above float32's resolution of the row's largest,
    on the first 128 query blocks of ``_ras_parts``' features (eps 0.1, anchors (-1, 1))."""
    from evalkit.methods.alignment.ranking import block_features
    from evalkit.methods.alignment.topk import ot_topk

    q, key = _ras_features()
    qb, kb = block_features(q, 2), block_features(key, 2)
    scores = torch.bmm(qb[:, :128], kb.transpose(1, 2))[0]
    m = ot_topk(scores, 3, eps=0.1, anchors=(-1.0, 1.0))
    above = (m > m.amax(-1, keepdim=True) * torch.finfo(m.dtype).eps).double().mean().item()
    print(f"\nRAS 256x256 block cosines in [{scores.min():.2f}, {scores.max():.2f}]: memberships "
          f"{m.min():.1e}..{m.max():.2f}, {100 * above:.2f} % above float32 resolution of the row's largest")


def test_ras_tile_breakdown(monkeypatch):
    """Where one RAS tile's time goes (128 rows x 16384 block scores of ``_ras_parts``' features,
    one thread): its ``mm``, its solve, the solve's two Newton stages (the stand-in, the full
    rows); then the fused forms eager torch offers for the full-row passes (the Newton slope,
    the affine map, the membership), each against the form kept."""
    import time

    from evalkit.methods.alignment import topk as T
    from evalkit.methods.alignment.ranking import block_features

    torch.set_num_threads(1)
    q, key = _ras_features()
    qb, kb = block_features(q, 2)[0], block_features(key, 2)[0]
    n = kb.shape[0]
    rows = T.TILE_ELEMENTS // n
    atol = T._atol(1e-6, 3, n, qb.dtype)
    buffer, out, work = qb.new_empty(rows, n), T._Tile(rows, 3, qb), T._Workspace(rows, n, qb)
    newton, stages = T._newton, []

    def timed_newton(u, *args, **kwargs):
        t0 = time.perf_counter()
        result = newton(u, *args, **kwargs)
        stages.append((u.shape[-1], (time.perf_counter() - t0) * 1e3))
        return result

    monkeypatch.setattr(T, "_newton", timed_newton)
    for tile in range(1, 6):
        stages.clear()
        t0 = time.perf_counter()
        scores = torch.mm(qb[tile * rows:(tile + 1) * rows], kb.t(), out=buffer)
        t1 = time.perf_counter()
        out.solve(0, rows, scores, 3, 0.1, 60, atol, -1.0, 1.0, work)
        t2 = time.perf_counter()
        print(f"\ntile {tile}: mm {(t1 - t0) * 1e3:.2f} ms, solve {(t2 - t1) * 1e3:.2f} ms; Newton "
              + ", ".join(f"on {width} entries {ms:.2f} ms" for width, ms in stages), end="")
    m, s = torch.rand(rows, n), torch.randn(rows, n)
    scale, shift, dst = torch.rand(rows, 1) + 0.5, torch.randn(rows, 1), torch.empty(rows, n)
    forms = {
        "slope: addcmul + sum (kept)": lambda: torch.addcmul(m, m, m, value=-1).sum(-1),
        "slope: sum - linalg.vecdot": lambda: m.sum(-1) - torch.linalg.vecdot(m, m),
        "slope: sum - bmm dot": lambda: m.sum(-1) - torch.bmm(m.unsqueeze(1), m.unsqueeze(2)).view(-1),
        "affine: mul + add_ (kept)": lambda: torch.mul(s, scale).add_(shift),
        "affine: addcmul": lambda: torch.addcmul(shift, s, scale),
        "membership: sigmoid (kept)": lambda: torch.sigmoid(s, out=dst),
        "membership: tanh": lambda: torch.tanh(s * 0.5, out=dst).mul_(0.5).add_(0.5),
        "membership: exp + reciprocal": lambda: torch.exp(-s, out=dst).add_(1).reciprocal_(),
        "one pass: sub": lambda: torch.sub(s, 1.0, out=dst),
    }
    print()
    for name, fn in forms.items():
        print(f"[{rows}, {n}] {name}: {_best_seconds(fn, rounds=3, repeat=50) * 1e3:.3f} ms")


def _machine_rates() -> dict:
    """This CPU's sgemm rate (2048², FLOP/s) and float32 exp rate (in-cache 2M tile, elem/s),
    best of 5: the two rates the streaming transport's roofline is made of."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    sgemm = 2 * 2048 ** 3 / _best_seconds(lambda: a @ b)
    tile = torch.empty(1 << 21)
    values = torch.rand(1 << 21) * -80.0  # the exponents a transport tile holds
    exp = tile.numel() / _best_seconds(lambda: torch.exp(values, out=tile), repeat=100)
    return {"sgemm_flops": sgemm, "exp_per_s": exp}


def _streaming_iteration_seconds(L: int, channels: int = 64, eps: float = 1e-2) -> float:
    """Seconds per Sinkhorn iteration of :func:`unbalanced_sinkhorn_streaming` at ``L`` (two
    passes over the L² costs), as the difference of a 1- and a 3-iteration solve (the start's
    c-transforms and the first, exactly max-shifted iteration cancel), best of 2."""
    import time

    import torch.nn.functional as F

    from evalkit.methods.alignment import unbalanced_sinkhorn_streaming

    g = torch.Generator().manual_seed(3)
    x = F.normalize(torch.randn(1, channels, L, generator=g), dim=1)
    z = F.normalize(torch.randn(1, channels, L, generator=g), dim=1)
    a = torch.full((1, L), 1.0 / L)
    seconds = {}
    for n in (1, 3):
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            unbalanced_sinkhorn_streaming(x, z, a, a.clone(), eps=eps, tau=1.0, n_iters=n,
                                          tol=0, eps_steps=1)
            times.append(time.perf_counter() - t0)
        seconds[n] = min(times)
    return (seconds[3] - seconds[1]) / 2


def test_streaming_uot_against_its_roofline():
    """Issue 15 item 4: an iteration of the streaming UOT within 1.5x of its roofline, two
    passes over L² cost entries, each a C-dim dot product at the sgemm rate and one exp at the
    exp rate. Sizes from ``EVALKIT_BENCH_L`` (default 1024,4096,16384,65536); writes
    ``docs/figures/uot_streaming_vs_L.png`` and ``.json`` (seconds vs L, fitted exponent)."""
    import json
    import os
    from pathlib import Path

    import numpy as np

    channels = 64
    sizes = [int(s) for s in os.environ.get("EVALKIT_BENCH_L", "1024,4096,16384,65536").split(",")]
    rates = _machine_rates()
    rows = []
    for L in sizes:
        seconds = _streaming_iteration_seconds(L, channels)
        roofline = 2 * L * L * (2 * channels / rates["sgemm_flops"] + 1 / rates["exp_per_s"])
        rows.append({"L": L, "seconds_per_iteration": seconds, "roofline_s": roofline,
                     "ratio": seconds / roofline})
        print(f"\nstreaming UOT L={L} C={channels}: {seconds:.3f} s/iteration, roofline "
              f"{roofline:.3f} s, ratio {seconds / roofline:.2f}", flush=True)
    print(f"sgemm {rates['sgemm_flops'] / 1e9:.1f} GFLOP/s, exp {rates['exp_per_s'] / 1e9:.2f} Gelem/s")
    out = Path(__file__).resolve().parents[2] / "docs" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    Ls = np.array([r["L"] for r in rows], float)
    secs = np.array([r["seconds_per_iteration"] for r in rows])
    fit = float(np.polyfit(np.log(Ls), np.log(secs), 1)[0]) if len(rows) > 1 else float("nan")
    (out / "uot_streaming_vs_L.json").write_text(json.dumps(
        {"channels": channels, "rates": rates, "rows": rows, "fit_exponent": fit}, indent=2) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(Ls, secs, "o-", label=f"measured (L^{fit:.2f})")
    ax.loglog(Ls, [r["roofline_s"] for r in rows], "k--", label="roofline")
    ax.set_xlabel("L (positions per side)")
    ax.set_ylabel("s per Sinkhorn iteration")
    ax.set_title(f"streaming UOT, C={channels}, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "uot_streaming_vs_L.png", dpi=120)
    assert all(r["ratio"] > 0 for r in rows)


_FAULTS_CHILD = r"""
import json, resource, sys, time
import torch
sys.path.insert(0, "tests/benchmarks")
from bench_alignment import _ras_features
from evalkit.methods.alignment import RankingAttention, UnbalancedTransport

def timed(fn):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"s": round(time.perf_counter() - t0, 3), "faults": r1.ru_minflt - r0.ru_minflt}

q, key = _ras_features(256, requires_grad=True)
ras = RankingAttention()
out, held = {}, {}
out["RAS 256² forward + warp"] = timed(lambda: held.setdefault("y", ras(q, key).warp(q[:, :3])))
out["RAS 256² backward"] = timed(lambda: (held.pop("y") ** 2).sum().backward())
uot = UnbalancedTransport(eps=1e-2, tau=1.0, n_iters=3, eps_steps=1, tol=0, chunk_size=1024)
x, z = _ras_features(128)
with torch.no_grad():
    out["streaming UOT 128², 3 iterations"] = timed(lambda: held.setdefault("plan", uot(x, z)))
    out["its warp"] = timed(lambda: held["plan"].warp(x[:, :3]))
print(json.dumps(out))
"""


def test_tiled_passes_against_the_allocator():
    """RAS forward + backward at 256², a 3-iteration streaming UOT solve at 128² and its warp (no
    autograd), each in a fresh process under ``MALLOC_MMAP_THRESHOLD_=131072`` (``evalkit profile memory``'s child
    setting, where every freed block over 128 KiB goes back to the OS) and under the default
    allocator: seconds and minor page faults. ``EVALKIT_BENCH_BEFORE=CHECKOUT`` also runs another
    checkout's code (from its root), the two alternately, ``EVALKIT_BENCH_REPEATS`` times."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parents[2]
    roots = {"this checkout": here}
    if os.environ.get("EVALKIT_BENCH_BEFORE"):
        roots = {"before": Path(os.environ["EVALKIT_BENCH_BEFORE"]).resolve(), **roots}
    print()
    for setting, extra in (("default allocator", {}), ("MALLOC_MMAP_THRESHOLD_=131072", {"MALLOC_MMAP_THRESHOLD_": "131072"})):
        for _ in range(int(os.environ.get("EVALKIT_BENCH_REPEATS", "1"))):
            for name, root in roots.items():
                env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"} | extra | {"PYTHONPATH": str(root)}
                done = subprocess.run([sys.executable, "-c", _FAULTS_CHILD], cwd=root, env=env, check=True,
                                      capture_output=True, text=True)
                parts = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{setting:<30} {name:<14} " + "; ".join(f"{k} {v['s']:.2f} s ({v['faults'] / 1e3:.0f} k faults)"
                                                            for k, v in parts.items()))
