"""UNITE (Zhan et al., CVPR 2021): unbalanced feature transport + SEACE translation network.

Feature transport network (Sec. 3.1): F_X, F_Z map the conditional input and the
exemplar onto the transport grid (paper: 64x64, 128-d); masses from the cross inner
products (eq. 3), cost ``1 - cos``, entropic unbalanced OT with ``eta = 1e-4`` (eq. 2-5),
all in :class:`evalkit.methods.alignment.transport.UnbalancedTransport`. Multi-stage transport:
the exemplar's feature maps at every depth of F_Z (deepest first) and the exemplar
image itself are transported with the same plan and injected into the generator from
its coarsest to its finest stages; without ``multi_stage`` only the transported
exemplar image is injected (CoCosNet-style). Translation network (Sec. 3.2): a SPADE
generator whose de-normalisations are SEACE layers (``injection="seace"``) or SPADE
layers guided by the transported exemplar + labels (``injection="concat"``), or by the
labels with the exemplar's style code at the start grid (``injection="spade"``: Table 3's
SPADE baseline, "a supervised translation method that supports style injection from an
exemplar", i.e. SPADE-VAE). Losses (eq. 8-12): cycle, feature consistency, perceptual,
contextual, pseudo pairs, adversarial.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from evalkit.methods.alignment.transport import UnbalancedTransport
from evalkit.methods.common.encoders import CosineAlignment, StyleCode
from evalkit.methods.common.losses import kld_loss
from evalkit.methods.config import UNITEConfig
from evalkit.methods.translator import GANTranslator
from evalkit.methods.unite.seace import SEACE

__all__ = ["UNITETranslator", "make_aligner"]


def make_aligner(c: UNITEConfig):
    """The feature-alignment module of an ablation with alignment: cosine, balanced OT or unbalanced OT."""
    if c.alignment == "cosine":
        return CosineAlignment(c.temperature)
    return UnbalancedTransport(eps=c.ot_eps, tau=c.ot_tau, n_iters=c.ot_iters, tol=c.ot_tol, eps_steps=c.ot_eps_steps,
                               balanced=c.alignment == "ot", masses=c.ot_masses)


class UNITETranslator(GANTranslator):
    """UNITE and its Table 3 ablations, selected by ``alignment`` / ``injection`` / ``multi_stage``
    (:class:`evalkit.methods.config.UNITEConfig` admits label-only SPADE exactly without alignment)."""

    config_class = UNITEConfig

    def __init__(self, config: UNITEConfig, cond_channels: int, variant: str = "unite"):
        super().__init__(config, cond_channels, variant)
        c = config
        num_up = c.generator.num_up
        self.exemplar_based = c.alignment != "none"
        if self.exemplar_based:
            self.corr = self.make_correspondence(make_aligner(c))
            stage_nc = list(reversed(self.corr.f_z.stage_nc)) if c.multi_stage else []
            self.map_nc = stage_nc + [3]  # transported maps, deepest first, the exemplar image last
        n_stages = num_up + 1  # generator grid sides: start, 2 start, ..., size

        def map_for(stage: int) -> int:
            """Transported map injected at a generator grid of side ``stage`` (coarse stages get deep maps)."""
            i = min(n_stages - 1, max(0, round(math.log2(stage / (c.size // 2 ** num_up)))))
            return min(len(self.map_nc) - 1, i * len(self.map_nc) // n_stages)

        if c.injection == "seace":
            make_norm = lambda nc, stage: SEACE(nc, cond_channels, self.map_nc[map_for(stage)],  # noqa: E731
                                                c.generator.spade_hidden, map_for(stage), c.seace_attn_size)
            in_nc = cond_channels
        elif c.injection == "concat":
            in_nc = 3 + cond_channels
            make_norm = self.spade_norms(in_nc, "guide")
        else:  # Table 3's SPADE: labels in every SPADE layer, the exemplar's style code at the start grid
            in_nc = c.z_dim
            make_norm = self.spade_norms(cond_channels, "seg")
        self.netG = self.make_generator(in_nc, make_norm)
        if not self.exemplar_based:
            self.style = StyleCode(c.size, c.generator.ngf, c.z_dim, self.netG.start)

    def generate(self, batch) -> dict:
        c = self.config
        size = batch.cond.shape[-2:]
        start = (self.netG.start,) * 2
        if not self.exemplar_based:  # as SPADE-VAE (baselines/spade.py): ground truth in training, exemplar after
            x0, mu, logvar = self.style(batch.image if self.training else batch.exemplar, sample=self.training)
            aux = {"kld": kld_loss(mu, logvar)} if self.training else {}
            return {"image": self.netG(x0, {"seg": batch.cond}), "aux": aux}
        a = self.align(batch)
        corr = a["corr"]
        warped = corr.warp(batch.exemplar)
        guide = {"seg": batch.cond, "fx": a["fx"]}
        if c.injection == "seace":
            maps = [corr.warp(m) for m in reversed(a["z_stages"])] if c.multi_stage else []
            guide["aligned"] = maps + [warped]
            x0 = F.interpolate(batch.cond, size=start, mode="nearest")
        else:
            guide["guide"] = torch.cat(
                [F.interpolate(warped, size=size, mode="bilinear", align_corners=False), batch.cond], 1)
            x0 = F.interpolate(guide["guide"], size=start, mode="nearest")
        image = self.netG(x0, guide)
        aux = self.correspondence_aux(a, batch) if self.training else {}
        return {"image": image, "warped": warped, "confidence": corr.confidence, "aux": aux}
