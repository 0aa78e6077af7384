"""SPADE baselines (Park et al., CVPR 2019): label-only ``spade`` and exemplar-encoded ``spade-vae``.

``spade``: the generator starts from the down-sampled label map and every normalisation
is de-normalised by the label map; the exemplar is ignored. ``spade-vae``: a style
encoder maps the exemplar to ``N(mu, sigma^2)``; a sample ``z`` (training) or the mean
``mu`` (translation, so outputs are deterministic) is projected to the generator's
start grid; trained with the KL term (x0.05). Both use SPADE's losses: hinge GAN,
discriminator feature matching and the VGG loss to the ground truth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.methods.common.encoders import StyleEncoder
from evalkit.methods.common.losses import kld_loss
from evalkit.methods.common.spade import SPADE, SPADEGenerator
from evalkit.methods.config import TranslatorConfig
from evalkit.methods.translator import GANTranslator

__all__ = ["SPADETranslator", "SPADEVAETranslator"]


class SPADETranslator(GANTranslator):
    """Label map → image; the exemplar is not used."""

    exemplar_based = False

    def __init__(self, config: TranslatorConfig, cond_channels: int, variant: str = "spade"):
        super().__init__(config, cond_channels, variant)
        c = config
        make_norm = lambda nc, stage: SPADE(nc, cond_channels, c.spade_hidden, c.norm_g, key="seg")  # noqa: E731
        self.netG = SPADEGenerator(cond_channels, c.ngf, c.num_up, c.size, make_norm, c.max_mult, c.spectral_g)

    def generate(self, batch) -> dict:
        x0 = F.interpolate(batch.cond, size=(self.netG.start,) * 2, mode="nearest")
        return {"image": self.netG(x0, {"seg": batch.cond}), "aux": {}}


class SPADEVAETranslator(GANTranslator):
    """SPADE with a VAE style encoder of the exemplar (style code injected at the start grid)."""

    exemplar_based = False

    def __init__(self, config: TranslatorConfig, cond_channels: int, variant: str = "spade-vae"):
        super().__init__(config, cond_channels, variant)
        c = config
        make_norm = lambda nc, stage: SPADE(nc, cond_channels, c.spade_hidden, c.norm_g, key="seg")  # noqa: E731
        self.encoder = StyleEncoder(c.size, c.ngf, c.z_dim)
        self.netG = SPADEGenerator(c.z_dim, c.ngf, c.num_up, c.size, make_norm, c.max_mult, c.spectral_g)
        self.fc = nn.Linear(c.z_dim, c.z_dim * self.netG.start ** 2)

    def generate(self, batch) -> dict:
        mu, logvar = self.encoder(batch.exemplar)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        s = self.netG.start
        x0 = self.fc(z).view(z.shape[0], -1, s, s)
        aux = {"kld": kld_loss(mu, logvar)} if self.training else {}
        return {"image": self.netG(x0, {"seg": batch.cond}), "aux": aux, "extras": {"mu": mu}}


def _register() -> None:
    from evalkit.methods.registry import register_variant

    register_variant("spade", SPADETranslator, description="SPADE, label map only (Park et al. 2019)")
    register_variant("spade-vae", SPADEVAETranslator, description="SPADE with a VAE style encoder of the exemplar")


_register()
