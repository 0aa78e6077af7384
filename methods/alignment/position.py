"""Position encodings: RABIT's semantic position encoding (§3.1, Fig. 3) and CoordConv.

``semantic_position_encoding`` builds one coordinate system per semantic region (all
pixels of one label): its origin is the region's centre (centroid of its pixels) and each
axis is divided by the region's largest distance from that centre along the axis, so
values lie in [-1, 1] and reach ±1 at the region's extent.  ``coord_grid`` is the vanilla
global CoordConv encoding (Liu et al. 2018) used by the ablation.  Channel 0 is x
(column), channel 1 is y (row).
"""

from __future__ import annotations

import torch

from evalkit.errors import EvalkitError
from evalkit.methods.alignment.checks import check_values


def coord_grid(batch: int, height: int, width: int, *, device=None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Global CoordConv coordinates ``[B, 2, H, W]``: x and y spaced evenly in [-1, 1]."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype) if height > 1 else \
        torch.zeros(1, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype) if width > 1 else \
        torch.zeros(1, device=device, dtype=dtype)
    grid = torch.stack([xs.view(1, -1).expand(height, width), ys.view(-1, 1).expand(height, width)])
    return grid.unsqueeze(0).expand(batch, 2, height, width).contiguous()


def semantic_position_encoding(labels: torch.Tensor, *, dtype: torch.dtype = torch.float32
                               ) -> torch.Tensor:
    """Per-region coordinates ``[B, 2, H, W]`` in [-1, 1], origin at each region's centre.

    Args:
        labels: ``[B, H, W]`` integer label map, or ``[B, K, H, W]`` one-hot / soft map
            (the arg-max label is used).
    """
    if labels.dim() == 4:
        labels = labels.argmax(1)
    if labels.dim() != 3:
        raise EvalkitError(
            f"labels must be [B, H, W] indices or [B, K, H, W] one-hot, got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise EvalkitError("a [B, H, W] label map must hold integer class indices, got floats")
    if check_values() and (labels < 0).any():
        raise EvalkitError("label map has negative class indices; map ignored pixels to a class")
    b, h, w = labels.shape
    labels = labels.long()
    k = int(labels.max().item()) + 1
    region = (labels + k * torch.arange(b, device=labels.device).view(b, 1, 1)).reshape(-1)
    ys, xs = torch.meshgrid(torch.arange(h, device=labels.device, dtype=torch.float64),
                            torch.arange(w, device=labels.device, dtype=torch.float64),
                            indexing="ij")
    out = []
    for coord in (xs, ys):
        c = coord.reshape(1, -1).expand(b, -1).reshape(-1)
        count = torch.zeros(b * k, dtype=torch.float64, device=labels.device).index_add_(
            0, region, torch.ones_like(c))
        total = torch.zeros_like(count).index_add_(0, region, c)
        centre = total / count.clamp_min(1)
        d = c - centre[region]
        extent = torch.zeros_like(count).scatter_reduce_(0, region, d.abs(), reduce="amax")
        scale = extent[region]
        out.append(torch.where(scale > 0, d / scale.clamp_min(1e-12), torch.zeros_like(d)))
    return torch.stack(out).reshape(2, b, h, w).transpose(0, 1).to(dtype).contiguous()
