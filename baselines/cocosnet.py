"""CoCosNet (Zhang et al., CVPR 2020): dense cosine correspondence + SPADE generator.

F_X / F_Z map labels and exemplar to the 64x64 correspondence grid (paper preset),
the warping matrix is ``softmax(cos(x_i, z_j) / 0.01)``, the warped exemplar (at 64x64,
up-sampled to the output) concatenated with the labels guides every SPADE layer.
Losses: CoCosNet's cycle (warp and warp back), domain alignment ``||F_X(X) - F_Z(X')||_1``,
pseudo pairs, perceptual, contextual and the adversarial terms (:class:`GANTranslator`).
"""

from __future__ import annotations

import torch.nn.functional as F

from evalkit.methods.alignment.correspondence import resize_to
from evalkit.methods.common.encoders import CosineAlignment
from evalkit.methods.common.spade import warped_exemplar_guide
from evalkit.methods.config import CoCosNetConfig
from evalkit.methods.translator import GANTranslator

__all__ = ["CoCosNetTranslator"]


class CoCosNetTranslator(GANTranslator):
    """Warped exemplar + labels → SPADE generator."""

    config_class = CoCosNetConfig

    def __init__(self, config: CoCosNetConfig, cond_channels: int, variant: str = "cocosnet"):
        super().__init__(config, cond_channels, variant)
        self.corr = self.make_correspondence(CosineAlignment(config.temperature))
        guide_nc = 3 + cond_channels
        self.netG = self.make_generator(guide_nc, self.spade_norms(guide_nc, "guide"))

    def generate(self, batch) -> dict:
        a = self.corr(batch.cond, batch.exemplar, batch.exemplar_cond)
        warped = a["corr"].warp(batch.exemplar)
        guide = warped_exemplar_guide(warped, batch.cond)
        x0 = F.interpolate(guide, size=(self.netG.start,) * 2, mode="nearest")
        image = self.netG(x0, {"guide": guide})
        aux = {}
        if self.training:
            target = resize_to(batch.exemplar, a["corr"].key_size)
            aux = {"cycle": F.l1_loss(self.corr.cycle(a, batch.exemplar), target),
                   "consistency": self.corr.consistency(a, batch.image)}
        return {"image": image, "warped": warped, "confidence": a["corr"].confidence, "aux": aux}


def _register() -> None:
    from evalkit.methods.registry import register_variant

    register_variant("cocosnet", CoCosNetTranslator, corr_ratio=0.25, temperature=0.01,
                     description="CoCosNet: dense cosine correspondence at 64x64, temperature 0.01")


_register()
