"""CoCosNet (Zhang et al., CVPR 2020): dense cosine correspondence + SPADE generator.

F_X / F_Z map labels and exemplar to the 64x64 correspondence grid (paper preset),
the warping matrix is ``softmax(cos(x_i, z_j) / 0.01)``, the warped exemplar (at 64x64,
up-sampled to the output) concatenated with the labels guides every SPADE layer.
Losses: CoCosNet's cycle (warp and warp back), domain alignment ``||F_X(X) - F_Z(X')||_1``,
pseudo pairs, perceptual, contextual and the adversarial terms (:class:`GANTranslator`).

The ``cocosnet`` variant is the released configuration (microsoft/CoCosNet README, ADE20K:
``--maskmix --warp_mask_losstype direct --weight_mask 100 --PONO --PONO_C``, ``--match_kernel 3``
by default): features centred over their dimension and matched over 3x3 neighbourhoods
(:class:`~evalkit.methods.config.CoCosNetConfig` ``centre`` / ``match_kernel``), the resized
labels mixed into both sides' features (``label_mix``), the warp-mask loss and a PONO
generator. Still simplified: the adaptive feature extractors (evalkit's F_X / F_Z, not the
released ``AdaptiveFeatureGenerator``), no non-local blocks in G and D (``--use_attention``),
no ``noise_for_mask``, VGG losses on relu1_1 ... (SPADE's layers) for the label-only terms.
"""

from __future__ import annotations

import torch.nn.functional as F

from evalkit.methods.common.encoders import CosineAlignment
from evalkit.methods.common.spade import warped_exemplar_guide
from evalkit.methods.config import CoCosNetConfig
from evalkit.methods.translator import GANTranslator

__all__ = ["CoCosNetTranslator"]


class CoCosNetTranslator(GANTranslator):
    """Warped exemplar + labels → SPADE generator (``config``: the released flag set, see module docstring)."""

    config_class = CoCosNetConfig

    def __init__(self, config: CoCosNetConfig, cond_channels: int, variant: str = "cocosnet"):
        super().__init__(config, cond_channels, variant)
        c = config
        self.corr = self.make_correspondence(CosineAlignment(c.temperature, c.centre, c.match_kernel),
                                             label_mix=c.label_mix)
        guide_nc = 3 + cond_channels
        self.netG = self.make_generator(guide_nc, self.spade_norms(guide_nc, "guide"))

    def generate(self, batch) -> dict:
        a = self.align(batch)
        warped = a["corr"].warp(batch.exemplar)
        guide = warped_exemplar_guide(warped, batch.cond)
        x0 = F.interpolate(guide, size=(self.netG.start,) * 2, mode="nearest")
        image = self.netG(x0, {"guide": guide})
        aux = self.correspondence_aux(a, batch) if self.training else {}
        return {"image": image, "warped": warped, "confidence": a["corr"].confidence, "aux": aux}


def _register() -> None:
    from evalkit.methods.registry import register_variant

    register_variant("cocosnet", CoCosNetTranslator, corr_ratio=0.25, temperature=0.01, norm_g="pono",
                     description="CoCosNet as released (ADE20K flags): centred 3x3-neighbourhood cosine at 64x64, "
                                 "temperature 0.01, label mixing, warp-mask loss x100, PONO generator")


_register()
