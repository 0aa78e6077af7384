"""OT top-k against POT's Sinkhorn on the same EM problem, its eps -> 0 limit and gradients."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError
from evalkit.methods.alignment import hard_topk_straight_through, ot_topk, ot_topk_largest


@pytest.mark.parametrize("normalise", [True, False])
@pytest.mark.parametrize("anchors", [(0.0, 1.0), (-1.0, 1.0)])
def test_membership_is_the_entropic_em_plan(anchors, normalise):
    """POT's Sinkhorn on Xie et al.'s problem; with ``normalise`` the cost is divided by its
    largest entry first, as their released ``TopK_custom`` (``C = C / C.max()``)."""
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 9, generator=g, dtype=torch.float64) * 2 - 1
    k, eps = 3, 0.1
    member = ot_topk(scores, k, eps=eps, anchors=anchors, tol=1e-12, normalise=normalise)
    n = scores.shape[1]
    for row, m in zip(scores.numpy(), member):
        cost = (row[:, None] - np.array(anchors)[None, :]) ** 2
        if normalise:
            cost = cost / cost.max()
        mu = np.full(n, 1.0 / n)
        nu = np.array([(n - k) / n, k / n])
        plan = ot.sinkhorn(mu, nu, cost, eps, numItermax=100000, stopThr=1e-14)
        np.testing.assert_allclose(m.numpy(), n * plan[:, 1], atol=1e-8)
    assert torch.all((member >= 0) & (member <= 1))
    torch.testing.assert_close(member.sum(-1), torch.full((3,), float(k), dtype=torch.float64))


@pytest.mark.parametrize("n", [9, 400, 3000])
@pytest.mark.parametrize("anchors", [(0.0, 1.0), (-1.0, 1.0)])
def test_largest_memberships_are_ot_topk_gathered_with_its_gradient(n, anchors):
    """``ot_topk_largest`` (RAS's retrieval) is ``torch.topk`` and ``ot_topk(...).gather``: the
    same indices, scores, memberships and gradient (autograd through ``ot_topk``'s full memberships),
    over several row tiles; and it passes gradcheck itself."""
    from evalkit.methods.alignment import topk as T

    g = torch.Generator().manual_seed(7)
    scores = (torch.randn(2, 5, n, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    k, eps = 3, 0.05
    weights = torch.randn(2, 5, k, generator=g, dtype=torch.float64)
    tile, T.TILE_ELEMENTS = T.TILE_ELEMENTS, 3 * n  # 3 rows a tile: 10 rows, 4 tiles
    try:
        values, idx, member = ot_topk_largest(scores, k, eps=eps, anchors=anchors, tol=1e-12)
        ((member * weights).sum() + (values * weights.flip(-1)).sum()).backward()
    finally:
        T.TILE_ELEMENTS = tile
    ours = scores.grad.clone()
    scores.grad = None
    ref_values, ref_idx = scores.topk(k, dim=-1)
    ref = ot_topk(scores, k, eps=eps, anchors=anchors, tol=1e-12).gather(-1, ref_idx)
    ((ref * weights).sum() + (ref_values * weights.flip(-1)).sum()).backward()
    assert torch.equal(idx, ref_idx) and torch.equal(values, ref_values)
    torch.testing.assert_close(member, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours, scores.grad, rtol=1e-9, atol=1e-12)
    if n == 9:
        x = scores[0, :2].detach().clone().requires_grad_(True)
        fn = lambda s: ot_topk_largest(s, k, eps=eps, anchors=anchors, tol=1e-14, n_iters=200)[::2]
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [200, 1000, 8200])
@pytest.mark.parametrize("largest", [True, False])
def test_group_search_is_torch_topk(n, largest):
    """``_extremes``' group search returns ``torch.topk``'s sorted values and indices, for N a
    multiple of GROUP or not, on a contiguous tile and on a strided view; with ties, values
    that are topk's at positions that hold them."""
    from evalkit.methods.alignment import topk as T

    g = torch.Generator().manual_seed(3)
    wide = torch.randn(6, n + 5, generator=g, dtype=torch.float64)
    for x in (wide[:, :n].contiguous(), wide[:, 5:]):
        for c in (1, 4, 16):
            values, indices = T._extremes(x, c, largest)
            ref = x.topk(c, dim=-1, largest=largest)
            assert torch.equal(values, ref.values) and torch.equal(indices, ref.indices)
    assert n // T.GROUP >= 4 * 16 or n < 8000  # 8200 takes the group path for every c above
    ties = torch.randint(0, 4, (6, n), generator=g).double()
    values, indices = T._extremes(ties, 16, largest)
    assert torch.equal(values, ties.topk(16, dim=-1, largest=largest).values)
    assert torch.equal(ties.gather(-1, indices), values)
    assert all(len(set(row.tolist())) == 16 for row in indices)


@pytest.mark.parametrize("n", [9, 3000, 8200])
def test_largest_of_products_is_ot_topk_largest_of_the_products(n):
    """``ot_topk_largest_of_products(q, key)`` (RAS's retrieval, scores never held) equals
    ``ot_topk_largest(q @ key^T)``: indices, values, memberships and the gradient with respect
    to both factors (autograd through the bmm), over a batch of 2 and several row tiles."""
    from evalkit.methods.alignment import topk as T
    from evalkit.methods.alignment import ot_topk_largest_of_products

    g = torch.Generator().manual_seed(11)
    q = F.normalize(torch.randn(2, 7, 5, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    key = F.normalize(torch.randn(2, n, 5, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    k, eps = 3, 0.05
    weights = torch.randn(2, 7, k, generator=g, dtype=torch.float64)
    loss = lambda values, member: (member * weights).sum() + (values * weights.flip(-1) ** 2).sum()
    tile, T.TILE_ELEMENTS = T.TILE_ELEMENTS, 3 * n  # 3 rows a tile: 3 tiles per batch element
    try:
        values, idx, member = ot_topk_largest_of_products(q, key, k, eps=eps, anchors=(-1.0, 1.0), tol=1e-12)
        grads = torch.autograd.grad(loss(values, member), (q, key))
    finally:
        T.TILE_ELEMENTS = tile
    ref_values, ref_idx, ref_member = ot_topk_largest(torch.bmm(q, key.transpose(1, 2)), k, eps=eps,
                                                      anchors=(-1.0, 1.0), tol=1e-12)
    ref_grads = torch.autograd.grad(loss(ref_values, ref_member), (q, key))
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(values, ref_values, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(member, ref_member, rtol=0, atol=1e-10)
    for ours, ref in zip(grads, ref_grads):
        torch.testing.assert_close(ours, ref, rtol=1e-8, atol=1e-10)
    if n == 9:
        fn = lambda a, b: ot_topk_largest_of_products(a, b, k, eps=eps, anchors=(-1.0, 1.0), tol=1e-14,
                                                      n_iters=200)[::2]
        assert torch.autograd.gradcheck(fn, (q[:1, :2].detach().clone().requires_grad_(True),
                                             key[:1].detach().clone().requires_grad_(True)), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [400, 3000])
def test_long_rows_start_newton_from_the_stand_in_estimate_and_reach_the_same_plan(n):
    """Rows longer than CANDIDATES + SAMPLE: the root is estimated on a stand-in, then refined
    on the full row; the plan is POT's, and the implicit gradient passes gradcheck."""
    from evalkit.methods.alignment import topk as T

    assert n > T.CANDIDATES + T.SAMPLE
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(2, n, generator=g, dtype=torch.float64) * 0.3
    k, eps = 3, 0.05
    member = ot_topk(scores, k, eps=eps, anchors=(-1.0, 1.0), tol=1e-12)
    for row, m in zip(scores.numpy(), member):
        cost = (row[:, None] - np.array([-1.0, 1.0])[None, :]) ** 2
        cost = cost / cost.max()
        plan = ot.sinkhorn(np.full(n, 1.0 / n), np.array([(n - k) / n, k / n]), cost, eps, numItermax=100000,
                           stopThr=1e-15)
        np.testing.assert_allclose(m.numpy(), n * plan[:, 1], atol=1e-8)
    if n == 400:
        x = scores[:1].clone().requires_grad_(True)
        fn = lambda s: ot_topk(s, k, eps=eps, anchors=(-1.0, 1.0), tol=1e-14, n_iters=200)
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_hard_limit():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(4, 2, 16, generator=g)
    k = 5
    hard = torch.zeros_like(scores).scatter_(-1, scores.topk(k, -1).indices, 1.0)
    previous = math.inf
    for eps in (1e-1, 1e-2, 1e-3, 1e-5):
        gap = (ot_topk(scores, k, eps=eps) - hard).abs().max().item()
        assert gap <= previous + 1e-7
        previous = gap
    assert previous < 1e-4


@pytest.mark.parametrize("normalise", [True, False])
def test_gradcheck_implicit_gradient(normalise):
    """Finite differences of the membership (the normaliser ``max C`` is differentiated too)."""
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda s: ot_topk(s, 2, eps=0.2, tol=1e-14, n_iters=200, normalise=normalise)
    assert torch.autograd.gradcheck(fn, (scores,), eps=1e-6, atol=1e-6)


def _block_scores():
    """Typical RAS rows: block cosines of a query and an exemplar layout's region features
    (one feature per class plus noise, 4x4 blocks of a 16x16 grid -> 16 candidate blocks)."""
    from evalkit.data import get_dataset
    from evalkit.methods.alignment.confidence import block_features

    ds = get_dataset("shapes", split="test", size=32, n=2, seed=0)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(8, 16, generator=g, dtype=torch.float64)

    def feats(onehot):
        f = torch.einsum("khw,kc->chw", onehot.double(), emb)[None]
        f = torch.nn.functional.avg_pool2d(f, 2)
        return f + 0.5 * torch.randn(f.shape, generator=g, dtype=torch.float64)

    rows = []
    for i in range(2):
        q, e = block_features(feats(ds[i].cond), 4), block_features(feats(ds[i].exemplar_cond), 4)
        rows.append(q[0] @ e[0].T)
    return torch.cat(rows)  # [32, 16] cosines in [-1, 1]


def test_paper_eps_is_soft_on_typical_rows_and_the_ranking_gets_gradient_beyond_the_boundary():
    """RABIT's retrieval (k=3, anchors {-1, 1}) on typical block-cosine rows. At the old setting
    (eps 0.01 on the raw (s -+ 1)^2 cost) the membership is close to a hard top-k and most of the
    gradient sits on the k-th / (k+1)-th candidates; at Xie et al.'s eps 0.1 on the normalised
    cost it is soft and most of the gradient reaches the other candidates."""
    scores = _block_scores().requires_grad_(True)
    k = 3
    weights = torch.linspace(1.0, 2.0, scores.shape[-1], dtype=torch.float64)  # a downstream use of each member

    def boundary_share(member):
        grad, = torch.autograd.grad((member * weights).sum(), scores)
        order = scores.detach().argsort(-1, descending=True)
        boundary = torch.zeros_like(grad, dtype=torch.bool).scatter_(-1, order[:, k - 1:k + 1], True)
        return float((grad.abs() * boundary).sum() / grad.abs().sum())

    def fuzzy(member):  # candidates per row neither in (> 0.95) nor out (< 0.05)
        return ((member.detach() > 0.05) & (member.detach() < 0.95)).sum(-1).float()

    hard = ot_topk(scores, k, eps=0.01, anchors=(-1.0, 1.0), normalise=False)
    soft = ot_topk(scores, k, eps=0.1, anchors=(-1.0, 1.0))
    assert fuzzy(hard).mean() < 2 and (fuzzy(soft) >= 3).float().mean() >= 0.9
    assert boundary_share(hard) > 0.7 and boundary_share(soft) < 0.5


def test_k_equals_n_selects_all():
    scores = torch.randn(2, 4)
    torch.testing.assert_close(ot_topk(scores, 4), torch.ones(2, 4))


def test_hard_straight_through():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.5]], requires_grad=True)
    out = hard_topk_straight_through(scores, 2, temperature=0.5)
    assert out.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    (out * weights).sum().backward()
    soft = torch.softmax(scores.detach() / 0.5, -1)
    ref = torch.autograd.functional.vjp(lambda s: torch.softmax(s / 0.5, -1), scores.detach(),
                                        weights)[1]
    torch.testing.assert_close(scores.grad, ref)
    assert soft.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [0, 5, 2.5])
def test_bad_k(k):
    with pytest.raises(EvalkitError, match="k must be"):
        ot_topk(torch.randn(2, 4), k)


def test_nan_scores():
    with pytest.raises(EvalkitError, match="NaN"):
        ot_topk(torch.tensor([[0.1, math.nan]]), 1)
