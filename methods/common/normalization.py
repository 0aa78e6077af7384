"""Parameter-free normalisations used inside the generators.

Positional normalisation (PONO, Li et al. 2019; UNITE eq. 7) normalises every spatial
position across its channels: ``(x - mu_p) / sigma_p`` with ``mu_p, sigma_p`` the mean and
standard deviation over ``C`` at each ``(h, w)``. It keeps the spatial structure that
instance / batch norm wash out, which is why SEACE de-normalises after it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["positional_norm", "PositionalNorm2d", "param_free_norm"]


def positional_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(x - mean_C(x)) / sqrt(var_C(x) + eps)`` at each position of ``x [B, C, H, W]`` (biased variance)."""
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


class PositionalNorm2d(nn.Module):
    """Module form of :func:`positional_norm` (no parameters)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return positional_norm(x, self.eps)


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation SPADE-style layers de-normalise: ``batch``, ``instance`` or ``pono``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "pono":
        return PositionalNorm2d()
    raise ValueError(f"unknown param-free norm {kind!r} (batch, instance or pono)")
