"""Registry of named translator variants: ``build_translator(name, cond_channels=..., preset=...)``.

Each variant is a builder ``(config, cond_channels, variant, **kwargs) -> Translator`` plus
the config fields it fixes. A trainable builder's class names its typed config
(``config_class``, a family of :mod:`evalkit.methods.config`); non-trainable variants
(saved ``outputs``, the ``reference/...`` outputs) have none and get ``config=None``.
Methods (``methods.rabit.variants``, ``methods.unite.variants``) and baselines
(``baselines``) register themselves here; ``list_variants()`` names them all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from evalkit.errors import EvalkitError
from evalkit.methods.config import FAMILIES, TranslatorConfig, make_config

__all__ = ["VariantSpec", "register_variant", "build_translator", "list_variants", "variant_spec", "is_reference",
           "REFERENCE_PREFIX"]

REFERENCE_PREFIX = "reference/"


@dataclass(frozen=True)
class VariantSpec:
    name: str
    builder: Callable  # (config, cond_channels, variant, **kwargs) -> Translator
    fields: dict  # config fields the variant fixes (family, modes, corr_ratio)
    description: str
    trainable: bool = True
    config: type[TranslatorConfig] | None = None  # the family's config class; None: built without a config


_REGISTRY: dict[str, VariantSpec] = {}
_MODULES = ("evalkit.baselines.spade", "evalkit.baselines.cocosnet", "evalkit.baselines.outputs",
            "evalkit.baselines.reference", "evalkit.methods.unite.variants", "evalkit.methods.rabit.variants")


def register_variant(name: str, builder: Callable, *, description: str, trainable: bool = True, **fields) -> None:
    """Register ``builder`` as ``name``; its ``config_class`` (if any) sets the family of ``fields``."""
    if name in _REGISTRY:
        raise ValueError(f"translator variant {name!r} registered twice")
    config = getattr(builder, "config_class", None)
    if config is not None:
        fields = {"family": config.family, **fields}
    _REGISTRY[name] = VariantSpec(name, builder, fields, description, trainable, config)


def _load() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_variants(trainable: bool | None = None) -> list[str]:
    """Registered variant names, sorted; ``trainable=True``/``False`` keeps only those that are / are not."""
    _load()
    return sorted(n for n, s in _REGISTRY.items() if trainable is None or s.trainable == trainable)


def variant_spec(name: str) -> VariantSpec:
    _load()
    if name not in _REGISTRY:
        raise EvalkitError(f"unknown variant {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def is_reference(name: str) -> bool:
    """A reference output (``reference/ground-truth``, ...): shown in reports, never ranked or trained."""
    return name.startswith(REFERENCE_PREFIX)


def _config_names() -> set[str]:
    """Every override name of every family (so that a field of another family is reported, not passed on)."""
    return {name for cls in FAMILIES.values() for name in cls.override_names()}


def build_translator(variant: str, *, cond_channels: int, preset: str = "tiny", seed: int = 0, **overrides):
    """Build ``variant`` for inputs with ``cond_channels`` channels at ``preset``.

    ``overrides`` are fields of the variant's typed config (``size=32``, ``corr_size=16``,
    ``losses={"gan": 1.0}``; see :mod:`evalkit.methods.config`); other keyword arguments go
    to the builder (the ``outputs`` wrapper's ``folder``). Parameters are initialised from
    ``seed``. Under ``with torch.device("meta"):`` nothing is allocated (config checks).
    """
    spec = variant_spec(variant)
    if cond_channels < 1:
        raise EvalkitError(f"cond_channels must be >= 1, got {cond_channels}")
    config_names = _config_names()
    cfg_over = {k: v for k, v in overrides.items() if k in config_names}
    extra = {k: v for k, v in overrides.items() if k not in config_names}
    if spec.config is None:
        if cfg_over:
            raise EvalkitError(f"variant {variant!r} has no translator config; drop {', '.join(sorted(cfg_over))}")
        config = None
    else:
        config = make_config(preset, spec.fields, cfg_over)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            translator = spec.builder(config, cond_channels, variant, **extra)
        except (TypeError, ValueError) as err:
            given = ", ".join(f"{k}={v!r}" for k, v in {**cfg_over, **extra}.items()) or "no overrides"
            raise EvalkitError(f"variant {variant!r} cannot be built at preset {preset!r} with {given}: {err}") from err
    translator.build_args = {"variant": variant, "cond_channels": cond_channels, "preset": preset,
                             "seed": seed, "overrides": cfg_over}
    return translator
