"""Typed translator configs: shared parts plus one config class per family, and the presets.

Shared by every trainable translator (:class:`TranslatorConfig`): the output ``size``,
the SPADE ``generator`` (:class:`GeneratorConfig`), the multiscale ``discriminator``
(:class:`DiscriminatorConfig`), the loss weights ``losses`` (:class:`LossWeights`), the
optimiser ``optim`` (:class:`OptimConfig`) and the perceptual network (``vgg_width``,
``cx_bandwidth``). Each family adds its own part with ``Literal`` modes:
:class:`SPADEConfig` (style code), :class:`CoCosNetConfig`, :class:`RABITConfig`
(alignment, position, injection, retrieval, ...), :class:`UNITEConfig` (alignment,
injection, multi-stage, ...); the three exemplar-based families share the F_X / F_Z
extractors (``correspondence``, :class:`CorrespondenceConfig`).

Overrides keep one flat spelling: a field of ``generator``, ``discriminator`` or
``correspondence`` is named on its own (``ngf=16``, ``corr_size=32``); ``losses`` and
``optim`` take tables (``losses={"gan": 1.0}``); any part also takes a table
(``generator={"ngf": 16}``). A wrong value is one :class:`EvalkitError` line naming the
field, the value and what is allowed.

``paper`` follows the papers' defaults (output 256², RABIT correspondence 128² with 2x2
blocks and k=3, UNITE transport 64² with 128-d features and eta=1e-4, CoCosNet 64² with
temperature 0.01; TTUR Adam G 1e-4 / D 4e-4, betas (0, 0.999)). The papers do not state
their loss weights; the values here are the ones in the official training scripts
(CoCosNet, fnzhan/RABIT, fnzhan/UNITE): hinge GAN x10, discriminator feature matching
x10, L_pse = VGG x10 x0.1 ``fm_ratio`` on self-reference pairs only, perceptual relu5_2
x0.01, contextual (relu5_2 x8, relu4_2 x4, relu3_2 x2) x10 (CoCosNet) or x1 (RABIT/UNITE
``--ctx_w 0.1``); SPADE: GAN x1 (NVlabs).

``tiny`` is the same architecture, narrow and at 64² (correspondence 32², transport and
cosine 16²), so that every variant trains on two CPU cores in minutes. Its perceptual
network is a VGG19 of width 1/8, which can never load pretrained weights (reported as
``perceptual_pretrained=False`` in the training log); on it the contextual loss has no
meaning and is off, and G and D train at 4e-4 (docs/methods.md, "Presets").
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal

from evalkit.errors import EvalkitError

__all__ = [
    "LossWeights", "OptimConfig", "GeneratorConfig", "DiscriminatorConfig", "CorrespondenceConfig",
    "TranslatorConfig", "SPADEConfig", "CoCosNetConfig", "RABITConfig", "UNITEConfig", "FAMILIES", "PRESETS",
    "TINY", "TINY_FAMILY", "make_config",
]

_FLAT = {"flat": True}  # metadata of a part whose fields are also overridden by their own names


@dataclass(frozen=True)
class LossWeights:
    """Weights lambda_i of the objective (RABIT eq. 3, UNITE eq. 12) and of the baselines' terms.

    The papers give no values; the defaults are the released training scripts' (CoCosNet
    ``train_options.py`` / README, fnzhan/RABIT and fnzhan/UNITE ``train_ade.sh``; SPADE's
    GAN weight is NVlabs' 1, set by :class:`SPADEConfig`). A weight of 0 skips the term.
    """

    gan: float = 10.0  # hinge adversarial, generator side (weight_gan)
    gan_feat: float = 10.0  # discriminator feature matching (pix2pixHD lambda_feat)
    vgg: float = 10.0  # lambda_vgg: SPADE's VGG loss to the ground truth (label-only methods, every pair)
    fm_ratio: float = 0.1  # L_pse = vgg * fm_ratio * VGG loss on self-reference pairs only (CoCosNet "fm")
    perceptual: float = 0.01  # L_perc, relu5_2 L1 to the ground truth, every pair (weight_perceptual)
    contextual: float = 10.0  # L_cxt to the exemplar (lambda_vgg * ctx_w), layers weighted relu5_2 8, relu4_2 4, relu3_2 2
    cycle: float = 1.0  # L_cyc = ||T^T T Z - Z||_1
    consistency: float = 10.0  # L_cst = ||F_X(X) - F_Z(X')||_1 (novgg_featpair)
    warp_self: float = 0.0  # ||T.Z - X'||_1 on self-reference pairs (CoCosNet warp_self_w; 0 as released)
    mask: float = 0.0  # warp-mask loss (CoCosNet weight_mask; 100 in the released configs' flags)
    kld: float = 0.05  # SPADE-VAE KL term
    l1: float = 0.0  # pixel L1 to the ground truth (evalkit's, `tiny` only): label-only every pair, exemplar-based self-reference pairs


@dataclass(frozen=True)
class OptimConfig:
    """TTUR Adam (Heusel et al.): generator side 1e-4, discriminator 4e-4."""

    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.999


@dataclass(frozen=True)
class GeneratorConfig:
    """SPADE generator (Park et al. 2019, Sec. 3): width ``ngf``, ``num_up`` up-sampling stages
    (start grid ``size / 2**num_up``), widths capped at ``max_mult * ngf``, SPADE hidden width,
    the parameter-free norm it de-normalises, spectral norm on its convolutions."""

    ngf: int = 64
    num_up: int = 5
    max_mult: int = 16
    spade_hidden: int = 128
    norm_g: Literal["batch", "instance", "pono"] = "batch"
    spectral_g: bool = True


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Multiscale PatchGAN (pix2pixHD): ``num_d`` scales of ``n_layers_d`` layers, width ``ndf``."""

    ndf: int = 64
    num_d: int = 2
    n_layers_d: int = 4


@dataclass(frozen=True)
class CorrespondenceConfig:
    """F_X / F_Z (CoCosNet Sec. 3.1, RABIT Sec. 3.1, UNITE Sec. 3.1): width ``enc_ngf``,
    ``feat_nc``-d features on the ``corr_size`` grid, ``enc_res_blocks`` residual blocks."""

    corr_size: int = 64
    feat_nc: int = 256
    enc_ngf: int = 64
    enc_res_blocks: int = 2


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_part(cls, f) -> bool:
    return dataclasses.is_dataclass(_hints(cls)[f.name])


def _check_value(name: str, value, tp):
    """``value`` of field ``name`` checked against ``tp`` (ints accepted for floats); returns it."""
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise EvalkitError(f"translator config field {name}={value!r} is not allowed; "
                               f"choose one of {', '.join(repr(a) for a in allowed)}")
        return value
    expect = {bool: "true or false", int: "an integer", float: "a number"}.get(tp)
    if expect is None:
        return value
    ok = isinstance(value, bool) if tp is bool else (
        not isinstance(value, bool) and isinstance(value, int if tp is int else (int, float)))
    if not ok:
        raise EvalkitError(f"translator config field {name}={value!r}: expected {expect}")
    return float(value) if tp is float else value


def _validate(obj, prefix: str = "") -> None:
    """Type and ``Literal`` checks of every field of ``obj`` and of its parts (first problem raises)."""
    cls = type(obj)
    for f in fields(obj):
        value, tp = getattr(obj, f.name), _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, tp):
                raise EvalkitError(f"translator config field {prefix}{f.name}: expected a table of "
                                   f"{', '.join(g.name for g in fields(tp))}, got {value!r}")
            _validate(value, prefix if f.metadata.get("flat") else f"{prefix}{f.name}.")
            continue
        checked = _check_value(f"{prefix}{f.name}", value, tp)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


@dataclass(frozen=True)
class TranslatorConfig:
    """The parts every trainable translator is built from (see the module docstring)."""

    family: ClassVar[str] = ""
    size: int = 256
    generator: GeneratorConfig = field(default_factory=GeneratorConfig, metadata=_FLAT)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig, metadata=_FLAT)
    losses: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    vgg_width: int = 64  # 64 = real VGG19 (pretrained weights load); smaller = narrow random VGG
    cx_bandwidth: float = 0.1  # contextual loss bandwidth h (the released ContextualLoss_forward's 0.1)

    def __post_init__(self):
        _validate(self)

    @classmethod
    def override_names(cls) -> dict[str, str | None]:
        """Every name an override may use → the part that holds it (None: a top-level field or a part)."""
        names: dict[str, str | None] = {}
        for f in fields(cls):
            names[f.name] = None
            if _is_part(cls, f) and f.metadata.get("flat"):
                names.update({g.name: f.name for g in fields(_hints(cls)[f.name])})
        return names

    def replace(self, **overrides) -> "TranslatorConfig":
        """A copy with ``overrides`` in the flat spelling of the module docstring."""
        names = self.override_names()
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise EvalkitError(_unknown_message(type(self), unknown))
        top, nested = {}, {}
        for key, value in overrides.items():
            part = names[key]
            if part is not None:
                nested.setdefault(part, {})[key] = value
            elif isinstance(value, dict) and dataclasses.is_dataclass(_hints(type(self))[key]):
                nested.setdefault(key, {}).update(value)
            else:
                top[key] = value
        for part, values in nested.items():
            current = top.get(part, getattr(self, part))
            known = [g.name for g in fields(current)]
            bad = sorted(set(values) - set(known))
            if bad:
                raise EvalkitError(f"unknown translator config field(s) {part}.{bad}; known: {known}")
            top[part] = dataclasses.replace(current, **values)
        return dataclasses.replace(self, **top)

    def as_dict(self) -> dict:
        return {"family": self.family, **dataclasses.asdict(self)}


def _unknown_message(cls, unknown: list[str]) -> str:
    names = sorted(cls.override_names())
    notes = []
    for key in unknown:
        owners = [fam for fam, other in FAMILIES.items() if key in other.override_names()]
        close = difflib.get_close_matches(key, names, n=1)
        notes.append(f"{key!r}" + (f" (a field of {', '.join(owners)} variants)" if owners else
                                   f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"unknown translator config field(s) for {cls.family} variants: {', '.join(notes)}; "
            f"known: {', '.join(names)}")


@dataclass(frozen=True)
class SPADEConfig(TranslatorConfig):
    """SPADE and SPADE-VAE (Park et al. 2019): ``z_dim`` is the VAE's style code (Sec. 3.3)."""

    family: ClassVar[str] = "spade"
    losses: LossWeights = field(default_factory=lambda: LossWeights(gan=1.0))  # NVlabs/SPADE: GAN 1, feat 10, VGG 10
    z_dim: int = 256
    style_code: Literal["vae", "deterministic"] = "vae"  # vae: z ~ N(mu, sigma^2) + KL (NVlabs); deterministic: z = mu
    encoder_norm: Literal["instance", "none"] = "instance"  # the style encoder's norm (NVlabs --norm_E spectralinstance)


@dataclass(frozen=True)
class CoCosNetConfig(TranslatorConfig):
    """CoCosNet (Zhang et al. 2020): dense ``softmax(cos / temperature)`` correspondence (Sec. 3.1)."""

    family: ClassVar[str] = "cocosnet"
    correspondence: CorrespondenceConfig = field(default_factory=CorrespondenceConfig, metadata=_FLAT)
    losses: LossWeights = field(default_factory=lambda: LossWeights(mask=100.0))  # README: --weight_mask 100
    temperature: float = 0.01
    centre: bool = True  # --PONO_C: features centred over their dimension before the cosine
    match_kernel: int = 3  # --match_kernel 3 (default): 3x3 neighbourhoods are matched
    label_mix: bool = True  # --maskmix: resized labels mixed into both sides' features


@dataclass(frozen=True)
class RABITConfig(TranslatorConfig):
    """RABIT (Zhan et al. 2022): RAS (Sec. 3.1: ``block`` side, top-``topk`` by OT top-k or the code's
    softmax retrieval) or dense cosine, position encoding (SPE / CoordConv / none), CONFI or
    CoCosNet's concat injection (Sec. 3.2); ``self_ref_mode="always"`` trains for manipulation."""

    family: ClassVar[str] = "rabit"
    correspondence: CorrespondenceConfig = field(default_factory=CorrespondenceConfig, metadata=_FLAT)
    losses: LossWeights = field(default_factory=lambda: LossWeights(contextual=1.0))  # train_ade.sh --ctx_w 0.1
    alignment: Literal["ras", "cosine"] = "ras"
    position: Literal["none", "spe", "coord"] = "spe"
    injection: Literal["confi", "concat"] = "confi"
    temperature: float = 0.01  # cosine / retrieval softmax temperature (RABIT-code 1/100)
    block: int = 2
    topk: int = 3
    retrieval: Literal["ot", "softmax"] = "ot"
    topk_eps: float = 0.1  # on the normalised cost (Xie et al.'s TopK_custom default)
    topk_iters: int = 100
    confi_nc: int = 64
    self_ref_mode: Literal["dataset", "always"] = "dataset"  # always: exemplar = augmented ground truth


@dataclass(frozen=True)
class UNITEConfig(TranslatorConfig):
    """UNITE (Zhan et al. 2021): (un)balanced OT (Sec. 3.1, eq. 2-5: ``ot_eps`` = eta, ``ot_tau``)
    or cosine or no alignment, SEACE / concat / label-only SPADE injection (Sec. 3.2), multi-stage
    transport; SEACE's activation matrix is built at most at ``seace_attn_size``."""

    family: ClassVar[str] = "unite"
    correspondence: CorrespondenceConfig = field(default_factory=lambda: CorrespondenceConfig(feat_nc=128), metadata=_FLAT)
    losses: LossWeights = field(default_factory=lambda: LossWeights(contextual=1.0))  # train_ade.sh --ctx_w 0.1
    alignment: Literal["none", "cosine", "ot", "uot"] = "uot"
    injection: Literal["spade", "concat", "seace"] = "seace"
    temperature: float = 0.01  # cosine ablation
    ot_eps: float = 1e-4
    ot_tau: float = 1.0
    ot_masses: Literal["eq3", "softmax", "uniform"] = "eq3"  # see transport.unite_masses
    ot_iters: int = 2000  # at most, per eps stage
    ot_tol: float = 1e-2  # each eps stage runs until the marginal residual is below this (UnbalancedTransport)
    ot_eps_steps: int = 10
    z_dim: int = 256  # unite/spade: the exemplar's style code (SPADE-VAE encoder)
    multi_stage: bool = True
    seace_attn_size: int = 64

    def __post_init__(self):
        super().__post_init__()
        if (self.alignment == "none") != (self.injection == "spade"):
            raise EvalkitError(f"translator config alignment={self.alignment!r} with injection={self.injection!r}: "
                               "UNITE injects the labels alone (injection 'spade') exactly when there is no "
                               "alignment (alignment 'none')")
        if self.alignment == "ot" and self.ot_masses == "eq3":
            raise EvalkitError("translator config alignment='ot' with ot_masses='eq3': balanced OT needs masses of "
                               "equal totals; use ot_masses='softmax' or 'uniform', or alignment='uot'")


FAMILIES: dict[str, type[TranslatorConfig]] = {
    c.family: c for c in (SPADEConfig, CoCosNetConfig, RABITConfig, UNITEConfig)}

PRESETS = ("tiny", "paper")

# Narrow, 64x64: same graph, every width / grid divided down (flat names; each family takes
# the ones it has). Correspondence at 1/2 of the output for RABIT, 1/4 for UNITE and
# CoCosNet (set by the variant's ``corr_ratio``, as in the papers).
TINY = dict(
    size=64, ngf=8, num_up=4, spade_hidden=16, norm_g="instance", spectral_g=True,
    ndf=16, num_d=2, n_layers_d=3, feat_nc=32, enc_ngf=8, enc_res_blocks=1,
    confi_nc=16, z_dim=32, vgg_width=8, seace_attn_size=16, topk_iters=20,
    # evalkit's own (docs/methods.md "Presets"): the narrow VGG19 is always random, and matching
    # the exemplar's statistics in random features has no meaning; a few hundred steps need
    # faster rates than the papers' 100-200 epochs
    losses={"contextual": 0.0}, optim={"lr_g": 4e-4, "lr_d": 4e-4},
)

# evalkit's own, per family, on top of TINY (docs/methods.md "Presets"). SPADE / SPADE-VAE have
# no correspondence: all they learn comes through the loss to the ground truth and the style
# code, and at a few hundred steps (measured, tests/benchmarks/bench_demo_training.py) three
# things stop the code from carrying the exemplar's colours: the random VGG loss (replaced by a
# pixel L1 to the ground truth), the VAE's unit-variance sampling noise at initialisation
# (which the generator learns to ignore: the code is mu, no KL) and the encoder's instance norm
# (which removes the mean colour the code exists to carry). The exemplar-based families' only
# loss to the ground truth is the pseudo-pair VGG loss on self-reference pairs, on that random
# VGG: a pixel L1 on the same self-reference pairs stands beside it (UNITE at 250-400 steps
# landed on either side of the exemplar copy without it, 12.3 PSNR with it at 300).
_SELF_REF_L1 = dict(losses={"l1": 20.0})
TINY_FAMILY = {
    "spade": dict(losses={"vgg": 0.0, "l1": 20.0, "kld": 0.0}, style_code="deterministic", encoder_norm="none"),
    "cocosnet": _SELF_REF_L1, "rabit": _SELF_REF_L1, "unite": _SELF_REF_L1,
}


def make_config(preset: str, variant_fields: dict, overrides: dict | None = None) -> TranslatorConfig:
    """The config of a variant at ``preset``, then the user's ``overrides``.

    ``variant_fields`` are what the variant fixes: its ``family`` (a key of
    :data:`FAMILIES`), its modes (alignment, injection, ...) and, for the exemplar-based
    families, ``corr_ratio`` (correspondence side / output side; paper: RABIT 1/2, UNITE
    and CoCosNet 1/4), resolved against the final output size unless ``corr_size`` is
    overridden explicitly.
    """
    if preset not in PRESETS:
        raise EvalkitError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    variant_fields = dict(variant_fields)
    overrides = dict(overrides or {})
    family = variant_fields.pop("family", None)
    if family not in FAMILIES:
        raise EvalkitError(f"variant fields name no known family ({family!r}); choose one of {sorted(FAMILIES)}")
    cls = FAMILIES[family]
    ratio = variant_fields.pop("corr_ratio", 0.25)
    names = cls.override_names()
    cfg = cls()
    if preset == "tiny":
        cfg = cfg.replace(**{k: v for k, v in TINY.items() if k in names})
        cfg = cfg.replace(**TINY_FAMILY.get(family, {}))
    cfg = cfg.replace(**variant_fields)
    has_corr = "correspondence" in names
    part = overrides.get("correspondence")
    explicit_corr = "corr_size" in overrides or part is not None and (not isinstance(part, dict) or "corr_size" in part)
    cfg = cfg.replace(**overrides)
    if has_corr and not explicit_corr:
        cfg = cfg.replace(corr_size=max(4, int(round(cfg.size * ratio))))
    if cfg.generator.num_up < 0:
        raise EvalkitError(f"config num_up={cfg.generator.num_up} must be >= 0")
    if has_corr and cfg.correspondence.corr_size < 1:
        raise EvalkitError(f"config corr_size={cfg.correspondence.corr_size} must be >= 1")
    step = 2 ** cfg.generator.num_up
    if cfg.size % step or (has_corr and cfg.size % cfg.correspondence.corr_size):
        corr = f" and by corr_size={cfg.correspondence.corr_size}" if has_corr else ""
        raise EvalkitError(f"config size={cfg.size} must be divisible by 2**num_up={step}{corr}")
    return cfg
