"""Ranking-and-attention (RAS), dense cosine attention and Correspondence.warp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist

from evalkit.errors import EvalkitError
from evalkit.methods.alignment import RankingAttention, dense_cosine_attention, peak_correlation


def feats(seed, shape=(2, 8, 8, 8), dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_dense_cosine_is_softmax_of_scipy_cosine():
    q, k = feats(0, (1, 5, 4, 3), torch.float64), feats(1, (1, 5, 3, 4), torch.float64)
    corr = dense_cosine_attention(q, k, temperature=0.1)
    cos = 1 - cdist(q[0].reshape(5, -1).T.numpy(), k[0].reshape(5, -1).T.numpy(), "cosine")
    ref = np.exp(cos / 0.1) / np.exp(cos / 0.1).sum(1, keepdims=True)
    np.testing.assert_allclose(corr.matrix()[0].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(corr.confidence[0, 0].numpy().ravel(), cos.max(1), atol=1e-12)


def test_warp_resizes_values_to_the_key_grid():
    q, k = feats(2), feats(3)
    corr = dense_cosine_attention(q, k)
    image = feats(4, (2, 3, 32, 32))
    small = F.adaptive_avg_pool2d(image, 8)
    torch.testing.assert_close(corr.warp(image), corr.warp(small))
    ref = torch.einsum("bqk,bck->bcq", corr.matrix(), small.flatten(2)).reshape(2, 3, 8, 8)
    torch.testing.assert_close(corr.warp(small), ref)


@pytest.mark.parametrize("retrieval", ["ot", "softmax"])
def test_ras_with_all_blocks_equals_dense_attention(retrieval):
    q, k = feats(5), feats(6)
    dense = dense_cosine_attention(q, k, temperature=0.05).matrix()
    ras = RankingAttention(block=2, k=16, retrieval=retrieval, temperature=0.05)(q, k)
    torch.testing.assert_close(ras.matrix(), dense, atol=1e-5, rtol=1e-4)


def test_ras_retrieves_the_top_blocks_and_attends_inside_them():
    q, k = feats(7, (1, 4, 4, 4), torch.float64), feats(8, (1, 4, 4, 4), torch.float64)
    ras = RankingAttention(block=2, k=2, retrieval="softmax", temperature=0.1)(q, k)
    # brute force: block means, cosine, top-2, softmax over their 8 positions
    def blocks(x):
        return x[0].reshape(4, 2, 2, 2, 2).permute(1, 3, 2, 4, 0).reshape(4, 4, 4)
    qb, kb = blocks(q), blocks(k)  # [N, b, C]
    qm = F.normalize(qb.mean(1), dim=-1)
    km = F.normalize(kb.mean(1), dim=-1)
    top = (qm @ km.T).topk(2).indices
    dense = torch.zeros(16, 16, dtype=torch.float64)
    pos = torch.arange(16).reshape(4, 4).reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4)
    for i in range(4):
        keys = torch.cat([kb[j] for j in top[i]])
        att = torch.softmax(F.normalize(qb[i], dim=-1) @ F.normalize(keys, dim=-1).T / 0.1, -1)
        cols = torch.cat([pos[j] for j in top[i]])
        for r in range(4):
            dense[pos[i][r], cols] = att[r]
    torch.testing.assert_close(ras.matrix()[0], dense)
    torch.testing.assert_close(ras.confidence, peak_correlation(q, k, block=2))


def test_ras_gradient_reaches_features_through_ranking_and_attention():
    q = feats(9, (1, 4, 4, 4), torch.float64).requires_grad_(True)
    k = feats(10, (1, 4, 4, 4), torch.float64).requires_grad_(True)
    image = feats(11, (1, 3, 4, 4), torch.float64)
    RankingAttention(k=2, eps=0.5)(q, k).warp(image).sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def test_ras_chunks_do_not_change_the_result():
    q, k = feats(12), feats(13)
    a = RankingAttention(k=3, chunk_size=1024)(q, k).matrix()
    b = RankingAttention(k=3, chunk_size=5)(q, k).matrix()
    torch.testing.assert_close(a, b)


def test_ras_bad_input():
    q, k = feats(14), feats(15)
    with pytest.raises(EvalkitError, match="exceeds"):
        RankingAttention(k=17)(q, k)
    with pytest.raises(EvalkitError, match="cannot be split"):
        RankingAttention(k=1)(feats(1, (1, 8, 7, 8)), feats(2, (1, 8, 7, 8)))
    with pytest.raises(EvalkitError, match="differ"):
        RankingAttention()(q, k[:, :4])
    bad = q.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(EvalkitError, match="NaN"):
        dense_cosine_attention(bad, k)
    with pytest.raises(EvalkitError, match="retrieval"):
        RankingAttention(retrieval="gumbel")


def test_gradcheck_ras_warp():
    # the retrieved indices are piecewise constant; gradients flow through the OT top-k
    # membership and the attention, and must match finite differences
    q = feats(16, (1, 3, 4, 4), torch.float64).requires_grad_(True)
    k = feats(17, (1, 3, 4, 4), torch.float64).requires_grad_(True)
    image = feats(18, (1, 2, 4, 4), torch.float64)
    ras = RankingAttention(k=2, eps=0.5, temperature=0.5, n_iters=100)
    fn = lambda q_, k_: ras(q_, k_).warp(image)
    assert torch.autograd.gradcheck(fn, (q, k), eps=1e-6, atol=1e-5)


def test_warp_rejects_wrong_batch():
    corr = dense_cosine_attention(feats(19), feats(20))
    with pytest.raises(EvalkitError, match="batch"):
        corr.warp(torch.randn(3, 3, 8, 8))
