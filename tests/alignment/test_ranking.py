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


def test_ras_chunks_and_tiles_do_not_change_the_result(monkeypatch):
    """The softmax retrieval's query chunks and the OT retrieval's row tiles bound memory only."""
    from evalkit.methods.alignment import topk as T

    q, k = feats(12), feats(13)
    a = RankingAttention(k=3, retrieval="softmax", chunk_size=1024)(q, k).matrix()
    b = RankingAttention(k=3, retrieval="softmax", chunk_size=5)(q, k).matrix()
    torch.testing.assert_close(a, b)
    whole = RankingAttention(k=3)(q, k).matrix()
    monkeypatch.setattr(T, "TILE_ELEMENTS", 5 * 16)  # 5 of the 16 query blocks a tile
    torch.testing.assert_close(RankingAttention(k=3)(q, k).matrix(), whole)


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


def _col_normalised_transpose(W, values):
    """Reference ``W^T v`` normalised by the column sums of the dense matrix (0 where a column is empty)."""
    num = torch.bmm(values.flatten(2), W)
    mass = W.sum(1, keepdim=True)
    return torch.where(mass > 0, num / mass.clamp_min(1e-300), torch.zeros_like(num))


@pytest.mark.parametrize("k", [16, 3])
def test_block_warp_back_is_the_dense_transpose(k):
    """RAS's transpose apply (a scatter over the retrieved blocks, O(N k b^2)) against the
    column-normalised transpose of its own dense matrix; with k = N that matrix is dense attention."""
    q, key = feats(21, dtype=torch.float64), feats(22, dtype=torch.float64)
    values = feats(23, (2, 3, 8, 8), torch.float64)
    ras = RankingAttention(block=2, k=k, temperature=0.05)(q, key)
    ref = _col_normalised_transpose(ras.matrix(), values).reshape(2, 3, 8, 8)
    torch.testing.assert_close(ras.warp_back(values), ref)
    if k == 16:
        dense = dense_cosine_attention(q, key, temperature=0.05)
        torch.testing.assert_close(ras.warp_back(values), dense.warp_back(values), atol=1e-6, rtol=1e-5)


def test_ras_cycle_uses_the_transpose_not_a_reverse_alignment():
    """RABIT's L_cyc is ||T^T T Z - Z||: with the block transpose the cycle of a bijective block
    correspondence recovers Z exactly (a fresh reverse alignment would not in general)."""
    from evalkit.methods.common.encoders import CorrespondenceNet

    net = CorrespondenceNet(2, 8, 4, 4, 4, 1, RankingAttention(block=2, k=1))
    q = feats(24, (1, 4, 4, 4))
    corr = net.aligner(q, q)  # each block retrieves itself
    z = feats(25, (1, 3, 4, 4))
    back = net.cycle({"corr": corr}, z)
    ref = _col_normalised_transpose(corr.matrix(), corr.warp(z)).reshape(1, 3, 4, 4)
    torch.testing.assert_close(back, ref)


def test_cmap_keeps_its_gradient():
    """CONFI's confidence (peak block correlation) is not detached in RAS, as in the dense path
    and RABIT's code: the features get gradient through it."""
    q = feats(26, (1, 4, 4, 4)).requires_grad_(True)
    k = feats(27, (1, 4, 4, 4)).requires_grad_(True)
    RankingAttention(block=2, k=2)(q, k).confidence.sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


@pytest.mark.parametrize("centre,kernel", [(True, 3), (True, 1), (False, 3)])
def test_released_cocosnet_matching_centred_neighbourhoods(centre, kernel):
    """CoCosNet's released matching (--PONO_C centring over the feature dimension, --match_kernel 3):
    brute-force zero-padded 3x3 neighbourhood vectors, centred, cosine, softmax."""
    q, k = feats(28, (1, 4, 5, 5), torch.float64), feats(29, (1, 4, 5, 5), torch.float64)
    corr = dense_cosine_attention(q, k, temperature=0.1, centre=centre, match_kernel=kernel)

    def vectors(x):
        r = kernel // 2
        pad = np.pad(x[0].numpy(), ((0, 0), (r, r), (r, r)))
        out = [pad[:, i:i + kernel, j:j + kernel].reshape(-1) for i in range(5) for j in range(5)]
        out = np.stack(out)
        return out - out.mean(1, keepdims=True) if centre else out

    cos = 1 - cdist(vectors(q), vectors(k), "cosine")
    ref = np.exp(cos / 0.1) / np.exp(cos / 0.1).sum(1, keepdims=True)
    np.testing.assert_allclose(corr.matrix()[0].numpy(), ref, atol=1e-10)
    with pytest.raises(EvalkitError, match="match_kernel"):
        dense_cosine_attention(q, k, match_kernel=2)
