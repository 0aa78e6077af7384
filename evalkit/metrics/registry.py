"""The metric registry: what each metric family is, declared once.

A *family* is what ``--metrics`` names (``fid``, ``kid``, ``swd``, ``lpips``,
``lpips-diversity``, ``vgg``, ``psnr``, ``ssim``); it produces one or more *rows* of the
results table (``FID``; ``KID`` and ``KID-std``; ``SWD`` and ``SWD@<res>``; ...). A
:class:`MetricSpec` declares a family's rows (each a :class:`RowSpec`: direction, display
decimals, whether it is the uncertainty of another row), what it needs from the inputs, its
backbone, how it computes its rows, its per-item values (for the paired bootstrap) and
whether its backbone pass shards over torchrun ranks. ``evaluate``, a run's backbones, the
sharded evaluation, the reports' directions and decimals, and the claims all read it.

A new family is one module that calls :func:`register_metric` (and, with a new network,
:func:`register_backbone`); nothing else needs to change::

    register_metric(MetricSpec("toy", rows=(RowSpec("Toy", higher_is_better=True, decimals=2),),
                               compute=my_compute, needs=("pairs",)))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from evalkit.errors import EvalkitError

# What a family may need from the inputs, and the reason given when it is not there.
NEEDS = {
    "sets": "needs at least 2 images per set ({n} generated, {m} real); add images",
    "pairs": "needs generated images paired with real ones (same names / same count and size)",
    "exemplars": "needs exemplars (--exemplars)",
    "groups": "needs groups of outputs per conditional input (--pairs with a query column)",
    "equal-sets": "needs as many real as generated images of the same size ({n} generated, {m} real)",
}
_BUILTIN = ("evalkit.metrics.fid", "evalkit.metrics.kid", "evalkit.metrics.prdc", "evalkit.metrics.swd",
            "evalkit.metrics.lpips", "evalkit.metrics.vgg", "evalkit.metrics.pixel")


@dataclass(frozen=True)
class RowSpec:
    """One row name of the results table and its facts.

    ``levels``: the family also writes ``<name>@<res>`` rows (``SWD@16``) with these facts.
    ``uncertainty``: the spread of another row (``KID-std``): stored, never ranked or gated.
    """

    name: str
    higher_is_better: bool
    decimals: int
    uncertainty: bool = False
    levels: bool = False


@dataclass(frozen=True)
class PerItem:
    """Per-item values of one row for the paired bootstrap: ``values[i]`` belongs to item i.

    For a set statistic (FID), ``values`` are per-item features, ``reference`` the real
    set's features and ``statistic(values, reference)`` the row's value."""

    values: object
    reference: object = None
    statistic: Callable | None = None


@dataclass(frozen=True)
class MetricSpec:
    """A metric family.

    compute(ctx) -> list of row dicts (``ctx.row(...)``), with ``ctx`` a
        :class:`evalkit.metrics.evaluate.MetricContext`.
    needs: every one of these (keys of :data:`NEEDS`); needs_any: at least one of these.
    backbone: a :func:`register_backbone` name (built once, before any work).
    per_item(ctx, row_name) -> :class:`PerItem` for the paired bootstrap (claims).
    shards: its backbone pass runs per shard under torchrun (per-item values through the
        feature cache); set statistics are always computed over the whole set.
    min_images: fewest images per set it is computed on (k-NN radii: k + 1); skipped below.
    from_stats: it reads the real set only as Inception features, so reference statistics
        (``evaluate --real-stats``, :mod:`evalkit.metrics.stats`) can stand in for the images.
    """

    family: str
    rows: tuple[RowSpec, ...]
    compute: Callable
    needs: tuple[str, ...] = ()
    needs_any: tuple[str, ...] = ()
    backbone: str | None = None
    per_item: Callable | None = None
    shards: bool = False
    order: int = 1000  # position among the families (rows are computed and listed in this order)
    min_size: int = 0  # smallest image side its network or window accepts (AlexNet 31, VGG relu5_2 16, SSIM 7)
    min_images: int = 0
    from_stats: bool = False

    def unavailable(self, available: dict[str, bool], counts: tuple[int, int]) -> str | None:
        """Why the family cannot be computed on inputs offering ``available``, or None
        (``available["min_side"]``, when given, is the smallest image side of the inputs)."""
        n, m = counts
        for need in self.needs:
            if not available[need]:
                return NEEDS[need].format(n=n, m=m)
        if self.needs_any and not any(available[k] for k in self.needs_any):
            return " or ".join(NEEDS[k].format(n=n, m=m) for k in self.needs_any)
        if min(n, m) < self.min_images:
            return f"needs at least {self.min_images} images per set ({n} generated, {m} real); add images"
        side = available.get("min_side")
        if side is not None and side < self.min_size:
            return (f"needs images of at least {self.min_size}x{self.min_size} px, the smallest side here is {side} px; "
                    "evaluate at a larger resolution")
        return None


@dataclass(frozen=True)
class BackboneSpec:
    """A network some families share: ``build(options, device) -> nn.Module`` with
    ``protocol_key()`` and the Protocol attributes (``resize``, ``backbone``, ``weights_id``)."""

    name: str
    build: Callable


_METRICS: dict[str, MetricSpec] = {}
_BACKBONES: dict[str, BackboneSpec] = {}
_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            importlib.import_module(module)


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Add a family (``replace=True`` re-registers one of the same name, e.g. in tests)."""
    if spec.family in _METRICS and not replace:
        raise ValueError(f"metric family {spec.family!r} registered twice")
    for need in (*spec.needs, *spec.needs_any):
        if need not in NEEDS:
            raise ValueError(f"metric family {spec.family!r}: unknown need {need!r}; one of {sorted(NEEDS)}")
    taken = {r.name: f for f, s in _METRICS.items() if f != spec.family for r in s.rows}
    for r in spec.rows:
        if r.name in taken:
            raise ValueError(f"row {r.name!r} of {spec.family!r} is already a row of {taken[r.name]!r}")
    _METRICS[spec.family] = spec
    return spec


def unregister_metric(family: str) -> None:
    _METRICS.pop(family, None)


def register_backbone(name: str, build: Callable, *, replace: bool = False) -> BackboneSpec:
    if name in _BACKBONES and not replace:
        raise ValueError(f"backbone {name!r} registered twice")
    _BACKBONES[name] = BackboneSpec(name, build)
    return _BACKBONES[name]


def families() -> tuple[str, ...]:
    """Every registered family, by ``order`` then registration (the order rows are computed in)."""
    _load()
    ranked = sorted(enumerate(_METRICS.values()), key=lambda item: (item[1].order, item[0]))
    return tuple(s.family for _, s in ranked)


def specs() -> list[MetricSpec]:
    return [_METRICS[f] for f in families()]


def spec(family: str) -> MetricSpec:
    _load()
    key = family.lower()
    if key not in _METRICS:
        raise EvalkitError(f"unknown metric '{family}'; choose from {', '.join(_METRICS)}")
    return _METRICS[key]


def row_spec(metric: str) -> RowSpec | None:
    """The facts of a results-table row name (``SWD@32`` follows ``SWD``); None if unknown."""
    _load()
    base = metric.split("@", 1)[0]
    for s in _METRICS.values():
        for r in s.rows:
            if r.name == metric or (r.levels and r.name == base):
                return r
    return None


def family_of(metric: str) -> str | None:
    _load()
    base = metric.split("@", 1)[0]
    for s in _METRICS.values():
        if any(r.name == metric or (r.levels and r.name == base) for r in s.rows):
            return s.family
    return None


def claim_rows() -> tuple[str, ...]:
    """Rows with per-item values (what the paired bootstrap can resolve), in family order."""
    return tuple(r.name for s in specs() if s.per_item is not None for r in s.rows if not r.uncertainty)


def shard_families() -> tuple[str, ...]:
    return tuple(s.family for s in specs() if s.shards)


def backbone_names(chosen) -> list[str]:
    """Backbones the families ``chosen`` (default: all) need, each once, in family order."""
    _load()
    names = []
    for f in chosen if chosen is not None else families():
        b = spec(f).backbone
        if b is not None and b not in names:
            names.append(b)
    return names


def build_backbones(chosen, options, device: str, have: dict | None = None) -> dict:
    """``have`` plus every backbone ``chosen`` needs that it lacks, built from ``options``
    (missing pretrained weights fail here, before any work)."""
    _load()
    nets = dict(have or {})
    for name in backbone_names(chosen):
        if name not in nets:
            if name not in _BACKBONES:
                raise ValueError(f"backbone {name!r} is not registered")
            nets[name] = _BACKBONES[name].build(options, device)
    return nets


# -- input checks shared by every family ---------------------------------------------------
def min_side(*image_sets) -> int | None:
    """Smallest image side over ``[N, 3, H, W]`` tensors / arrays or lists of ``[3, H, W]``
    images (None entries skipped): what :attr:`MetricSpec.min_size` is checked against."""
    sides = []
    for images in image_sets:
        if images is None or len(images) == 0:
            continue
        if hasattr(images, "shapes"):  # an ImageStack: its shapes, nothing decoded
            sides.append(min(min(shape[-2:]) for shape in images.shapes))
        elif getattr(images, "ndim", 0) == 4:
            sides.append(min(images.shape[2:]))
        else:
            sides.append(min(min(x.shape[-2:]) for x in images))
    return min(sides) if sides else None


def check_features(feats, set_name: str, metric: str, *, min_n: int = 2):
    """``feats`` as float64 ``[N, D]`` after the checks every feature-based metric makes:
    2-D, at least ``min_n`` rows, every value finite. One :class:`EvalkitError` naming the
    metric and the set otherwise (a NaN would make FID or KID NaN, a number no gate catches)."""
    import numpy as np
    import torch

    f = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else feats
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise EvalkitError(f"{metric}: {set_name} features must be [N, D], got shape {list(f.shape)}")
    if f.shape[0] < min_n:
        raise EvalkitError(f"{metric} needs at least {min_n} images per set, the {set_name} set has {f.shape[0]}; "
                           "add images")
    check_finite(f, f"{set_name} set features", metric)
    return f


def check_finite(values, what: str, metric: str) -> None:
    """One :class:`EvalkitError` when ``values`` hold NaN or inf (how many of each)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        n_nan, n_inf = int(np.isnan(v).sum()), int(np.isinf(v).sum())
        raise EvalkitError(f"{metric}: {what}: {n_nan} NaN and {n_inf} infinite value(s); the backbone or the inputs "
                           "are broken (check the weights file and the images); nothing was computed")
