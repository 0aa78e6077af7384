"""Unbalanced/balanced Sinkhorn against POT, at small eps, streaming vs dense, gradients."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pytest
import torch

from evalkit.errors import EvalkitError
from evalkit.methods.alignment import (UnbalancedTransport, balanced_sinkhorn, cosine_cost,
                               transport_apply, unbalanced_sinkhorn,
                               unbalanced_sinkhorn_streaming, unite_masses)


def problem(n=24, m=31, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 8, n, generator=g, dtype=dtype)
    z = torch.randn(1, 8, m, generator=g, dtype=dtype)
    a = torch.rand(n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(m, generator=g, dtype=dtype) + 0.1
    return a / a.sum(), b / (1.5 * b.sum()), cosine_cost(x, z)[0]


@pytest.mark.parametrize("eps,tau", [(0.1, 1.0), (0.05, 0.5), (0.01, 1.0), (0.02, 10.0)])
def test_unbalanced_matches_pot(eps, tau):
    a, b, C = problem()
    plan = unbalanced_sinkhorn(a, b, C, eps=eps, tau=tau, n_iters=20000, tol=1e-13)
    ref = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), C.numpy(), reg=eps, reg_m=tau,
                                            numItermax=200000, stopThr=1e-15)
    assert np.abs(plan.numpy() - ref).max() <= 1e-6 * ref.max()


def test_batched_equals_each_problem():
    problems = [problem(seed=s) for s in range(3)]
    a = torch.stack([p[0] for p in problems])
    b = torch.stack([p[1] for p in problems])
    C = torch.stack([p[2] for p in problems])
    plans = unbalanced_sinkhorn(a, b, C, eps=0.05, tau=1.0, n_iters=5000, tol=1e-12)
    assert plans.shape == (3, 24, 31)
    for i, (ai, bi, Ci) in enumerate(problems):
        ref = ot.unbalanced.sinkhorn_unbalanced(ai.numpy(), bi.numpy(), Ci.numpy(), 0.05, 1.0,
                                                numItermax=100000, stopThr=1e-15)
        assert np.abs(plans[i].numpy() - ref).max() <= 1e-6 * ref.max()


def test_balanced_matches_pot_sinkhorn():
    a, b, C = problem()
    b = b * (a.sum() / b.sum())
    plan = balanced_sinkhorn(a, b, C, eps=0.03, n_iters=20000, tol=1e-13)
    ref = ot.sinkhorn(a.numpy(), b.numpy(), C.numpy(), 0.03, numItermax=200000, stopThr=1e-15)
    assert np.abs(plan.numpy() - ref).max() <= 1e-6 * ref.max()
    np.testing.assert_allclose(plan.sum(1).numpy(), a.numpy(), rtol=1e-8)
    np.testing.assert_allclose(plan.sum(0).numpy(), b.numpy(), rtol=1e-8)


def test_small_eps_where_pot_fails_continues_the_sequence():
    a, b, C = problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), C.numpy(), 1e-4, 1.0,
                                                numItermax=1000)
    assert pot.sum() == 0.0  # POT's plain scaling underflows at eps = 1e-4
    masses, rows = [], []
    for eps in (1e-1, 1e-2, 1e-3, 1e-4):
        plan = unbalanced_sinkhorn(a, b, C, eps=eps, tau=1.0, n_iters=120, tol=1e-10, eps_steps=8)
        assert torch.isfinite(plan).all() and plan.sum() > 0
        masses.append(plan.sum().item())
        rows.append(plan.sum(1))
    # the eps -> 0 limit is unregularised UOT, solved independently by POT's MM solver
    limit = ot.unbalanced.mm_unbalanced(a.numpy(), b.numpy(), C.numpy(), 1.0, div="kl",
                                        numItermax=100000, stopThr=1e-15).sum()
    gaps = [abs(m - limit) for m in masses]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[3] < 1e-3
    steps = [(rows[i + 1] - rows[i]).abs().sum().item() for i in range(3)]
    assert steps[2] < steps[1] < steps[0]


def test_float32_small_eps_is_finite_and_close_to_float64():
    a, b, C = problem()
    p64 = unbalanced_sinkhorn(a, b, C, eps=1e-3, tau=1.0, n_iters=200, eps_steps=6)
    p32 = unbalanced_sinkhorn(a.float(), b.float(), C.float(), eps=1e-3, tau=1.0, n_iters=200,
                              eps_steps=6)
    assert torch.isfinite(p32).all()
    assert abs(p32.sum().item() - p64.sum().item()) < 1e-3


def test_zero_masses_give_zero_rows():
    a, b, C = problem()
    a = a.clone()
    a[3] = 0.0
    plan = unbalanced_sinkhorn(a, b, C, eps=0.05, tau=1.0, n_iters=3000, tol=1e-12)
    keep = np.arange(len(a)) != 3  # POT divides 0 by 0 here, so solve it without that row
    ref = ot.unbalanced.sinkhorn_unbalanced(a.numpy()[keep], b.numpy(), C.numpy()[keep], 0.05,
                                            1.0, numItermax=100000, stopThr=1e-15)
    assert plan[3].abs().max() == 0.0
    assert np.abs(plan.numpy()[keep] - ref).max() <= 1e-6 * ref.max()


def test_gradcheck_unbalanced():
    a, b, C = problem(n=5, m=4)
    a.requires_grad_(True)
    C.requires_grad_(True)
    fn = lambda a_, C_: unbalanced_sinkhorn(a_, b, C_, eps=0.5, tau=1.0, n_iters=20, tol=0)
    assert torch.autograd.gradcheck(fn, (a, C), eps=1e-6, atol=1e-6)


def test_streaming_matches_dense():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 40, generator=g, dtype=torch.float64)
    z = torch.randn(2, 8, 36, generator=g, dtype=torch.float64)
    a, b = unite_masses(x, z)
    dense = unbalanced_sinkhorn(a, b, cosine_cost(x, z), eps=0.02, tau=1.0, n_iters=3000,
                                tol=1e-12)
    pots = unbalanced_sinkhorn_streaming(x, z, a, b, eps=0.02, tau=1.0, n_iters=3000, tol=1e-12,
                                         chunk_size=7)
    assert (pots.plan() - dense).abs().max() <= 1e-8 * dense.max()
    values = torch.randn(2, 3, 36, generator=g, dtype=torch.float64)
    torch.testing.assert_close(transport_apply(pots, values), transport_apply(dense, values))


def test_streamed_warps_without_autograd_are_the_checkpointed_warps_bit_for_bit():
    """Without autograd the plan's chunks are written into two reused buffers (the last chunk
    shorter); with autograd each chunk is a checkpointed fresh tensor. Same values, bit for bit,
    both ways (``transport_apply`` and ``transport_apply_t``), and against the dense plan."""
    from evalkit.methods.alignment.transport import transport_apply_t

    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 40, generator=g)
    z = torch.randn(2, 8, 36, generator=g)
    a, b = unite_masses(x, z)
    pots = unbalanced_sinkhorn_streaming(x, z, a, b, eps=0.05, tau=1.0, n_iters=200, chunk_size=7)
    to_keys, to_queries = torch.randn(2, 3, 36, generator=g), torch.randn(2, 3, 40, generator=g)
    with torch.no_grad():
        reused = transport_apply(pots, to_keys), transport_apply_t(pots, to_queries)
    tracked = (transport_apply(pots, to_keys.clone().requires_grad_(True)),
               transport_apply_t(pots, to_queries.clone().requires_grad_(True)))
    assert all(t.requires_grad for t in tracked)
    for ours, ref in zip(reused, tracked):
        assert torch.equal(ours, ref.detach())
    dense = pots.plan()
    torch.testing.assert_close(reused[0], transport_apply(dense, to_keys), rtol=1e-5, atol=1e-6)


def test_streaming_gradient_through_features_matches_dense_envelope():
    # with detached converged potentials the plan's gradient in the cost is the envelope one
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 10, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(1, 4, 9, generator=g, dtype=torch.float64)
    a, b = [m.detach() for m in unite_masses(x, z)]
    pots = unbalanced_sinkhorn_streaming(x, z, a, b, eps=0.1, tau=1.0, n_iters=2000, tol=1e-13,
                                         chunk_size=3)
    pots.x = torch.nn.functional.normalize(x, dim=1)
    values = torch.randn(1, 2, 9, generator=g, dtype=torch.float64)
    transport_apply(pots, values).sum().backward()
    grad_stream = x.grad.clone()
    x.grad = None
    f, gg = pots.f, pots.g
    cost = cosine_cost(x, z)
    plan = a[..., None] * b[:, None] * torch.exp((f[..., None] + gg[:, None] - cost) / 0.1)
    transport_apply(plan, values).sum().backward()
    torch.testing.assert_close(grad_stream, x.grad)


def test_unbalanced_transport_module_dense_and_streaming_agree():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 6, 6, 6, generator=g)
    k = torch.randn(1, 6, 6, 6, generator=g)
    dense = UnbalancedTransport(eps=1e-2, n_iters=3000, eps_steps=3, tol=1e-6)(q, k)
    stream = UnbalancedTransport(eps=1e-2, n_iters=3000, eps_steps=3, tol=1e-6, chunk_size=10)(q, k)
    image = torch.randn(1, 3, 12, 12, generator=g)
    out_d, out_s = dense.warp(image), stream.warp(image)
    assert out_d.shape == (1, 3, 6, 6)
    torch.testing.assert_close(out_d, out_s, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(dense.matrix().sum(-1), torch.ones(1, 36))


def test_unite_masses_follow_eq3():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 5, 7, generator=g)
    z = torch.randn(2, 5, 9, generator=g)
    alpha, beta = unite_masses(x, z)
    xn = x / x.norm(dim=1, keepdim=True)
    zn = z / z.norm(dim=1, keepdim=True)
    raw_alpha = (xn * zn.mean(2, keepdim=True)).sum(1)  # x_i . mean(z)
    raw_beta = (zn * xn.mean(2, keepdim=True)).sum(1)
    torch.testing.assert_close(alpha, torch.softmax(raw_alpha, 1))
    torch.testing.assert_close(beta, torch.softmax(raw_beta, 1))
    # same ordering as the paper's raw inner products
    assert torch.equal(alpha.argsort(1), raw_alpha.argsort(1))


def test_cosine_cost_is_one_minus_cosine():
    from scipy.spatial.distance import cdist

    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 5, 6, generator=g, dtype=torch.float64)
    z = torch.randn(1, 5, 8, generator=g, dtype=torch.float64)
    ref = cdist(x[0].T.numpy(), z[0].T.numpy(), metric="cosine")
    np.testing.assert_allclose(cosine_cost(x, z)[0].numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("case,match", [
    ("shape", "shape mismatch"),
    ("negative", "negative"),
    ("nan", "NaN"),
    ("eps", "eps"),
    ("balanced_mass", "equal total"),
])
def test_bad_input(case, match):
    a, b, C = problem(n=4, m=5)
    with pytest.raises(EvalkitError, match=match):
        if case == "shape":
            unbalanced_sinkhorn(a, b[:4], C, eps=0.1, tau=1.0)
        elif case == "negative":
            unbalanced_sinkhorn(-a, b, C, eps=0.1, tau=1.0)
        elif case == "nan":
            C = C.clone()
            C[0, 0] = math.nan
            unbalanced_sinkhorn(a, b, C, eps=0.1, tau=1.0)
        elif case == "eps":
            unbalanced_sinkhorn(a, b, C, eps=0.0, tau=1.0)
        else:
            balanced_sinkhorn(a, b, C, eps=0.1)


def test_streaming_bad_input():
    x, z = torch.randn(1, 4, 6), torch.randn(1, 4, 5)
    a, b = torch.full((1, 6), 1 / 6), torch.full((1, 5), 1 / 5)
    with pytest.raises(EvalkitError, match="shape mismatch"):
        unbalanced_sinkhorn_streaming(x, z, a[:, :5], b, eps=0.1, tau=1.0)
    with pytest.raises(EvalkitError, match="negative"):
        unbalanced_sinkhorn_streaming(x, z, -a, b, eps=0.1, tau=1.0)
    bad = x.clone()
    bad[0, 0, 0] = math.nan
    with pytest.raises(EvalkitError, match="NaN"):
        unbalanced_sinkhorn_streaming(bad, z, a, b, eps=0.1, tau=1.0)


def test_streaming_runs_the_same_iterations_as_dense_even_unconverged():
    """The streaming and dense Sinkhorn functions run the same iterations (7 per stage, 3 eps
    stages, far from converged). The module's dense path is a different (accelerated,
    residual-stopped) solver of the same problem, checked against POT above."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 6, 30, generator=g, dtype=torch.float64)
    z = torch.randn(1, 6, 30, generator=g, dtype=torch.float64)
    a, b = unite_masses(x, z)
    kw = dict(eps=1e-3, tau=1.0, n_iters=7, eps_steps=3, tol=0)
    dense = unbalanced_sinkhorn(a, b, cosine_cost(x, z), eps_start=2.0, **kw)
    stream = unbalanced_sinkhorn_streaming(x, z, a, b, chunk_size=4, **kw).plan()
    torch.testing.assert_close(stream, dense, atol=1e-9, rtol=1e-7)


# -- issue 11: masses, the module's schedule and gradient, the transpose -------------------

def test_masses_closed_forms():
    """eq3: exp(x^_i . mean z^) / n, positive with totals that differ between the sides; softmax:
    normalised; uniform: 1/n. Hand-checked on orthogonal unit features."""
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two positions: e1, e2 (C=2, N=2)
    z = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])  # three positions, all e1
    a, b = unite_masses(x, z, "eq3")
    # mean z^ = e1 -> s = (1, 0); mean x^ = (1/2, 1/2) -> t = 1/2 for every z_j
    torch.testing.assert_close(a, torch.tensor([[math.e / 2, 1.0 / 2]]))
    torch.testing.assert_close(b, torch.full((1, 3), math.exp(0.5) / 3))
    assert a.sum() != pytest.approx(b.sum().item())  # different totals: unbalanced by design
    a, b = unite_masses(x, z, "uniform")
    torch.testing.assert_close(a, torch.full((1, 2), 0.5)) and torch.testing.assert_close(b, torch.full((1, 3), 1 / 3))
    a, b = unite_masses(x, z, "softmax")
    torch.testing.assert_close(a, torch.softmax(torch.tensor([[1.0, 0.0]]), 1))
    with pytest.raises(EvalkitError, match="masses must be"):
        unite_masses(x, z, "learned")


@pytest.mark.parametrize("masses,balanced", [("eq3", False), ("softmax", False), ("uniform", True)])
def test_module_plan_is_pots_for_every_masses_kind(masses, balanced):
    """The module's warp = POT's plan (sinkhorn_unbalanced, or sinkhorn when balanced) on the
    module's own masses and cosine cost, rows normalised."""
    g = torch.Generator().manual_seed(11)
    q = torch.randn(1, 6, 4, 4, generator=g, dtype=torch.float64)
    k = torch.randn(1, 6, 4, 5, generator=g, dtype=torch.float64)
    eps, tau = 0.05, 1.0
    corr = UnbalancedTransport(eps=eps, tau=tau, balanced=balanced, masses=masses, tol=1e-9, n_iters=20000)(q, k)
    a, b = unite_masses(q.flatten(2), k.flatten(2), masses)
    C = cosine_cost(q.flatten(2), k.flatten(2))[0].numpy()
    if balanced:
        plan = ot.sinkhorn(a[0].numpy(), b[0].numpy(), C, eps, numItermax=200000, stopThr=1e-13)
    else:
        plan = ot.unbalanced.sinkhorn_unbalanced(a[0].numpy(), b[0].numpy(), C, eps, tau, numItermax=200000,
                                                 stopThr=1e-13)
    np.testing.assert_allclose(corr.matrix()[0].numpy(), plan / plan.sum(1, keepdims=True), atol=1e-6)
    assert corr.stats["uot_marginal_residual"] < 1e-9


def test_entropy_and_kl_regularisers_give_the_same_plan_only_when_balanced():
    """UNITE writes -eta H(T); eq. 5's a_i b_j prefactor is the eps KL(T | a b^T) problem's. The two
    objectives differ by -eps sum_i (T1)_i log a_i - eps sum_j (T^T 1)_j log b_j: constant when the
    marginals are fixed (balanced), not when they are free. POT: ``sinkhorn_unbalanced`` with
    reg_type 'entropy' vs 'kl' differ; balanced ``ot.sinkhorn`` (entropy) equals our KL-form solve."""
    a, b, C = problem(8, 9)
    a, b, C = a.numpy(), b.numpy(), C.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'entropy' overwrites c
        kl = ot.unbalanced.sinkhorn_unbalanced(a, b, C, 0.1, 1.0, reg_type="kl", numItermax=5000, stopThr=1e-10)
        ent = ot.unbalanced.sinkhorn_unbalanced(a, b, C, 0.1, 1.0, reg_type="entropy", numItermax=5000, stopThr=1e-10)
    assert np.abs(kl - ent).max() > 1e-3
    b = b * a.sum() / b.sum()
    ent = ot.sinkhorn(a, b, C, 0.1, numItermax=100000, stopThr=1e-12)
    ours = balanced_sinkhorn(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(C), eps=0.1,
                             n_iters=100000, tol=1e-12)
    np.testing.assert_allclose(ours.numpy(), ent, atol=1e-9)


def _shapes_features(side, channels, n, seed=0):
    """Features with the structure of trained ones: one vector per class of the shapes layouts plus noise."""
    import torch.nn.functional as F

    from evalkit.data import get_dataset

    ds = get_dataset("shapes", split="test", size=64, n=n, seed=seed)
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, channels, generator=g)

    def f(onehot):
        small = F.interpolate(onehot[None], size=(side, side), mode="nearest")[0]
        return torch.einsum("khw,kc->chw", small, emb) + 0.5 * torch.randn(channels, side, side, generator=g)

    return torch.stack([f(ds[i].cond) for i in range(n)]), torch.stack([f(ds[i].exemplar_cond) for i in range(n)])


def test_default_schedule_converges_at_paper_eps():
    """UNITE's eta = 1e-4 in float32 with the default schedule (10 eps stages, each to a marginal
    residual of 1e-2): the residual is reported and below tol, and >= 99 % of the rows pick the
    same exemplar position as a float64 solve of the dense solver run to a residual of 1e-6 (the
    old fixed 6 x 20 iterations agreed on 93 %). An 8x8 grid keeps the reference solve short;
    tests/benchmarks/bench_demo_training.py checks the tiny (16x16) grid and reports the paper (64x64) one."""
    from evalkit.methods.alignment.transport import _eps_schedule, _sinkhorn_dense

    q, k = _shapes_features(8, 32, 1)
    corr = UnbalancedTransport(eps=1e-4, tau=1.0, masses="eq3")(q, k)
    assert corr.stats["uot_marginal_residual"] < 1e-2 and corr.stats["uot_iterations"] < 2000
    x, z = q.flatten(2).double(), k.flatten(2).double()
    a, b = unite_masses(x, z, "eq3")
    c, init, stats = cosine_cost(x, z), None, {}
    for e in _eps_schedule(1e-4, 12, 2.0):
        ref, f, g_ = _sinkhorn_dense(a, b, c, e, 1.0, 100000, 0.0, init, marginal_tol=1e-6, stats=stats)
        init = (f, g_)
    assert stats["residual"] < 1e-6
    agree = (corr.matrix().argmax(-1) == ref.argmax(-1)).double().mean().item()
    assert agree >= 0.99, agree


def test_module_gradient_reaches_features_and_both_masses():
    """One differentiable column update from the converged row potential: the warp's gradient
    reaches the features through the cost and through the eq. 3 masses of both sides."""
    g = torch.Generator().manual_seed(12)
    q = torch.randn(1, 6, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 6, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    image = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    module = UnbalancedTransport(eps=0.05, tau=1.0, masses="eq3", tol=1e-10, n_iters=20000)
    module(q, k).warp(image).square().sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0
    # the same value as the converged plan (POT-checked above), and the mass path is live
    a, b = unite_masses(q.detach().flatten(2), k.detach().flatten(2), "eq3")
    a.requires_grad_(True)
    from evalkit.methods.alignment.transport import solve_potentials

    cost = cosine_cost(q.detach().flatten(2), k.detach().flatten(2))
    f, _, _ = solve_potentials(a.detach(), b, cost, eps=0.05, tau=1.0, tol=1e-10, n_iters=20000)
    gcol = -(1.0 / 1.05) * 0.05 * torch.logsumexp((f.unsqueeze(-1) + 0.05 * a.log().unsqueeze(-1) - cost) / 0.05, -2)
    gcol.sum().backward()
    assert a.grad.abs().sum() > 0


def test_potential_warp_back_is_the_dense_transpose():
    from evalkit.methods.alignment.correspondence import DenseCorrespondence, PotentialCorrespondence
    from evalkit.methods.alignment.transport import TransportPotentials

    g = torch.Generator().manual_seed(13)
    x = torch.randn(1, 5, 12, generator=g, dtype=torch.float64)
    z = torch.randn(1, 5, 9, generator=g, dtype=torch.float64)
    a, b = unite_masses(x, z, "eq3")
    pots = unbalanced_sinkhorn_streaming(x, z, a, b, eps=0.1, tau=1.0, n_iters=500, tol=1e-12, chunk_size=5)
    stream = PotentialCorrespondence(pots, (3, 4), (3, 3))
    plan = pots.plan()
    dense = DenseCorrespondence(plan / plan.sum(-1, keepdim=True), (3, 4), (3, 3))
    values = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(stream.warp_back(values), dense.warp_back(values))
    W = dense.matrix()[0]
    ref = (values.flatten(2)[0] @ W) / W.sum(0)  # column-normalised transpose, by hand
    torch.testing.assert_close(dense.warp_back(values).flatten(2)[0], ref)
