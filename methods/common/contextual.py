"""Contextual loss (Mechrez, Talmi, Zelnik-Manor, ECCV 2018), RABIT eq. 2 / UNITE eq. 11.

For feature sets ``y = {y_j}`` (the exemplar's, target) and ``x = {x_i}`` (the output's):

1. centre both by the target mean ``mu_y`` and L2-normalise each feature vector;
2. cosine distance ``d_ij = 1 - <x_i, y_j>``;
3. relative distance ``d~_ij = d_ij / (min_k d_ik + eps)``;
4. similarity ``w_ij = exp((1 - d~_ij) / h)``, normalised ``CX_ij = w_ij / sum_k w_ik``;
5. ``CX(x, y) = (1/N) sum_j max_i CX_ij`` and the loss ``-log CX(x, y)``.

Identical sets give ``CX = 1`` (loss 0) as ``eps → 0``; unrelated sets approach ``1/N``.
"""

from __future__ import annotations

import torch

__all__ = ["contextual_similarity", "contextual_loss"]


def contextual_similarity(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """``CX(x, y)`` per batch element for features ``x, y [B, C, H, W]`` (or ``[B, C, N]``)."""
    x = x.flatten(2).float()
    y = y.flatten(2).float()
    mu = y.mean(dim=2, keepdim=True)
    x = torch.nn.functional.normalize(x - mu, dim=1)
    y = torch.nn.functional.normalize(y - mu, dim=1)
    d = 1 - torch.bmm(x.transpose(1, 2), y)  # [B, N_x, N_y], d[i, j]
    d_rel = d / (d.min(dim=2, keepdim=True).values + eps)
    w = torch.exp((1 - d_rel) / bandwidth)
    cx = w / w.sum(dim=2, keepdim=True)
    return cx.max(dim=1).values.mean(dim=1)


def contextual_loss(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """Mean over the batch of ``-log CX(x, y)``."""
    return -torch.log(contextual_similarity(x, y, bandwidth=bandwidth, eps=eps) + 1e-12).mean()
