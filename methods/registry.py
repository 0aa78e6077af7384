"""Registry of named translator variants: ``build_translator(name, cond_channels=..., preset=...)``.

Each variant is a builder ``(config, cond_channels) -> Translator`` plus the config
fields it fixes. Methods (``methods.rabit.variants``, ``methods.unite.variants``) and
baselines (``baselines``) register themselves here; ``list_variants()`` names them all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from evalkit.errors import EvalkitError
from evalkit.methods.config import TranslatorConfig, make_config

__all__ = ["VariantSpec", "register_variant", "build_translator", "list_variants", "variant_spec", "variant_dir"]


@dataclass(frozen=True)
class VariantSpec:
    name: str
    builder: Callable  # (config, cond_channels, variant, **kwargs) -> Translator
    fields: dict  # config fields the variant fixes (may hold corr_ratio)
    description: str
    trainable: bool = True


_REGISTRY: dict[str, VariantSpec] = {}
_MODULES = ("evalkit.baselines.spade", "evalkit.baselines.cocosnet", "evalkit.baselines.outputs", "evalkit.methods.unite.variants", "evalkit.methods.rabit.variants")


def register_variant(name: str, builder: Callable, *, description: str, trainable: bool = True, **fields) -> None:
    if name in _REGISTRY:
        raise ValueError(f"translator variant {name!r} registered twice")
    _REGISTRY[name] = VariantSpec(name, builder, fields, description, trainable)


def _load() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_variants() -> list[str]:
    """All registered variant names, sorted."""
    _load()
    return sorted(_REGISTRY)


def variant_spec(name: str) -> VariantSpec:
    _load()
    if name not in _REGISTRY:
        raise EvalkitError(f"unknown variant {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def variant_dir(name: str) -> str:
    """Folder name of a variant in the outputs layout: ``rabit/ras`` → ``rabit__ras``."""
    return name.replace("/", "__")


def build_translator(variant: str, *, cond_channels: int, preset: str = "tiny", seed: int = 0, **overrides):
    """Build ``variant`` for inputs with ``cond_channels`` channels at ``preset``.

    ``overrides`` are :class:`evalkit.methods.config.TranslatorConfig` fields (``size=32``,
    ``losses={"gan": 1.0}``); non-config keyword arguments go to the builder (the
    ``outputs`` wrapper's ``folder``). Parameters are initialised from ``seed``.
    """
    spec = variant_spec(variant)
    if cond_channels < 1:
        raise EvalkitError(f"cond_channels must be >= 1, got {cond_channels}")
    config_keys = set(TranslatorConfig.__dataclass_fields__) | {"corr_size"}
    cfg_over = {k: v for k, v in overrides.items() if k in config_keys}
    extra = {k: v for k, v in overrides.items() if k not in config_keys}
    config = make_config(preset, spec.fields, cfg_over)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        translator = spec.builder(config, cond_channels, variant, **extra)
    translator.build_args = {"variant": variant, "cond_channels": cond_channels, "preset": preset,
                             "seed": seed, "overrides": cfg_over}
    return translator
