"""The losses of RABIT (Sec. 4), UNITE (Sec. 3.3), CoCosNet and SPADE, as plain functions.

- hinge GAN (Lim & Ye; SPADE): ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``,
  ``L_G = -E[D(G(z))]``, averaged over every scale of the multiscale discriminator;
- discriminator feature matching (pix2pixHD): ``sum_scales sum_layers ||D_l(x) - D_l(G)||_1 / num_d``;
- VGG loss (SPADE): ``sum_l w_l ||phi_l(Y) - phi_l(X')||_1``, ``w = 1/32, 1/16, 1/8, 1/4, 1``
  on relu1_1 ... relu5_1, per sample so that pairs can be weighted (label-only SPADE: every pair);
- perceptual ``L_perc = ||phi_relu5_2(Y) - phi_relu5_2(X')||_1`` (RABIT eq. 1, UNITE eq. 10);
- contextual ``L_cxt`` (see :mod:`evalkit.methods.common.contextual`);
- cycle ``L_cyc = ||T^T T Z - Z||_1`` and feature consistency ``L_cst = ||F_X(X) - F_Z(X')||_1``;
- pseudo pairs ``L_pse`` (CoCosNet Sec. 3.3; UNITE/RABIT cite it): on self-reference
  samples only (exemplar = the augmented ground truth) the output must reproduce the ground
  truth: ``sum_l w_l mean_{b,c,h,w} (s_b / (sum s + 1e-5)) |phi_l(Y) - phi_l(X')|`` on relu1_2 ...
  relu5_2 with ``s_b = 1`` for self-reference samples, exactly CoCosNet's ``fm`` term
  (``util.weighted_l1_loss``; cross-exemplar pairs get no VGG loss to the ground truth);
- self-reference warp ``||T.Z - X'||_1`` on self-reference samples (CoCosNet's ``warp_self``,
  0 in the released configs) and the warp-mask loss (CoCosNet's ``warp_mask_losstype direct``:
  NLL of the warped exemplar label map against the query's labels, classes absent from the
  exemplar masked out);
- KL divergence of SPADE-VAE's posterior to N(0, I).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evalkit.methods.common.contextual import contextual_loss

__all__ = [
    "VGG_LAYERS", "VGG_WEIGHTS", "CX_LAYERS", "hinge_d_loss", "hinge_g_loss", "feature_matching_loss",
    "vgg_loss_per_sample", "perceptual_loss", "contextual_loss_layers", "cycle_loss", "consistency_loss",
    "pseudo_pair_loss", "self_ref_weights", "warp_self_loss", "warp_mask_loss", "kld_loss", "PSE_LAYERS",
]

VGG_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
PSE_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")  # CoCosNet's r12 ... r52
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


def vgg_loss_per_sample(fake: dict, real: dict, layers: tuple[str, ...] = VGG_LAYERS) -> torch.Tensor:
    """SPADE's VGG loss per batch element ``[B]``: ``sum_l w_l mean|phi_l(Y) - phi_l(X')|``."""
    total = 0.0
    for name, w in zip(layers, VGG_WEIGHTS):
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


def self_ref_weights(self_ref: torch.Tensor) -> torch.Tensor:
    """CoCosNet's per-sample weights ``s_b / (sum_b s_b + 1e-5)`` (``s_b = 1`` on self-reference samples)."""
    s = self_ref.float()
    return s / (s.sum() + 1e-5)


def pseudo_pair_loss(fake_vgg: dict, real_vgg: dict, self_ref: torch.Tensor) -> torch.Tensor:
    """``L_pse``: the VGG loss to the ground truth on self-reference samples only (CoCosNet's ``fm``),
    ``mean_b w_b sum_l w_l mean|phi_l(Y) - phi_l(X')|`` with :func:`self_ref_weights` (0 without one)."""
    per = vgg_loss_per_sample(fake_vgg, real_vgg, PSE_LAYERS)
    return (per * self_ref_weights(self_ref).to(per.dtype)).mean()


def pseudo_pair_l1(fake: torch.Tensor, real: torch.Tensor, self_ref: torch.Tensor) -> torch.Tensor:
    """The pixel L1 to the ground truth averaged over the self-reference samples only
    (``sum_b w_b mean|Y_b - X'_b|`` with :func:`self_ref_weights`; 0 without one): the pseudo-pair
    loss in pixel space, where the perceptual network is random (preset ``tiny``)."""
    per = (fake - real).abs().flatten(1).mean(1)
    return (per * self_ref_weights(self_ref).to(per.dtype)).sum()


def warp_self_loss(warped: torch.Tensor, real: torch.Tensor, self_ref: torch.Tensor) -> torch.Tensor:
    """``||T.Z - X'||_1`` on self-reference samples (CoCosNet's ``G_warp_self``), the ground truth
    area-resized to the correspondence grid, weighted as :func:`pseudo_pair_loss`."""
    target = F.interpolate(real, size=warped.shape[2:], mode="bilinear", align_corners=False, antialias=True)
    per = (warped - target).abs().flatten(1).mean(1)
    return (per * self_ref_weights(self_ref).to(per.dtype)).mean()


def warp_mask_loss(warped_labels: torch.Tensor, label: torch.Tensor, exemplar_label: torch.Tensor) -> torch.Tensor:
    """CoCosNet's warp-mask loss (``warp_mask_losstype direct``): the exemplar's one-hot label map
    warped onto the query grid, ``warped_labels [B, K, h, w]`` (rows of the correspondence sum to
    one, so these are class probabilities), against the query's labels ``label [B, H, W]``
    resized (nearest) to ``h x w``: ``sum w_p (-log(P_p[label_p] + 1e-10)) / (sum w_p + 1e-5)``
    with ``w_p = 0`` where the query's class does not occur in the exemplar (``exemplar_label``).
    CoCosNet also drops class 0 (ADE20K's "unknown"); here class 0 is a real class and is kept."""
    h, w = warped_labels.shape[-2:]
    gt = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    k = warped_labels.shape[1]
    present = torch.zeros(label.shape[0], k, dtype=torch.bool, device=label.device)
    present.scatter_(1, exemplar_label.flatten(1).long().clamp(0, k - 1), True)
    weight = torch.gather(present, 1, gt.flatten(1)).reshape_as(gt).float()
    nll = -torch.log(torch.gather(warped_labels, 1, gt[:, None]).squeeze(1) + 1e-10)
    return (nll * weight).sum() / (weight.sum() + 1e-5)


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, sigma^2) || N(0, I))`` summed over dimensions, as SPADE's KLDLoss: ``-0.5 sum(1 + logvar - mu^2 - e^logvar)``."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
