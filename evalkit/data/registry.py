"""Dataset registry: every dataset is a factory registered under a name.

``get_dataset(name, root=..., split=..., size=..., n=..., seed=...)`` builds it;
``list_datasets()`` names them all. Datasets are ``torch.utils.data.Dataset`` objects
yielding :class:`evalkit.data.sample.Sample` and carry ``.name``, ``.cond_channels``,
``.num_classes`` (None for edge / pose conditions) and ``.cond_kind``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from evalkit.errors import EvalkitError

__all__ = ["DatasetSpec", "register_dataset", "get_dataset", "list_datasets", "dataset_spec"]

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What ``evalkit data list`` shows about a registered dataset."""

    name: str
    factory: Callable[..., Dataset]
    description: str
    needs_root: bool
    cond_kind: str  # "label", "channels" (edges, heat maps) or "pose"
    layout: str = ""  # the folder layout it reads, for `evalkit data list`
    paired: bool = False  # an official layout read through a pair list (PairedDataset)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, description: str, needs_root: bool, cond_kind: str, layout: str = "",
                     paired: bool = False):
    """Decorator: register ``factory(root, split, size, n, seed, **kw) -> Dataset`` as ``name``."""

    def wrap(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} registered twice")
        _REGISTRY[name] = DatasetSpec(name, factory, description, needs_root, cond_kind, layout, paired)
        return factory

    return wrap


def _load_builtin() -> None:
    import evalkit.data  # noqa: F401  (importing the package registers every built-in dataset)


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (EvalkitError naming the choices when unknown)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise EvalkitError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    split: str = "test",
    size: int = 256,
    n: int | None = None,
    seed: int = 0,
    **kw,
) -> Dataset:
    """Build dataset ``name`` for ``split`` ("train" or "test") at ``size`` pixels.

    ``n`` keeps the first ``n`` samples (all when None; the built-in datasets need no
    root and generate exactly ``n``). ``seed`` drives every random choice (exemplar
    sampling, crops, flips, procedural scenes).
    """
    spec = dataset_spec(name)
    if split not in SPLITS:
        raise EvalkitError(f"unknown split {split!r} for dataset {name!r}; use 'train' or 'test'")
    if size < 8:
        raise EvalkitError(f"size {size} is too small for dataset {name!r}; use at least 8 pixels")
    if n is not None and n < 1:
        raise EvalkitError(f"n={n} for dataset {name!r}: ask for at least one sample")
    if spec.needs_root and root is None:
        raise EvalkitError(f"dataset {name!r} needs --root (a folder laid out as: {spec.layout or 'see docs/data.md'})")
    return spec.factory(root=None if root is None else Path(root), split=split, size=size, n=n, seed=seed, **kw)
