"""The one interface of everything that produces images: :class:`Translator`.

``translate(batch) -> TranslationOutput`` (no grad, eval mode), ``train_step(batch)``
(one generator step and one discriminator step, returns the losses as floats),
``state_dict()`` / ``load_state_dict(sd)`` (always strict: a checkpoint that does not
match the architecture is an error, never a silent partial load), ``.variant``.

:class:`GANTranslator` is the shared trainer of every trainable variant: a subclass
only implements ``generate(batch) -> dict`` (the output image, optionally the warped
exemplar, confidence map and its own auxiliary losses); the adversarial, feature
matching, VGG, perceptual, contextual and pseudo-pair losses and the TTUR Adam steps
live here. On CUDA the forward passes run under bf16 autocast and the model uses
channels_last memory format.
"""

from __future__ import annotations

import abc
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.errors import EvalkitError
from evalkit.methods.alignment.correspondence import resize_to
from evalkit.methods.alignment.checks import trusted
from evalkit.methods.common.discriminator import MultiscaleDiscriminator
from evalkit.methods.common.encoders import CorrespondenceNet
from evalkit.methods.common.losses import (
    CX_LAYERS, PSE_LAYERS, VGG_LAYERS, contextual_loss_layers, feature_matching_loss, hinge_d_loss, hinge_g_loss,
    perceptual_loss, pseudo_pair_l1, pseudo_pair_loss, vgg_loss_per_sample, warp_self_loss,
)
from evalkit.methods.common.spade import SPADE, NormFactory, SPADEGenerator
from evalkit.methods.common.vgg import PerceptualVGG19
from evalkit.methods.config import TranslatorConfig

__all__ = ["TranslationOutput", "Translator", "GANTranslator"]


@dataclass
class TranslationOutput:
    """``image [B, 3, H, W]`` in [-1, 1]; ``warped [B, 3, h, w]`` and ``confidence [B, 1, h, w]`` when the method has them."""

    image: torch.Tensor
    warped: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)


class Translator(nn.Module, metaclass=abc.ABCMeta):
    """Base class: a named variant that translates batches and (optionally) trains."""

    variant: str = ""
    trainable: bool = True

    @abc.abstractmethod
    def translate(self, batch) -> TranslationOutput:
        """Outputs for ``batch`` (an :class:`evalkit.data.Batch`), without gradients, in eval mode."""

    def train_step(self, batch) -> dict[str, float]:
        raise EvalkitError(f"variant {self.variant!r} cannot be trained")

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Strict load only; a mismatching checkpoint raises :class:`EvalkitError` listing the keys."""
        if not strict:
            raise EvalkitError("translators load checkpoints strictly; strict=False is not supported")
        missing = sorted(set(self.state_dict()) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(self.state_dict()))
        if missing or unexpected:
            raise EvalkitError(
                f"checkpoint does not match variant {self.variant!r}: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}; was it saved from another variant or preset?"
            )
        return super().load_state_dict(state_dict, strict=True, assign=assign)

    def optimizer_state(self) -> dict:
        return {}

    def load_optimizer_state(self, state: dict) -> None:
        if state:
            raise EvalkitError(f"variant {self.variant!r} has no optimiser state to load")

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class GANTranslator(Translator):
    """Generator + multiscale discriminator trained with the papers' losses (see :mod:`evalkit.methods.common.losses`).

    Subclasses build their generator side in ``__init__`` and implement :meth:`generate`,
    returning ``{"image", "warped"?, "confidence"?, "aux": {loss name: raw value}, "extras"?}``;
    auxiliary loss names are fields of :class:`evalkit.methods.config.LossWeights` (``cycle``,
    ``consistency``, ``mask``, ``kld``). ``exemplar_based`` translators get L_pse (the VGG
    loss on self-reference pairs only), L_perc and L_cxt; label-only ones SPADE's VGG loss
    (see :meth:`generator_losses`).
    """

    exemplar_based: bool = True

    def __init__(self, config: TranslatorConfig, cond_channels: int, variant: str):
        super().__init__()
        self.config = config
        self.cond_channels = int(cond_channels)
        self.variant = variant
        d = config.discriminator
        self.netD = MultiscaleDiscriminator(3 + self.cond_channels, d.ndf, d.n_layers_d, d.num_d)
        self.__dict__["_vgg"] = None  # frozen loss network: not a submodule, not in the state dict
        self.__dict__["_optimizers"] = None

    # -- building blocks from the config ---------------------------------------------------
    def spade_norms(self, guide_nc: int, key: str) -> NormFactory:
        """SPADE layers de-normalised by ``guide[key]`` (``guide_nc`` channels), as ``config.generator`` sets."""
        g = self.config.generator
        return lambda nc, stage: SPADE(nc, guide_nc, g.spade_hidden, g.norm_g, key=key)

    def make_generator(self, in_nc: int, make_norm: NormFactory) -> SPADEGenerator:
        """The SPADE generator of ``config.generator`` at ``config.size``, starting from ``in_nc`` channels."""
        g = self.config.generator
        return SPADEGenerator(in_nc, g.ngf, g.num_up, self.config.size, make_norm, g.max_mult, g.spectral_g)

    def make_correspondence(self, aligner: nn.Module, position: str = "none", label_mix: bool = False) -> CorrespondenceNet:
        """F_X / F_Z of ``config.correspondence`` (exemplar-based families) around ``aligner``."""
        c = self.config.correspondence
        return CorrespondenceNet(self.cond_channels, self.config.size, c.corr_size, c.enc_ngf, c.feat_nc,
                                 c.enc_res_blocks, aligner, position, label_mix=label_mix)

    def align(self, batch) -> dict:
        """``self.corr`` on the batch (regions for SPE: the batch's label maps); records the position
        encoding actually used (SPE falls back to the global grid without a region map) and, for
        transport, the marginal residual, in :attr:`protocol_meta` (written to ``meta.json``)."""
        a = self.corr(batch.cond, batch.exemplar, batch.exemplar_cond, batch.label, batch.exemplar_label)
        meta = self.__dict__.setdefault("protocol_meta", {})
        if self.corr.position != "none":
            meta["position_encoding"] = a["position"]
        stats = None if self.training else getattr(a["corr"], "stats", None)
        if stats:
            for k, v in stats.items():  # the worst batch seen
                meta[k] = max(meta.get(k, v), v)
        return a

    def correspondence_aux(self, a: dict, batch) -> dict:
        """The alignment network's training losses: cycle ``||T^T T Z - Z||_1``, consistency and (weight
        > 0, label maps present) the warp-mask loss."""
        w = self.config.losses
        aux = {}
        if w.cycle:
            aux["cycle"] = F.l1_loss(self.corr.cycle(a, batch.exemplar), resize_to(batch.exemplar, a["corr"].key_size))
        if w.consistency:
            aux["consistency"] = self.corr.consistency(a, batch.image)
        if w.mask:
            mask = self.corr.warp_mask(a, batch.label, batch.exemplar_label)
            if mask is not None:
                aux["mask"] = mask
        return aux

    # -- devices -------------------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.__dict__.get("_vgg") is not None:
            self.__dict__["_vgg"]._apply(fn)
        return self

    def prepare_device(self, device: torch.device | str) -> "GANTranslator":
        """Move to ``device``; on CUDA also switch to channels_last (AMP bf16 is applied per step)."""
        device = torch.device(device)
        self.to(device)
        if device.type == "cuda":
            self.to(memory_format=torch.channels_last)
        return self

    @property
    def vgg(self) -> PerceptualVGG19:
        if self.__dict__["_vgg"] is None:
            layers = tuple(sorted(set(VGG_LAYERS) | set(PSE_LAYERS) | set(CX_LAYERS)))
            self.__dict__["_vgg"] = PerceptualVGG19(layers, width=self.config.vgg_width).to(self.device)
        return self.__dict__["_vgg"]

    # -- parameters and optimisers -------------------------------------------------------
    def generator_parameters(self) -> list[nn.Parameter]:
        d_ids = {id(p) for p in self.netD.parameters()}
        return [p for p in self.parameters() if id(p) not in d_ids and p.requires_grad]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.__dict__["_optimizers"] is None:
            o = self.config.optim
            self.__dict__["_optimizers"] = {
                "G": torch.optim.Adam(self.generator_parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2)),
                "D": torch.optim.Adam(self.netD.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2)),
            }
        return self.__dict__["_optimizers"]

    def optimizer_state(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers().items()}

    def load_optimizer_state(self, state: dict) -> None:
        opts = self.optimizers()
        if set(state) != set(opts):
            raise EvalkitError(f"optimiser state has {sorted(state)}, expected {sorted(opts)}")
        for name, opt in opts.items():
            opt.load_state_dict(state[name])

    # -- the method-specific part ----------------------------------------------------------
    @abc.abstractmethod
    def generate(self, batch) -> dict:
        """Forward pass; in training mode also the auxiliary losses under ``"aux"``."""

    def prepare_batch(self, batch):
        """Hook for variants that change the training pairs (RABIT's manipulation mode)."""
        return batch

    # -- public API ------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, batch) -> TranslationOutput:
        was_training = self.training
        self.eval()
        try:
            batch = batch.to(self.device)
            with _autocast(self.device), trusted():
                out = self.generate(batch)
        finally:
            self.train(was_training)
        f = lambda t: None if t is None else t.float()  # noqa: E731
        return TranslationOutput(f(out["image"]), f(out.get("warped")), f(out.get("confidence")),
                                 dict(out.get("extras", {})))

    def train_step(self, batch) -> dict[str, float]:
        with trusted():  # the alignment modules' value scans are for user calls (alignment.checks)
            return self._train_step(batch)

    def _train_step(self, batch) -> dict[str, float]:
        self.train()
        batch = self.prepare_batch(batch.to(self.device))
        opts = self.optimizers()
        with _autocast(self.device):
            out = self.generate(batch)
            g_losses = self.generator_losses(batch, out)
        g_total = sum(g_losses.values())
        opts["G"].zero_grad(set_to_none=True)
        g_total.backward()
        opts["G"].step()

        with _autocast(self.device):
            fake = out["image"].detach()
            pred_fake = self.netD(torch.cat([batch.cond, fake], 1))
            pred_real = self.netD(torch.cat([batch.cond, batch.image], 1))
            d_loss = hinge_d_loss(pred_real, pred_fake)
        opts["D"].zero_grad(set_to_none=True)
        d_loss.backward()
        opts["D"].step()
        names = [*g_losses, "G_total", "D"]  # one host transfer for every loss of the step
        values = torch.stack([v.detach().float() for v in (*g_losses.values(), g_total, d_loss)]).tolist()
        return dict(zip(names, values))

    def generator_losses(self, batch, out: dict) -> dict[str, torch.Tensor]:
        """The generator's weighted loss terms (a weight of 0 skips its term and its network pass).

        Every translator: hinge GAN and D feature matching. Exemplar-based ones (CoCosNet Sec. 3,
        RABIT Sec. 4, UNITE Sec. 3.3, as the released code): ``L_pse``, the VGG loss to the
        ground truth on self-reference pairs only (``vgg * fm_ratio``, no VGG loss to the ground
        truth on cross-exemplar pairs), ``L_perc`` (relu5_2, every pair), ``L_cxt`` to the
        exemplar, the optional self-reference warp loss and the auxiliary terms of
        :meth:`generate` (cycle, consistency, mask, kld). Label-only ones: SPADE's VGG loss on
        every pair, and the pixel ``l1`` to the ground truth where it is set (preset ``tiny``).
        """
        w = self.config.losses
        fake = out["image"]
        pred_fake = self.netD(torch.cat([batch.cond, fake], 1))
        losses = {"gan": w.gan * hinge_g_loss(pred_fake)}
        if w.gan_feat:
            with torch.no_grad():
                pred_real = self.netD(torch.cat([batch.cond, batch.image], 1))
            losses["gan_feat"] = w.gan_feat * feature_matching_loss(pred_real, pred_fake)
        to_gt = (w.vgg * w.fm_ratio or w.perceptual) if self.exemplar_based else w.vgg
        cxt = self.exemplar_based and w.contextual
        if to_gt or cxt:
            vgg = self.vgg
            vgg_fake = vgg(fake.float())
            with torch.no_grad():
                vgg_real = vgg(batch.image.float()) if to_gt else None
                vgg_ex = vgg(batch.exemplar.float()) if cxt else None
        if self.exemplar_based:
            if w.vgg * w.fm_ratio:
                losses["pseudo"] = w.vgg * w.fm_ratio * pseudo_pair_loss(vgg_fake, vgg_real, batch.self_ref)
            if w.perceptual:
                losses["perceptual"] = w.perceptual * perceptual_loss(vgg_fake, vgg_real)
            if cxt:
                losses["contextual"] = w.contextual * contextual_loss_layers(
                    vgg_fake, vgg_ex, bandwidth=self.config.cx_bandwidth)
            if w.warp_self and out.get("warped") is not None:
                losses["warp_self"] = w.warp_self * warp_self_loss(out["warped"].float(), batch.image, batch.self_ref)
        elif w.vgg:
            losses["vgg"] = w.vgg * vgg_loss_per_sample(vgg_fake, vgg_real).mean()
        if w.l1:  # evalkit's, preset `tiny`: label-only on every pair, exemplar-based on self-reference pairs
            losses["l1"] = w.l1 * (pseudo_pair_l1(fake.float(), batch.image.float(), batch.self_ref)
                                   if self.exemplar_based else F.l1_loss(fake.float(), batch.image.float()))
        for name, value in out.get("aux", {}).items():
            losses[name] = getattr(w, name) * value
        return losses
