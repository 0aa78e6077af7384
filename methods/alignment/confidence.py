"""Confidence map of CONFI (RABIT §3.2): the peak block correlation.

For every query block ``X_i`` the correlation scores with all key blocks are
``a_j = cos(X_i, Z_j)``; the confidence of ``X_i`` is ``max_j a_j``.  Block features are
the mean of the ``block x block`` positions (``block=1``: per position).  The map is
returned on the position grid (each block's value repeated over its positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evalkit.methods.alignment.correspondence import to_blocks


def block_features(x: torch.Tensor, block: int) -> torch.Tensor:
    """``[B, C, H, W]`` → L2-normalised block means ``[B, N, C]`` (raster order)."""
    return F.normalize(to_blocks(x, block).mean(2), dim=-1)


def expand_blocks(values: torch.Tensor, size: tuple[int, int], block: int) -> torch.Tensor:
    """Per-block values ``[B, N]`` → ``[B, 1, H, W]`` (each value over its block)."""
    b = values.shape[0]
    h, w = size
    grid = values.reshape(b, 1, h // block, w // block)
    return grid.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)


def peak_correlation(query: torch.Tensor, key: torch.Tensor, *, block: int = 1,
                     chunk_size: int = 1024) -> torch.Tensor:
    """CONFI confidence ``[B, 1, H, W]``: max block cosine of each query block over all key blocks.

    Computed ``chunk_size`` query blocks at a time, so memory is ``O(chunk_size x N)``.
    """
    from evalkit.methods.alignment.cosine import check_features

    check_features(query, key)
    qb, kb = block_features(query, block), block_features(key, block)
    peaks = torch.cat([torch.bmm(qb[:, s:s + chunk_size], kb.transpose(1, 2)).amax(-1)
                       for s in range(0, qb.shape[1], chunk_size)], dim=1)
    return expand_blocks(peaks, tuple(query.shape[-2:]), block)
