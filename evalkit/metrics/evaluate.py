"""One pass over an image set: every metric family of :mod:`evalkit.metrics.registry`, each
backbone run once per image, features cached on disk by image content + protocol (see
:class:`evalkit.features.FeatureCache`).

``evaluate_folders`` reads the outputs layout of docs/contracts.md (generated and real
matched by file stem; exemplars by sample name; ``pairs.csv`` groups samples by ``query``
for LPIPS diversity); ``evaluate_arrays`` does the same on in-memory uint8 arrays.
Both return the long table of metric rows: ``metric, variant, value, n`` + Protocol columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from evalkit.errors import EvalkitError
from evalkit.features import FeatureCache
from evalkit.images import as_uint8_batch, content_hash, image_format, list_images, load_image, stack_images
from evalkit.metrics import registry
from evalkit.metrics.options import EvaluationOptions, options_from
from evalkit.progress import Progress
from evalkit.protocol import Protocol


@dataclass
class _Inputs:
    generated: torch.Tensor  # [N, 3, H, W] uint8
    real: torch.Tensor  # [M, 3, H', W'] uint8 (all real images, for FID/KID)
    pairs: list[int] | None  # real index of each generated image, when paired
    exemplars: torch.Tensor | None  # [N, 3, h, w], one per generated image
    groups: list[list[int]] | None  # generated indices per conditional input
    image_format: str

    def __post_init__(self):
        self.gen_hash = [content_hash(x) for x in self.generated]
        self.real_hash = [content_hash(x) for x in self.real]
        self.ex_hash = None if self.exemplars is None else [content_hash(x) for x in self.exemplars]

    @property
    def paired_real(self) -> torch.Tensor:
        return self.real[self.pairs]

    def available(self) -> dict[str, bool]:
        """What these inputs offer, by the needs of :data:`evalkit.metrics.registry.NEEDS`."""
        n, m, paired = len(self.generated), len(self.real), self.pairs is not None
        return {"sets": min(n, m) >= 2, "pairs": paired, "exemplars": self.exemplars is not None,
                "groups": bool(self.groups),
                "equal-sets": n == (len(self.pairs) if paired else m) and self.generated.shape[2:] == self.real.shape[2:]}


class MetricContext:
    """What a family's ``compute(ctx)`` / ``per_item(ctx, row)`` sees: the decoded inputs
    (``ctx.inputs``), the options, the built backbones, the feature cache, progress bars,
    the families chosen in this evaluation, and a memo shared by the families (FID and KID
    share one pass of Inception features)."""

    def __init__(self, inputs: _Inputs, options: EvaluationOptions, backbones: dict, cache: FeatureCache,
                 bars: Progress | None = None, chosen: tuple[str, ...] = ()):
        self.inputs, self.options, self.backbones, self.cache = inputs, options, backbones, cache
        self.bars = bars or Progress(False)
        self.chosen = chosen
        self.memo: dict = {}

    @property
    def n(self) -> int:
        return len(self.inputs.generated)

    def protocol(self, net=None, *, resolution: int | None = None, n_images: int | None = None) -> Protocol:
        """The Protocol of a row: ``net``'s resize, backbone and weights, else none."""
        inp = self.inputs
        common = dict(resolution=inp.generated.shape[2] if resolution is None else resolution,
                      image_format=inp.image_format, n_images=self.n if n_images is None else n_images,
                      metric_seed=self.options.seed)
        if net is None:
            return Protocol(resize="none", backbone="none", weights_sha256="none", **common)
        return Protocol(resize=net.resize, backbone=net.backbone, weights_sha256=net.weights_id, **common)

    @staticmethod
    def row(metric: str, variant: str, value, n: int, protocol: Protocol) -> dict:
        return {"metric": metric, "variant": variant, "value": float(value), "n": int(n), **protocol.as_columns()}


def _select(metrics, inp: _Inputs) -> list[str]:
    available, counts = inp.available(), (len(inp.generated), len(inp.real))
    if metrics is None:
        return [f for f in registry.families() if registry.spec(f).unavailable(available, counts) is None]
    chosen = []
    for m in metrics:
        spec = registry.spec(m)
        why = spec.unavailable(available, counts)
        if why is not None:
            rows = ", ".join(r.name for r in spec.rows)
            raise EvalkitError(f"metric '{spec.family}' ({rows}) cannot be computed here: {why}")
        chosen.append(spec.family)
    return chosen


def _evaluate(inp: _Inputs, options: EvaluationOptions, *, progress: bool, backbones: dict | None) -> pd.DataFrame:
    options.check()
    chosen = _select(options.metrics, inp)
    # Build every backbone first: missing weights fail before any work.
    nets = registry.build_backbones(chosen, options, options.device, have=backbones)
    cache = FeatureCache(options.cache_root)
    rows: list[dict] = []
    with Progress(progress) as bars:
        ctx = MetricContext(inp, options, nets, cache, bars, tuple(chosen))
        for family in chosen:
            rows += registry.spec(family).compute(ctx)
    df = pd.DataFrame(rows)
    if options.metrics is None:  # say what "all that apply" left out, and why (never silently)
        available, counts = inp.available(), (len(inp.generated), len(inp.real))
        df.attrs["skipped"] = {f: why for f in registry.families()
                               if (why := registry.spec(f).unavailable(available, counts)) is not None}
    return df


def per_item(inp: _Inputs, row: str, options: EvaluationOptions, backbones: dict, cache_dir=None) -> registry.PerItem:
    """Per-item values of ``row`` (a results-table row name) for the paired bootstrap;
    ``backbones`` keeps what is built (shared across calls)."""
    family = registry.family_of(row)
    spec = registry.spec(family) if family else None
    if spec is None or spec.per_item is None:
        raise EvalkitError(f"metric {row!r} has no per-item values; claims need one of {', '.join(registry.claim_rows())}")
    backbones.update(registry.build_backbones([family], options, options.device, have=backbones))
    ctx = MetricContext(inp, options, backbones, FeatureCache(cache_dir), chosen=(family,))
    return spec.per_item(ctx, row)


def _check_groups(groups, n: int) -> list[list[int]] | None:
    if groups is None:
        return None
    groups = [list(map(int, g)) for g in groups]
    for g in groups:
        if any(i < 0 or i >= n for i in g):
            raise EvalkitError(f"group {g} indexes outside the {n} generated images")
    return groups


def evaluate_arrays(generated_uint8, real_uint8, *, exemplars_uint8=None, groups=None,
                    options: EvaluationOptions | None = None, progress: bool = False, backbones: dict | None = None,
                    image_format: str = "uint8-array", **option_fields) -> pd.DataFrame:
    """Every applicable metric on in-memory uint8 ``[N, 3, H, W]`` arrays (NumPy or torch).

    ``generated[i]`` pairs with ``real[i]`` when both have the same shape; ``exemplars[i]``
    is the exemplar of ``generated[i]``; ``groups`` lists generated indices that share a
    conditional input (LPIPS diversity). ``options`` (:class:`EvaluationOptions`), or its
    fields as keywords (``metrics=["fid"]``, ``weights="random"``, ``seed=1``,
    ``cache_dir=False`` to disable the cache, ...): ``metrics`` picks families of
    :func:`evalkit.metrics.registry.families` (default: all that apply). ``backbones`` may
    inject ``inception`` / ``lpips`` / ``vgg`` modules (tests, custom extractors). With
    ``metrics=None``, ``df.attrs["skipped"]`` maps each family that does not apply to the reason.
    """
    options = options_from(options, **option_fields)
    gen = as_uint8_batch(generated_uint8, "generated")
    real = as_uint8_batch(real_uint8, "real")
    ex = None if exemplars_uint8 is None else as_uint8_batch(exemplars_uint8, "exemplars")
    if ex is not None and len(ex) != len(gen):
        raise EvalkitError(f"{len(ex)} exemplars for {len(gen)} generated images; pass one exemplar per generated image")
    pairs = list(range(len(gen))) if gen.shape == real.shape else None
    inp = _Inputs(gen, real, pairs, ex, _check_groups(groups, len(gen)), image_format)
    return _evaluate(inp, options, progress=progress, backbones=backbones)


def read_pairs(path: str | Path) -> list[dict]:
    """Rows of a ``pairs.csv`` (``name,query,exemplar_name``)."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"{path}: pairs file not found; pass inputs/pairs.csv of the outputs layout")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as err:
        raise EvalkitError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start}); "
                           "pass inputs/pairs.csv of the outputs layout", path=path) from err
    need = {"name", "query", "exemplar_name"}
    if not rows or not need <= set(rows[0]):
        raise EvalkitError(f"{path}: expected a CSV with columns name,query,exemplar_name")
    return rows


def load_inputs(generated, real, *, exemplars=None, pairs=None) -> _Inputs:
    """Decode folders into the inputs of an evaluation (every file validated first).

    Generated and real images pair by file stem when every generated name has a real one.
    ``exemplars``: folder with the exemplar of each sample, named by the sample's name (or
    by its ``exemplar_name`` from ``pairs``). ``pairs``: ``pairs.csv`` whose ``query`` column
    groups samples for LPIPS diversity.
    """
    gen_files, real_files = list_images(generated), list_images(real)
    pair_rows = read_pairs(pairs) if pairs is not None else None
    ex_files = None
    if exemplars is not None:
        by_stem = {p.stem: p for p in list_images(exemplars)}
        alias = {r["name"]: r["exemplar_name"] for r in pair_rows or []}
        ex_files = []
        for f in gen_files:
            hit = by_stem.get(f.stem) or by_stem.get(Path(alias.get(f.stem, "")).stem)
            if hit is None:
                named = f" (exemplar_name '{alias[f.stem]}')" if f.stem in alias else ""
                raise EvalkitError(f"{exemplars}: no exemplar for sample '{f.stem}'{named}; add it or fix the pair list")
            ex_files.append(hit)
    gen_names = [p.stem for p in gen_files]
    groups = None
    if pair_rows is not None:
        index = {name: i for i, name in enumerate(gen_names)}
        by_query: dict[str, list[int]] = {}
        for r in pair_rows:
            if r["name"] not in index:
                raise EvalkitError(f"{pairs}: sample '{r['name']}' is listed but {generated} has no image with that name")
            by_query.setdefault(r["query"], []).append(index[r["name"]])
        groups = [g for g in by_query.values() if len(g) >= 2] or None
    # Decode everything (validates every file) before any work.
    gen = stack_images([load_image(p) for p in gen_files], gen_names, str(generated))
    real_names = [p.stem for p in real_files]
    real_arr = stack_images([load_image(p) for p in real_files], real_names, str(real))
    ex = None if ex_files is None else stack_images([load_image(p) for p in ex_files], [p.stem for p in ex_files], str(exemplars))
    real_index = {name: j for j, name in enumerate(real_names)}
    paired = all(name in real_index for name in gen_names) and gen.shape[2:] == real_arr.shape[2:]
    fmts = sorted({image_format(p) for p in gen_files})
    inp = _Inputs(torch.from_numpy(gen), torch.from_numpy(real_arr),
                  [real_index[nm] for nm in gen_names] if paired else None,
                  None if ex is None else torch.from_numpy(ex), groups, "+".join(fmts))
    return inp


def evaluate_folders(generated, real, *, exemplars=None, pairs=None, options: EvaluationOptions | None = None,
                     progress: bool = True, backbones: dict | None = None, **option_fields) -> pd.DataFrame:
    """Every applicable metric on folders of images (decoded once each); see
    :func:`load_inputs` for how the folders are matched and :func:`evaluate_arrays` for
    ``options`` and ``backbones``."""
    options = options_from(options, **option_fields).check()
    return _evaluate(load_inputs(generated, real, exemplars=exemplars, pairs=pairs), options, progress=progress,
                     backbones=backbones)
