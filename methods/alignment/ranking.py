"""RABIT's ranking-and-attention scheme (RAS, §3.1 "Bi-level Feature Alignment").

Features are split into ``N = L / b`` blocks of ``b = block x block`` positions.  Level 1:
each query block ranks all key blocks by the cosine of their block features (the mean
of the block's position features) and retrieves the top ``k`` (differentiable OT top-k
of Xie et al., :func:`~evalkit.methods.alignment.topk.ot_topk`, with anchors ``{-1, 1}`` — or, for
the official code's variant, a hard top-k with the ``softmax(cos / 0.01)`` straight-through
gradient).  Level 2: dense attention between the ``b`` position features of the query
block and the ``k * b`` position features of its retrieved blocks,
``softmax_j(cos(x_i, z_j) / temperature + log w_blk(j))`` where ``w`` is the block's
retrieval membership (1 for a hard selection), so the ranking's gradient reaches the
warp.  Memory ``O(N k b^2 + N k b C)`` beyond one cache-sized tile: the ``L x L`` matrix is never
built, nor the ``N x N`` block scores for the OT retrieval
(:func:`~evalkit.methods.alignment.topk.ot_topk_largest_of_products` computes them a row tile at
a time and recomputes them in the backward; the softmax retrieval holds ``chunk_size`` query
blocks' scores at a time, and autograd keeps them); level 2 gathers the ``N k b`` retrieved
position features once, ``[B, N, k b, C]``. With ``k = N`` it equals dense attention.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from evalkit.errors import EvalkitError
from evalkit.methods.alignment.confidence import block_features, expand_blocks
from evalkit.methods.alignment.correspondence import BlockCorrespondence, to_blocks
from evalkit.methods.alignment.cosine import check_features
from evalkit.methods.alignment.topk import hard_topk_straight_through, ot_topk_largest_of_products

RETRIEVALS = ("ot", "softmax")


class RankingAttention(nn.Module):
    """Ranking-and-attention correspondence (RAS).

    Args:
        block: block side (``block x block`` positions per block; paper: 2).
        k: retrieved blocks per query block (paper: 3; official code: 1).
        retrieval: ``"ot"`` (paper: OT top-k) or ``"softmax"`` (code: hard top-k,
            softmax straight-through gradient).
        eps: OT top-k regularisation on the normalised cost (anchors ``{-1, 1}`` on cosine
            scores; Xie et al.'s 0.1, see :func:`~evalkit.methods.alignment.topk.ot_topk`).
        temperature: attention temperature (and the softmax retrieval's).
        n_iters: OT top-k solver iterations.
        chunk_size: query blocks ranked at once by the softmax retrieval (bounds its memory;
            the OT retrieval sizes its tiles to the cache).
    """

    def __init__(self, block: int = 2, k: int = 3, retrieval: str = "ot", eps: float = 1e-1,
                 temperature: float = 0.01, n_iters: int = 60, chunk_size: int = 1024):
        super().__init__()
        if retrieval not in RETRIEVALS:
            raise EvalkitError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
        if block < 1 or k < 1 or chunk_size < 1:
            raise EvalkitError(
                f"block, k and chunk_size must be >= 1, got block={block}, k={k}, "
                f"chunk_size={chunk_size}")
        if not (eps > 0 and temperature > 0):
            raise EvalkitError(f"eps and temperature must be > 0, got {eps}, {temperature}")
        self.block, self.k, self.retrieval = int(block), int(k), retrieval
        self.eps, self.temperature = float(eps), float(temperature)
        self.n_iters, self.chunk_size = int(n_iters), int(chunk_size)

    def extra_repr(self) -> str:
        return (f"block={self.block}, k={self.k}, retrieval={self.retrieval!r}, eps={self.eps}, "
                f"temperature={self.temperature}")

    def _retrieve_softmax(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official code's retrieval of the top-k key blocks of each query block: their
        scores, indices and straight-through weights ``[B, n, k]``."""
        values, idx = scores.topk(self.k, dim=-1)
        weight = hard_topk_straight_through(scores, self.k, temperature=self.temperature)
        return values, idx, weight.gather(-1, idx)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> BlockCorrespondence:
        """Correspondence from ``key [B, C, h, w]`` onto ``query [B, C, H, W]``."""
        check_features(query, key)
        s, k = self.block, self.k
        qpos = F.normalize(to_blocks(query, s), dim=-1)  # [B, N, b, C]
        kpos = F.normalize(to_blocks(key, s), dim=-1)    # [B, Nk, b, C]
        bsz, n_key, b, c = kpos.shape
        if k > n_key:
            raise EvalkitError(
                f"k={k} exceeds the {n_key} key blocks of a {key.shape[-2]}x{key.shape[-1]} grid "
                f"with {s}x{s} blocks; lower k or use a larger grid")
        qblk = block_features(query, s)  # normalised block means [B, N, C]
        kblk = block_features(key, s)
        if self.retrieval == "ot":  # level 1 tile by tile, the block scores never held whole
            values, idx, weight = ot_topk_largest_of_products(
                qblk, kblk, self.k, eps=self.eps, n_iters=self.n_iters, anchors=(-1.0, 1.0))
        else:
            parts = [self._retrieve_softmax(torch.bmm(qblk[:, start:start + self.chunk_size],
                                                      kblk.transpose(1, 2)))
                     for start in range(0, qblk.shape[1], self.chunk_size)]  # a chunk of queries at a time
            values, idx, weight = (torch.cat(part, 1) for part in zip(*parts))  # [B, N, k]
        peaks = values[..., 0]  # CMAP keeps its gradient (as the dense path and RABIT's code)
        n = idx.shape[1]
        # level 2 for every query block at once: [B, N, k b, C] keys are N k b C, as its output;
        # one gather (whose backward fills one key-sized gradient, not one per chunk)
        keys = torch.gather(kpos, 1, idx.reshape(bsz, n * k, 1, 1).expand(bsz, n * k, b, c))
        keys = keys.reshape(bsz, n, k * b, c)
        logits = torch.matmul(qpos, keys.transpose(-1, -2)) / self.temperature
        log_w = weight.clamp_min(torch.finfo(weight.dtype).tiny).log()
        logits = logits + log_w.repeat_interleave(b, dim=-1).unsqueeze(2)
        size = tuple(query.shape[-2:])
        confidence = expand_blocks(peaks, size, s)
        return BlockCorrespondence(idx, torch.softmax(logits, dim=-1), s, size,
                                   tuple(key.shape[-2:]), confidence)
