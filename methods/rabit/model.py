"""RABIT (Zhan et al., ECCV 2022): bi-level alignment (RAS + SPE) and confidence feature injection.

Alignment network (Sec. 3.1): F_X, F_Z on the correspondence grid (paper: 128x128 for a
256x256 output); semantic position encoding (SPE: one coordinate system per semantic
region, appended to the features of both sides) or a global CoordConv grid (official
code) or none; the ranking-and-attention scheme (2x2 blocks, OT top-k with k=3) from
:class:`evalkit.methods.alignment.ranking.RankingAttention`, or dense cosine attention for the
Fig. 6 baselines. Generation network (Sec. 3.2): a SPADE generator de-normalised by the
CONFI fusion of conditional-input and warped-exemplar features:
``F = X (1 - CMAP) + (T.Z) CMAP`` with the single-channel confidence ``CMAP`` (peak block
correlation, in [0, 1]), then a multi-channel confidence ``M = sigmoid(conv(F))`` and the
fused guidance ``X (1 - M) + (T.Z) M`` injected by spatial de-normalisation. Ablations
without CONFI concatenate the warped exemplar with the labels (CoCosNet's injection).
Manipulation mode trains on self-reference pairs only (exemplar = the re-cropped,
flipped ground truth), so at test time the exemplar is the original image and the
conditional input its edited label map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evalkit.methods.alignment.correspondence import resize_to
from evalkit.methods.alignment.ranking import RankingAttention
from evalkit.methods.common.encoders import CosineAlignment
from evalkit.methods.common.spade import warped_exemplar_guide
from evalkit.methods.config import RABITConfig
from evalkit.methods.translator import GANTranslator

__all__ = ["CONFI", "RABITTranslator"]


class CONFI(nn.Module):
    """Confidence feature injection (RABIT Sec. 3.2, Fig. 5)."""

    def __init__(self, cond_nc: int, nc: int):
        super().__init__()
        self.cond_conv = nn.Sequential(nn.Conv2d(cond_nc, nc, 3, padding=1), nn.LeakyReLU(0.2))
        self.exemplar_conv = nn.Sequential(nn.Conv2d(3, nc, 3, padding=1), nn.LeakyReLU(0.2))
        self.multi = nn.Sequential(nn.Conv2d(nc, nc, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(nc, nc, 3, padding=1), nn.Sigmoid())

    def forward(self, cond: torch.Tensor, exemplar: torch.Tensor, corr) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the fused guidance ``[B, nc, H, W]`` on the query grid, CMAP and Multi-CMAP."""
        x = self.cond_conv(F.interpolate(cond, size=corr.size, mode="nearest"))
        tz = corr.warp(self.exemplar_conv(resize_to(exemplar, corr.key_size)))
        cmap = corr.confidence.clamp(0, 1).to(x.dtype)
        fused = x * (1 - cmap) + tz * cmap
        multi = self.multi(fused)
        return x * (1 - multi) + tz * multi, cmap, multi


class RABITTranslator(GANTranslator):
    """RABIT and its ablations, selected by ``alignment`` / ``position`` / ``injection``."""

    config_class = RABITConfig

    def __init__(self, config: RABITConfig, cond_channels: int, variant: str = "rabit"):
        super().__init__(config, cond_channels, variant)
        c = config
        if c.alignment == "ras":
            aligner = RankingAttention(block=c.block, k=c.topk, retrieval=c.retrieval, eps=c.topk_eps,
                                       temperature=c.temperature, n_iters=c.topk_iters)
        else:
            aligner = CosineAlignment(c.temperature)
        self.corr = self.make_correspondence(aligner, c.position)
        if c.injection == "confi":
            self.confi = CONFI(cond_channels, c.confi_nc)
            guide_nc = c.confi_nc
        else:
            guide_nc = 3 + cond_channels
        self.netG = self.make_generator(guide_nc, self.spade_norms(guide_nc, "guide"))

    def prepare_batch(self, batch):
        """Manipulation mode: replace every exemplar by a self-reference view of the ground truth."""
        if self.config.self_ref_mode != "always":
            return batch
        from evalkit.data.transforms import self_reference

        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # drawn from torch's RNG: checkpointed
        rng = np.random.default_rng(seed)
        ex, ex_cond, ex_label = [], [], []
        for i in range(len(batch)):
            label = None if batch.label is None else batch.label[i]
            e, ec, el = self_reference(batch.image[i].cpu(), batch.cond[i].cpu(), None if label is None else label.cpu(), rng)
            ex.append(e)
            ex_cond.append(ec)
            ex_label.append(el)
        batch.exemplar = torch.stack(ex).to(batch.image.device)
        batch.exemplar_cond = torch.stack(ex_cond).to(batch.image.device)
        batch.exemplar_label = None if batch.label is None else torch.stack(ex_label).to(batch.image.device)
        batch.self_ref = torch.ones_like(batch.self_ref)
        return batch

    def generate(self, batch) -> dict:
        a = self.align(batch)
        corr = a["corr"]
        warped = corr.warp(batch.exemplar)
        extras = {}
        if self.config.injection == "confi":
            guide, cmap, multi = self.confi(batch.cond, batch.exemplar, corr)
            extras = {"cmap": cmap, "multi_cmap": multi}
        else:
            guide = warped_exemplar_guide(warped, batch.cond)
        x0 = F.interpolate(guide, size=(self.netG.start,) * 2, mode="nearest")
        image = self.netG(x0, {"guide": guide})
        aux = self.correspondence_aux(a, batch) if self.training else {}
        return {"image": image, "warped": warped, "confidence": corr.confidence, "aux": aux, "extras": extras}
