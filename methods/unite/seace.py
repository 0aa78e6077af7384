"""SEmantic-ACtivation (dE)normalisation, SEACE (UNITE Sec. 3.2, Fig. 4, eq. 6-7).

From the aligned (transported) exemplar feature ``A`` two modulation maps
``gamma_z, mu_z = conv(A)`` are predicted. The semantic-activation matrix ``M`` is the
self-attention of the conditional-input features ``X = F_X(cond)``: ``M_ij = x_i . x_j``,
row-normalised with a softmax (scaled by ``1/sqrt(d)``, as the self-attention of SAGAN
the paper cites for long-range dependencies), so ``gamma_x = M gamma_z`` and
``mu_x = M mu_z`` average the modulation over every position of the same semantics.
They modulate the conditional activation ``X_act = relu(conv(cond))`` (eq. 6):
``X'_act = gamma_x * X_act + mu_x``; ``gamma, mu = conv(X'_act)`` then de-normalise the
positionally-normalised generator activation (eq. 7):
``L' = (1 + gamma) * (L - mu_p) / sigma_p + mu`` (the ``1 +`` is SPADE's re-parametrisation
of the scale, as in the official code). ``M`` is built on a grid of side at most
``attn_size`` (paper 64) and the aggregated maps are up-sampled to larger activations,
as the official implementation does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.methods.alignment.correspondence import resize_to
from evalkit.methods.common.normalization import positional_norm

__all__ = ["semantic_activation_matrix", "SEACE"]


def semantic_activation_matrix(x: torch.Tensor) -> torch.Tensor:
    """``M [B, N, N]`` with ``M_i. = softmax_j(x_i . x_j / sqrt(d))`` for features ``x [B, d, H, W]`` (N = HW)."""
    flat = x.flatten(2)
    logits = torch.bmm(flat.transpose(1, 2), flat) / math.sqrt(flat.shape[1])
    return torch.softmax(logits.float(), dim=2)


class SEACE(nn.Module):
    """One SEACE layer: ``forward(x, guide)`` with ``guide["aligned"][map_index]``, ``guide["seg"]``, ``guide["fx"]``."""

    def __init__(self, channels: int, cond_nc: int, feat_nc: int, hidden: int, map_index: int, attn_size: int = 64):
        super().__init__()
        self.map_index = map_index
        self.attn_size = attn_size
        self.z_gamma = nn.Conv2d(feat_nc, hidden, 3, padding=1)
        self.z_mu = nn.Conv2d(feat_nc, hidden, 3, padding=1)
        self.cond_shared = nn.Sequential(nn.Conv2d(cond_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mu = nn.Conv2d(hidden, channels, 3, padding=1)

    @staticmethod
    def activation_matrix(guide: dict, side: int) -> torch.Tensor:
        """``M`` on a ``side x side`` grid, computed once per forward pass and cached in ``guide``."""
        cache = guide.setdefault("_seace_M", {})
        if side not in cache:
            cache[side] = semantic_activation_matrix(resize_to(guide["fx"], (side, side)))
        return cache[side]

    def forward(self, x: torch.Tensor, guide: dict) -> torch.Tensor:
        b, _, h, w = x.shape
        aligned = guide["aligned"][self.map_index]
        side = min(h, self.attn_size, aligned.shape[-1])
        a = resize_to(aligned, (side, side))
        m = self.activation_matrix(guide, side).to(a.dtype)
        g_x = torch.bmm(self.z_gamma(a).flatten(2), m.transpose(1, 2)).view(b, -1, side, side)
        mu_x = torch.bmm(self.z_mu(a).flatten(2), m.transpose(1, 2)).view(b, -1, side, side)
        if side != h:
            g_x = F.interpolate(g_x, size=(h, w), mode="bilinear", align_corners=False)
            mu_x = F.interpolate(mu_x, size=(h, w), mode="bilinear", align_corners=False)
        x_act = self.cond_shared(F.interpolate(guide["seg"], size=(h, w), mode="nearest"))
        modulated = g_x * x_act + mu_x  # eq. 6
        return positional_norm(x) * (1 + self.gamma(modulated)) + self.mu(modulated)  # eq. 7
