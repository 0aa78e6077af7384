"""Multiscale PatchGAN discriminator (pix2pixHD / SPADE) with spectral + instance norm.

``num_d`` copies of an ``n_layers`` PatchGAN see the (image, condition) pair at scales
1, 1/2, 1/4, ...; each returns the list of its intermediate activations, whose last
entry is the patch logit map. Intermediate activations feed the feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["NLayerDiscriminator", "MultiscaleDiscriminator"]


class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs, stride 2 except the last two, spectral norm + instance norm, LeakyReLU 0.2."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(nn.Sequential(
                spectral_norm(nn.Conv2d(nf_prev, nf, 4, stride=stride, padding=2, bias=False)),
                nn.InstanceNorm2d(nf, affine=False),
                nn.LeakyReLU(0.2),
            ))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=2)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input average-pooled by 2 between scales."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2):
        super().__init__()
        self.discriminators = nn.ModuleList([NLayerDiscriminator(input_nc, ndf, n_layers) for _ in range(num_d)])

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outs = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs
