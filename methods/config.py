"""Typed configurations of every translator, with the ``tiny`` and ``paper`` presets.

One frozen dataclass holds everything a variant needs: network widths and depths, the
alignment settings, the loss weights and the optimiser. ``paper`` follows the papers'
defaults (output 256², RABIT correspondence 128² with 2x2 blocks and k=3, UNITE
transport 64² with 128-d features and eta=1e-4, CoCosNet 64² with temperature 0.01;
TTUR Adam G 1e-4 / D 4e-4, betas (0, 0.999)). The papers do not state their loss
weights; the values here are the ones in the official training scripts (CoCosNet,
fnzhan/RABIT, fnzhan/UNITE): hinge GAN x10, discriminator feature matching x10, VGG
x10 (x0.1 ``fm_ratio`` on non-self-reference pairs), perceptual relu5_2 x0.01,
contextual (relu5_2 x8, relu4_2 x4, relu3_2 x2) x10.

``tiny`` is the same architecture, narrow and at 64² (correspondence 32², transport and
cosine 16²), so that every variant trains on two CPU cores in minutes. Its perceptual
network is a VGG19 of width 1/8, which can never load pretrained weights (reported as
``perceptual_pretrained=False`` in the training log).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from evalkit.errors import EvalkitError

__all__ = ["LossWeights", "OptimConfig", "TranslatorConfig", "PRESETS", "make_config"]


@dataclass(frozen=True)
class LossWeights:
    """Weights lambda_i of the objective (RABIT eq. 3, UNITE eq. 12) and of the baselines' terms."""

    gan: float = 10.0  # hinge adversarial, generator side
    gan_feat: float = 10.0  # discriminator feature matching (pix2pixHD)
    vgg: float = 10.0  # multi-layer VGG L1 to the ground truth (SPADE's VGG loss)
    fm_ratio: float = 0.1  # multiplies ``vgg`` on pairs whose exemplar is not the ground truth
    perceptual: float = 0.01  # L_perc, relu5_2 L1 to the ground truth
    contextual: float = 10.0  # L_cxt to the exemplar, layers weighted (relu5_2 8, relu4_2 4, relu3_2 2)
    cycle: float = 1.0  # L_cyc = ||T^T T Z - Z||_1
    consistency: float = 10.0  # L_cst = ||F_X(X) - F_Z(X')||_1
    pseudo: float = 10.0  # L_pse: self-reference pairs, VGG L1 of output and warped exemplar to X'
    kld: float = 0.05  # SPADE-VAE KL term


@dataclass(frozen=True)
class OptimConfig:
    """TTUR Adam (Heusel et al.): generator side 1e-4, discriminator 4e-4."""

    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.999


@dataclass(frozen=True)
class TranslatorConfig:
    """Everything one translator variant is built from.

    Sizes: ``size`` output side; ``num_up`` SPADE up-sampling stages (start grid
    ``size / 2**num_up``); ``corr_size`` the grid the correspondence / transport is
    built on. ``alignment``: ``none`` | ``cosine`` | ``ras`` | ``ot`` | ``uot``;
    ``position``: ``none`` | ``spe`` (RABIT's semantic position encoding) | ``coord``
    (global CoordConv); ``injection``: ``spade`` (label map) | ``concat`` (warped exemplar
    + labels, CoCosNet) | ``confi`` (RABIT) | ``seace`` (UNITE) | ``vae`` (SPADE-VAE style code).
    """

    family: str = "spade"
    size: int = 256
    ngf: int = 64
    num_up: int = 5
    max_mult: int = 16
    spade_hidden: int = 128
    norm_g: str = "batch"  # param-free norm of the generator: batch | instance | pono
    spectral_g: bool = True
    # discriminator
    ndf: int = 64
    num_d: int = 2
    n_layers_d: int = 4
    # correspondence / feature extractors F_X, F_Z
    corr_size: int = 64
    feat_nc: int = 256
    enc_ngf: int = 64
    enc_res_blocks: int = 2
    alignment: str = "none"
    position: str = "none"
    injection: str = "spade"
    temperature: float = 0.01  # cosine softmax temperature (CoCosNet 0.01; RABIT-code 1/100)
    block: int = 2  # RAS block side
    topk: int = 3  # RAS k
    retrieval: str = "ot"  # RAS: ot (differentiable top-k) | softmax (code)
    topk_eps: float = 0.01
    topk_iters: int = 100
    ot_eps: float = 1e-4  # UNITE eta
    ot_tau: float = 1.0
    ot_iters: int = 100
    multi_stage: bool = False
    seace_attn_size: int = 64  # SEACE semantic-activation matrix built at most at this side
    confi_nc: int = 64
    z_dim: int = 256
    self_ref_mode: str = "dataset"  # dataset | always (manipulation: exemplar = augmented ground truth)
    # losses
    vgg_width: int = 64  # 64 = real VGG19 (pretrained weights load); smaller = narrow random VGG
    cx_bandwidth: float = 0.5
    losses: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def replace(self, **overrides) -> "TranslatorConfig":
        """A copy with ``overrides``; ``losses``/``optim`` accept dicts of their own fields."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise EvalkitError(f"unknown translator config field(s) {unknown}; known: {sorted(names)}")
        for key, typ in (("losses", LossWeights), ("optim", OptimConfig)):
            if isinstance(overrides.get(key), dict):
                overrides[key] = dataclasses.replace(getattr(self, key), **overrides[key])
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PAPER = TranslatorConfig()

# Narrow, 64x64: same graph, every width / grid divided down. Correspondence at 1/2 of
# the output for RABIT, 1/4 for UNITE and CoCosNet (set by the variant, as in paper).
TINY_OVERRIDES = dict(
    size=64, ngf=8, num_up=4, spade_hidden=16, norm_g="instance", spectral_g=True,
    ndf=16, num_d=2, n_layers_d=3, feat_nc=32, enc_ngf=8, enc_res_blocks=1,
    confi_nc=16, z_dim=32, vgg_width=8, seace_attn_size=16, topk_iters=20, ot_iters=20,
)

PRESETS = ("tiny", "paper")


def make_config(preset: str, variant_fields: dict, overrides: dict | None = None) -> TranslatorConfig:
    """The config of a variant at ``preset``, then the user's ``overrides``.

    ``variant_fields`` are what the variant fixes (alignment, injection, ...); its
    ``corr_ratio`` (correspondence side / output side; paper: RABIT 1/2, UNITE and
    CoCosNet 1/4) is resolved against the final output size unless ``corr_size`` is
    overridden explicitly.
    """
    if preset not in PRESETS:
        raise EvalkitError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    variant_fields = dict(variant_fields)
    overrides = dict(overrides or {})
    ratio = variant_fields.pop("corr_ratio", 0.25)
    cfg = PAPER if preset == "paper" else PAPER.replace(**TINY_OVERRIDES)
    cfg = cfg.replace(**variant_fields)
    explicit_corr = overrides.pop("corr_size", None)
    cfg = cfg.replace(**overrides)
    corr = explicit_corr if explicit_corr is not None else max(4, int(round(cfg.size * ratio)))
    cfg = cfg.replace(corr_size=corr)
    if cfg.size % (2 ** cfg.num_up) or cfg.size % cfg.corr_size:
        raise EvalkitError(
            f"config size={cfg.size} must be divisible by 2**num_up={2 ** cfg.num_up} and by corr_size={cfg.corr_size}"
        )
    return cfg
