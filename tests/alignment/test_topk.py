"""OT top-k against POT's Sinkhorn on the same EM problem, its eps -> 0 limit and gradients."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from evalkit.errors import EvalkitError
from evalkit.methods.alignment import hard_topk_straight_through, ot_topk


@pytest.mark.parametrize("anchors", [(0.0, 1.0), (-1.0, 1.0)])
def test_membership_is_the_entropic_em_plan(anchors):
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 9, generator=g, dtype=torch.float64) * 2 - 1
    k, eps = 3, 0.1
    member = ot_topk(scores, k, eps=eps, anchors=anchors, tol=1e-12)
    n = scores.shape[1]
    for row, m in zip(scores.numpy(), member):
        cost = (row[:, None] - np.array(anchors)[None, :]) ** 2
        mu = np.full(n, 1.0 / n)
        nu = np.array([(n - k) / n, k / n])
        plan = ot.sinkhorn(mu, nu, cost, eps, numItermax=100000, stopThr=1e-14)
        np.testing.assert_allclose(m.numpy(), n * plan[:, 1], atol=1e-8)
    assert torch.all((member >= 0) & (member <= 1))
    torch.testing.assert_close(member.sum(-1), torch.full((3,), float(k), dtype=torch.float64))


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


def test_gradcheck_implicit_gradient():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda s: ot_topk(s, 2, eps=0.2, tol=1e-14, n_iters=200)
    assert torch.autograd.gradcheck(fn, (scores,), eps=1e-6, atol=1e-6)


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
