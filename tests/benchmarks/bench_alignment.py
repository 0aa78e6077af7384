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


def _ras_parts(size: int = 256, channels: int = 64, rounds: int = 2) -> dict:
    """Seconds of RAS at ``size``² (2x2 blocks, k = 3, OT top-k), best of ``rounds``: the block
    scores and their top-k alone (the floor: ``bmm`` + ``topk`` per chunk), RAS forward + warp,
    and the backward of ``sum(out^2)``."""
    import time

    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, channels, size, size, generator=g, requires_grad=True)
    key = torch.randn(1, channels, size, size, generator=g, requires_grad=True)
    ras = RankingAttention()
    from evalkit.methods.alignment.ranking import block_features

    best = {"scores + top-k": float("inf"), "forward + warp": float("inf"), "backward": float("inf")}
    for _ in range(rounds):
        with torch.no_grad():
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
