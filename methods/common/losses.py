"""The losses of RABIT (Sec. 4), UNITE (Sec. 3.3), CoCosNet and SPADE, as plain functions.

- hinge GAN (Lim & Ye; SPADE): ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``,
  ``L_G = -E[D(G(z))]``, averaged over every scale of the multiscale discriminator;
- discriminator feature matching (pix2pixHD): ``sum_scales sum_layers ||D_l(x) - D_l(G)||_1 / num_d``;
- VGG loss (SPADE): ``sum_l w_l ||phi_l(Y) - phi_l(X')||_1``, ``w = 1/32, 1/16, 1/8, 1/4, 1``
  on relu1_1 ... relu5_1, per sample so that pairs can be weighted;
- perceptual ``L_perc = ||phi_relu5_2(Y) - phi_relu5_2(X')||_1`` (RABIT eq. 1, UNITE eq. 10);
- contextual ``L_cxt`` (see :mod:`evalkit.methods.common.contextual`);
- cycle ``L_cyc = ||T^T T Z - Z||_1`` and feature consistency ``L_cst = ||F_X(X) - F_Z(X')||_1``;
- pseudo pairs ``L_pse`` (CoCosNet Sec. 3.3): on self-reference samples (exemplar = the
  augmented ground truth) the output must reproduce the ground truth (VGG loss) and the
  warped exemplar must equal the ground truth at the correspondence size (L1);
- KL divergence of SPADE-VAE's posterior to N(0, I).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evalkit.methods.common.contextual import contextual_loss

__all__ = [
    "VGG_LAYERS", "VGG_WEIGHTS", "CX_LAYERS", "hinge_d_loss", "hinge_g_loss", "feature_matching_loss",
    "vgg_loss_per_sample", "perceptual_loss", "contextual_loss_layers", "cycle_loss", "consistency_loss",
    "pseudo_pair_loss", "kld_loss",
]

VGG_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
CX_LAYERS = {"relu5_2": 8.0, "relu4_2": 4.0, "relu3_2": 2.0}


def _logits(pred: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [scale[-1] for scale in pred]


def hinge_d_loss(pred_real: list[list[torch.Tensor]], pred_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Discriminator hinge loss, mean over scales of ``E relu(1 - D(real)) + E relu(1 + D(fake))``."""
    real, fake = _logits(pred_real), _logits(pred_fake)
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def hinge_g_loss(pred_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Generator hinge loss ``-E D(fake)``, mean over scales."""
    return torch.stack([-f.mean() for f in _logits(pred_fake)]).mean()


def feature_matching_loss(pred_real: list[list[torch.Tensor]], pred_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between D's intermediate activations, real detached."""
    total = 0.0
    for real, fake in zip(pred_real, pred_fake):
        for r, f in zip(real[:-1], fake[:-1]):
            total = total + F.l1_loss(f, r.detach())
    return total / len(pred_fake)


def vgg_loss_per_sample(fake: dict, real: dict) -> torch.Tensor:
    """SPADE's VGG loss per batch element ``[B]``: ``sum_l w_l mean|phi_l(Y) - phi_l(X')|``."""
    total = 0.0
    for name, w in zip(VGG_LAYERS, VGG_WEIGHTS):
        total = total + w * (fake[name] - real[name].detach()).abs().flatten(1).mean(1)
    return total


def perceptual_loss(fake: dict, real: dict, layer: str = "relu5_2") -> torch.Tensor:
    """``||phi_l(Y) - phi_l(X')||_1`` (mean absolute difference) at ``layer``."""
    return F.l1_loss(fake[layer], real[layer].detach())


def contextual_loss_layers(fake: dict, exemplar: dict, *, bandwidth: float = 0.5,
                           layers: dict[str, float] = CX_LAYERS) -> torch.Tensor:
    """Weighted sum over VGG layers of the contextual loss of the output to the exemplar."""
    total = 0.0
    for name, w in layers.items():
        total = total + w * contextual_loss(fake[name], exemplar[name].detach(), bandwidth=bandwidth)
    return total


def cycle_loss(cycled: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """``||T^T T Z - Z||_1``: ``cycled`` is the exemplar warped to the query and back."""
    return F.l1_loss(cycled, original)


def consistency_loss(feat_cond: torch.Tensor, feat_real: torch.Tensor) -> torch.Tensor:
    """``||F_X(X) - F_Z(X')||_1``: conditional-input features vs. ground-truth image features."""
    return F.l1_loss(feat_cond, feat_real)


def pseudo_pair_loss(fake_vgg: dict, real_vgg: dict, self_ref: torch.Tensor,
                     warped: torch.Tensor | None = None, real: torch.Tensor | None = None) -> torch.Tensor:
    """Self-reference (pseudo pair) loss, averaged over the batch (zero when no sample is a pseudo pair)."""
    mask = self_ref.float()
    loss = (vgg_loss_per_sample(fake_vgg, real_vgg) * mask).sum() / mask.numel()
    if warped is not None and real is not None:
        target = F.interpolate(real, size=warped.shape[2:], mode="bilinear", align_corners=False, antialias=True)
        per = (warped - target).abs().flatten(1).mean(1)
        loss = loss + (per * mask).sum() / mask.numel()
    return loss


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, sigma^2) || N(0, I))`` summed over dimensions, as SPADE's KLDLoss: ``-0.5 sum(1 + logvar - mu^2 - e^logvar)``."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
