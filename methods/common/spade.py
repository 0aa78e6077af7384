"""Spatially-adaptive de-normalisation (SPADE, Park et al. 2019) and the SPADE generator.

A SPADE layer normalises an activation with a parameter-free norm and de-normalises it
with a per-pixel scale and shift predicted from a guidance map:
``out = norm(x) * (1 + gamma(g)) + beta(g)`` with ``gamma, beta = conv(relu(conv(g)))``.
Every injection scheme in evalkit (label map, warped exemplar + labels, RABIT's CONFI
fusion, UNITE's SEACE) is a module with the same call ``norm(x, guide)``; the generator
is built from a factory ``make_norm(channels, stage) -> module`` so one generator serves
all methods. ``guide`` is a dict of tensors prepared once per forward pass.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from evalkit.methods.common.normalization import param_free_norm

__all__ = ["SPADE", "SPADEResBlock", "SPADEGenerator", "NormFactory"]

NormFactory = Callable[[int, int], nn.Module]  # (channels, stage side in pixels) -> norm(x, guide)


def warped_exemplar_guide(warped: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """CoCosNet's injection: the warped exemplar, resized to the conditional input, concatenated
    with it as the SPADE guide ``[B, 3 + C, H, W]``."""
    resized = F.interpolate(warped, size=cond.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([resized, cond], 1)


class SPADE(nn.Module):
    """SPADE layer guided by one map of ``guide[key]`` (resized to the activation, nearest)."""

    def __init__(self, channels: int, guide_nc: int, hidden: int, norm: str = "batch", key: str = "seg"):
        super().__init__()
        self.key = key
        self.norm = param_free_norm(norm, channels)
        self.shared = nn.Sequential(nn.Conv2d(guide_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, guide: dict) -> torch.Tensor:
        g = F.interpolate(guide[self.key], size=x.shape[2:], mode="nearest")
        actv = self.shared(g)
        return self.norm(x) * (1 + self.gamma(actv)) + self.beta(actv)


def _conv(fin: int, fout: int, k: int, spectral: bool, bias: bool = True) -> nn.Module:
    conv = nn.Conv2d(fin, fout, k, padding=k // 2, bias=bias)
    return spectral_norm(conv) if spectral else conv


class SPADEResBlock(nn.Module):
    """SPADE residual block: two (norm → LeakyReLU → conv) with a learned shortcut when widths differ."""

    def __init__(self, fin: int, fout: int, make_norm: NormFactory, stage: int, spectral: bool = True):
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = _conv(fin, fmid, 3, spectral)
        self.conv_1 = _conv(fmid, fout, 3, spectral)
        self.norm_0 = make_norm(fin, stage)
        self.norm_1 = make_norm(fmid, stage)
        if self.learned_shortcut:
            self.conv_s = _conv(fin, fout, 1, spectral, bias=False)
            self.norm_s = make_norm(fin, stage)

    def forward(self, x: torch.Tensor, guide: dict) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, guide)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, guide), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, guide), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """SPADE's generator with width ``ngf`` and ``num_up`` up-sampling stages.

    Starts at ``size / 2**num_up`` from ``x0 [B, in_nc, s, s]`` (down-sampled labels, or a
    style code reshaped by the caller), then ``head`` at ``s``, two middle blocks at
    ``2s`` and ``num_up - 1`` up blocks halving the width (16ngf → ... as in SPADE
    "normal"), ending in ``tanh(conv(leaky_relu(x)))``. Widths are capped at
    ``max_mult * ngf``.
    """

    def __init__(self, in_nc: int, ngf: int, num_up: int, size: int, make_norm: NormFactory,
                 max_mult: int = 16, spectral: bool = True):
        super().__init__()
        if num_up < 2:
            raise ValueError("SPADEGenerator needs num_up >= 2")
        self.start = size // 2 ** num_up
        mult = lambda i: min(max_mult, 2 ** (num_up - 1 - i)) * ngf  # noqa: E731  i = up-block index
        top = min(max_mult, 2 ** (num_up - 1)) * ngf
        self.fc = nn.Conv2d(in_nc, top, 3, padding=1)
        self.head = SPADEResBlock(top, top, make_norm, self.start, spectral)
        self.middle = nn.ModuleList([SPADEResBlock(top, top, make_norm, 2 * self.start, spectral) for _ in range(2)])
        ups, fin = [], top
        for i in range(num_up - 1):
            fout = max(ngf, mult(i + 1))
            ups.append(SPADEResBlock(fin, fout, make_norm, self.start * 2 ** (i + 2), spectral))
            fin = fout
        self.ups = nn.ModuleList(ups)
        self.conv_img = nn.Conv2d(fin, 3, 3, padding=1)

    def forward(self, x0: torch.Tensor, guide: dict) -> torch.Tensor:
        x = self.head(self.fc(x0), guide)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for block in self.middle:
            x = block(x, guide)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), guide)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))
