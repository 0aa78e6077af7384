"""One pass over an image set: every metric family of :mod:`evalkit.metrics.registry`, each
backbone run once per image, features cached on disk by image content + protocol (see
:class:`evalkit.features.FeatureCache`).

``evaluate_folders`` reads the outputs layout of docs/contracts.md (generated and real
matched by file stem; exemplars by sample name; ``pairs.csv`` groups samples by ``query``
for LPIPS diversity); ``evaluate_arrays`` does the same on in-memory uint8 arrays.
Both return the long table of metric rows: ``metric, variant, value, n`` + Protocol columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from evalkit import protocols
from evalkit.errors import EvalkitError
from evalkit.features import FeatureCache
from evalkit.image_stack import ImageStack
from evalkit.images import (RESIZE_FILTERS, ImageSet, as_uint8_batch, check_one_size, image_format, load_image,
                            resize_tag, resize_uint8, resolve_images)
from evalkit.metrics import registry
from evalkit.metrics.options import EvaluationOptions, options_from
from evalkit.progress import Progress
from evalkit.protocol import Protocol


@dataclass
class _Inputs:
    generated: ImageStack  # N uint8 [3, H, W] (mixed sizes allowed), held or decoded on demand
    real: ImageStack  # M uint8 [3, H', W'] (all real images, FID/KID)
    pairs: list[int] | None  # real index of each generated image, when paired
    exemplars: ImageStack | None  # N [3, h, w] of one size, one per generated image
    groups: list[list[int]] | None  # generated indices per conditional input
    image_format: str
    real_resize: str = "none"  # how real images (and exemplars) were resized first (--real-size)
    notes: tuple[str, ...] = ()  # what was left out of the inputs, and why
    pair_hint: str = ""  # how to make the paired metrics apply, when they do not
    reference: object = None  # evalkit.metrics.stats.ReferenceStats standing in for the real images (--real-stats)
    labels: list | None = None  # label map [H, W] of each generated image (--labels; protocol unite2021)
    protocol: str = "clean"  # the evaluation preset (evalkit.protocols); set from the options by _evaluate

    def __post_init__(self):  # tensors and lists of tensors become held stacks
        self.generated, self.real = ImageStack.of(self.generated), ImageStack.of(self.real)
        self.exemplars = None if self.exemplars is None else ImageStack.of(self.exemplars)
        self.gen_hash, self.real_hash = self.generated.hashes, self.real.hashes
        self.ex_hash = None if self.exemplars is None else self.exemplars.hashes

    @property
    def n_real(self) -> int:
        return self.reference.n if self.reference is not None else len(self.real)

    @property
    def paired_real(self) -> ImageStack:
        """The real image of each generated one (a view: nothing decoded)."""
        return self.real.subset(self.pairs)

    def available(self) -> dict[str, bool]:
        """What these inputs offer, by the needs of :data:`evalkit.metrics.registry.NEEDS`."""
        n, m, paired = len(self.generated), len(self.real), self.pairs is not None
        one_size = self.generated.one_size  # mixed sizes: only the set metrics (FID, KID)
        return {"sets": min(n, m) >= 2, "pairs": paired, "exemplars": one_size and self.exemplars is not None,
                "groups": one_size and bool(self.groups),
                "equal-sets": one_size and self.real.one_size
                and n == (len(self.pairs) if paired else m) and self.generated.shape[2:] == self.real.shape[2:],
                "min_side": registry.min_side(self.generated, self.real, self.exemplars)}


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
        common = dict(resolution=inp.generated.shapes[0][-2] if resolution is None else resolution,
                      image_format=inp.image_format, n_images=self.n if n_images is None else n_images,
                      metric_seed=self.options.seed, real_resize=inp.real_resize, protocol=self.options.protocol)
        if net is None:
            return Protocol(resize="none", backbone="none", weights_sha256="none", **common)
        return Protocol(resize=net.resize, backbone=net.backbone, weights_sha256=net.weights_id, **common)

    @staticmethod
    def row(metric: str, variant: str, value, n: int, protocol: Protocol) -> dict:
        return {"metric": metric, "variant": variant, "value": float(value), "n": int(n), **protocol.as_columns()}


def _why(spec: registry.MetricSpec, inp: _Inputs) -> str | None:
    """Why ``spec`` cannot be computed on ``inp`` (with the fix, for the paired metrics), or None."""
    from evalkit import protocols

    if (why := protocols.unavailable(inp.protocol, spec.family, inp)) is not None:  # not part of the preset
        return why
    available = inp.available()
    if inp.reference is not None:  # reference statistics: only the families that read real features apply
        if not spec.from_stats and any(k in ("sets", "pairs", "equal-sets") for k in (*spec.needs, *spec.needs_any)):
            if spec.unavailable(available, (len(inp.generated), 0)) is not None:
                return ("needs the real images; --real-stats holds only their Inception features "
                        "(pass --real to compute it)")
        available["sets"] = min(len(inp.generated), inp.n_real) >= 2
    why = spec.unavailable(available, (len(inp.generated), inp.n_real))
    if why is not None and inp.pair_hint and not available["pairs"] and "pairs" in (*spec.needs, *spec.needs_any):
        why += f" ({inp.pair_hint})"
    return why


def _select(metrics, inp: _Inputs) -> list[str]:
    if metrics is None:
        return [f for f in registry.families() if _why(registry.spec(f), inp) is None]
    chosen = []
    for m in metrics:
        spec = registry.spec(m)
        why = _why(spec, inp)
        if why is not None:
            rows = ", ".join(r.name for r in spec.rows)
            raise EvalkitError(f"metric '{spec.family}' ({rows}) cannot be computed here: {why}")
        chosen.append(spec.family)
    return chosen


def _evaluate(inp: _Inputs, options: EvaluationOptions, *, progress: bool, backbones: dict | None) -> pd.DataFrame:
    options = options.check()  # the protocol's pins applied (evalkit.protocols.resolve)
    inp.protocol = options.protocol
    chosen = _select(options.metrics, inp)
    # Build every backbone first: missing weights fail before any work.
    nets = registry.build_backbones(chosen, options, options.device, have=backbones)
    if inp.reference is not None and "inception" in nets:
        from evalkit.metrics.stats import check_backbone

        check_backbone(inp.reference, nets["inception"], options)  # the stored features are this network's
    cache = FeatureCache(options.cache_root)
    rows: list[dict] = []
    with Progress(progress) as bars:
        ctx = MetricContext(inp, options, nets, cache, bars, tuple(chosen))
        for family in chosen:
            rows += registry.spec(family).compute(ctx)
    df = pd.DataFrame(rows)
    df.attrs["notes"] = list(inp.notes)
    df.attrs["n_real"] = inp.n_real
    if options.metrics is None:  # say what "all that apply" left out, and why (never silently)
        df.attrs["skipped"] = {f: why for f in registry.families() if (why := _why(registry.spec(f), inp)) is not None}
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
                    image_format: str = "uint8-array", labels=None, encoded: bool = False,
                    **option_fields) -> pd.DataFrame:
    """Every applicable metric on in-memory uint8 ``[N, 3, H, W]`` arrays (NumPy or torch).

    ``generated[i]`` pairs with ``real[i]`` when both have the same shape; ``exemplars[i]``
    is the exemplar of ``generated[i]``; ``groups`` lists generated indices that share a
    conditional input (LPIPS diversity). ``options`` (:class:`EvaluationOptions`), or its
    fields as keywords (``metrics=["fid"]``, ``weights="random"``, ``seed=1``,
    ``cache_dir=False`` to disable the cache, ...): ``metrics`` picks families of
    :func:`evalkit.metrics.registry.families` (default: all that apply). ``backbones`` may
    inject ``inception`` / ``lpips`` / ``vgg`` modules (tests, custom extractors). With
    ``metrics=None``, ``df.attrs["skipped"]`` maps each family that does not apply to the reason.
    Under a paper ``protocol`` the arrays go through the codecs the preset pins (as lossless
    outputs would), unless ``encoded`` (they are decoded files that already did); ``labels``:
    the ``[H, W]`` label map of each generated image (``unite2021`` semantic consistency).
    """
    options = options_from(options, **option_fields)
    gen = as_uint8_batch(generated_uint8, "generated")
    real = as_uint8_batch(real_uint8, "real")
    ex = None if exemplars_uint8 is None else as_uint8_batch(exemplars_uint8, "exemplars")
    if not encoded and not protocols.get(options.protocol).is_clean:
        gen, real, ex = (None if x is None else _encode_batch(options.protocol, kind, x)
                         for kind, x in (("generated", gen), ("real", real), ("exemplar", ex)))
        image_format = protocols.format_tag(options.protocol, "generated", image_format)
    if ex is not None and len(ex) != len(gen):
        raise EvalkitError(f"{len(ex)} exemplars for {len(gen)} generated images; pass one exemplar per generated image")
    pairs = list(range(len(gen))) if gen.shape == real.shape else None
    inp = _Inputs(gen, real, pairs, ex, _check_groups(groups, len(gen)), image_format,
                  labels=None if labels is None else [np.asarray(lab) for lab in labels])
    return _evaluate(inp, options, progress=progress, backbones=backbones)


def _encode_batch(protocol: str, kind: str, batch: torch.Tensor) -> torch.Tensor:
    """A uint8 ``[N, 3, H, W]`` batch through the preset's codec of set ``kind``."""
    images = [x.permute(1, 2, 0).numpy() for x in batch]
    out = protocols.encode(protocol, kind, images)
    return torch.from_numpy(np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2)))


def read_pairs(path: str | Path) -> list[dict]:
    """Rows of a ``pairs.csv`` (``name,query,exemplar_name``), validated by
    :func:`evalkit.layout.read_pairs_csv` (BOM, short rows, duplicated samples)."""
    from evalkit.layout import read_pairs_csv

    return read_pairs_csv(path)


def real_images(images: ImageSet, size: int | None, filter: str, protocol: str = "clean", *,
                hold_bytes: int | None = None) -> ImageStack:
    """The real set as every metric sees it: decoded, resized to ``size`` (``--real-size``),
    through the codec the preset ``protocol`` says the real images went through (none for
    ``clean``). The one preparation of real images, shared by ``evaluate --real`` and
    ``stats build``: whatever changes the real side belongs here, so reference statistics follow."""
    return protocol_images(protocol, "real", images, size, filter, hold_bytes=hold_bytes)


def protocol_images(protocol: str, kind: str, images: ImageSet, size: int | None, filter: str, *,
                    hold_bytes: int | None = None) -> ImageStack:
    """The files of ``images`` as an :class:`~evalkit.image_stack.ImageStack` (each decoded and
    validated now; held, or decoded again batch by batch when larger than ``hold_bytes``):
    resized to ``size`` when given, then through the codec protocol ``protocol`` says set
    ``kind`` (``generated``, ``real``, ``exemplar``) went through (:func:`evalkit.protocols.encode`:
    a file the codec wrote and that the resize left as it was is kept as read)."""
    files = list(images.files)
    clean = protocols.get(protocol).is_clean

    def prepare(indices: list[int]) -> list[np.ndarray]:
        raw = [load_image(files[i]) for i in indices]
        resized = raw if size is None else [resize_uint8(im, size, filter) for im in raw]
        if clean:
            return resized
        changed = [a.shape != b.shape for a, b in zip(raw, resized)]
        return protocols.encode(protocol, kind, resized, [files[i] for i in indices], changed=changed)

    return ImageStack.from_files(len(files), prepare, hold_bytes=hold_bytes)


def _square_side(images: ImageStack) -> int | None:
    """The side of ``images`` when all are square of one size, else None."""
    shapes = {shape[-2:] for shape in images.shapes}
    return next(iter(shapes))[0] if len(shapes) == 1 and len(set(next(iter(shapes)))) == 1 else None


def check_real_size(real_size: int | None, real_filter: str) -> None:
    """``--real-size`` / ``--real-filter`` are usable, or one EvalkitError."""
    if real_size is not None and real_size < 16:
        raise EvalkitError(f"--real-size {real_size}: too small; give the generated images' side (e.g. 256)")
    if real_filter not in RESIZE_FILTERS:
        raise EvalkitError(f"--real-filter {real_filter!r}: unknown; choose one of {', '.join(RESIZE_FILTERS)}")


def load_inputs(generated, real, *, exemplars=None, pairs=None, recursive: bool = False,
                real_size: int | None = None, real_filter: str = "bicubic", reference=None,
                protocol: str = "clean", labels=None, hold_bytes: int | None = None) -> _Inputs:
    """Decode the inputs of an evaluation (every file validated first).

    ``generated``, ``real``, ``exemplars``: a folder, a glob pattern or ``DATASET:ROOT[:SPLIT]``
    (:func:`evalkit.images.resolve_images`; ``recursive`` searches sub-folders). Generated and
    real images pair by name when every generated name has a real image of the same size.
    Mixed sizes are allowed for the set metrics (FID, KID: each image goes through the
    backbone's own resize, as clean-fid does); ``real_size`` first resizes every real image
    and exemplar to ``real_size`` x ``real_size`` with ``real_filter`` (PIL; the papers'
    bicubic by default), which the Protocol records (``real_resize``). ``exemplars``: the
    exemplar of each sample, named by the sample's name (or by its ``exemplar_name`` from
    ``pairs``). ``pairs``: ``pairs.csv`` whose ``query`` column groups samples for LPIPS diversity.
    ``reference``: :class:`evalkit.metrics.stats.ReferenceStats` in place of ``real`` (None):
    the real set is its stored features (FID, KID, prdc); nothing pairs.
    ``protocol``: a paper preset resizes real images and exemplars to the generated size and
    puts each set through the codec its official script applied (:mod:`evalkit.protocols`).
    ``labels``: the label map of each generated image, by name (``unite2021`` semantic).
    ``hold_bytes``: a set larger than this once decoded (default
    :data:`evalkit.image_stack.HOLD_BYTES`) is decoded again batch by batch where it is used
    instead of held (:mod:`evalkit.image_stack`): memory stays bounded at any N.
    """
    check_real_size(real_size, real_filter)
    gen_set = resolve_images(generated, recursive=recursive)
    real_set = resolve_images(real, recursive=recursive) if reference is None else ImageSet("--real-stats", (), ())
    notes = [*gen_set.notes, *real_set.notes]
    pair_rows = read_pairs(pairs) if pairs is not None else None
    gen_names = list(gen_set.names)
    ex_set = None
    if exemplars is not None:
        ex_all = resolve_images(exemplars, recursive=recursive)
        notes += ex_all.notes
        by_name = dict(zip(ex_all.names, ex_all.files))
        alias = {r["name"]: r["exemplar_name"] for r in pair_rows or []}
        ex_files = []
        for name in gen_names:
            hit = by_name.get(name) or by_name.get(Path(alias.get(name, "")).stem)
            if hit is None:
                named = f" (exemplar_name '{alias[name]}')" if name in alias else ""
                raise EvalkitError(f"{exemplars}: no exemplar for sample '{name}'{named}; add it or fix the pair list")
            ex_files.append(hit)
        ex_set = ImageSet(ex_all.source, tuple(gen_names), tuple(ex_files))
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
    gen = protocol_images(protocol, "generated", gen_set, None, real_filter, hold_bytes=hold_bytes)
    real_size, real_filter = protocols.real_size(protocol, real_size, real_filter, _square_side(gen))
    real_arr = real_images(real_set, real_size, real_filter, protocol, hold_bytes=hold_bytes)
    label_maps = None
    if labels is not None:
        if not gen.one_size:
            raise EvalkitError(f"--labels {labels}: label maps need generated images of one size")
        label_maps = protocols.load_labels(labels, gen_names, gen.shape[2:], recursive=recursive)
    ex = None
    if ex_set is not None:
        ex = protocol_images(protocol, "exemplar", ex_set, real_size, real_filter, hold_bytes=hold_bytes)
        hint = "" if real_size else "; pass --real-size N to bring exemplars and real images to the generated size"
        try:
            check_one_size(ex.shapes, list(ex_set.names), str(exemplars))
        except EvalkitError as err:
            raise EvalkitError(f"{err}{hint}") from None
    real_index = {name: j for j, name in enumerate(real_set.names)}
    matched = all(name in real_index for name in gen_names)
    paired = matched and gen.one_size and real_arr.one_size and gen.shape[2:] == real_arr.shape[2:]
    hint = ""
    if gen.one_size and not paired and matched and not real_size:
        hint = (f"real images are not all {gen.shape[3]}x{gen.shape[2]} like the generated ones: pass "
                f"--real-size {gen.shape[2]} to resize them, recorded in the protocol")
    elif not gen.one_size:
        hint = "the generated images have mixed sizes: only the set metrics (FID, KID) apply"
    fmts = [protocols.format_tag(protocol, "generated", "+".join(sorted({image_format(p) for p in gen_set.files})))]
    if reference is not None:
        paired, real_arr = False, ImageStack.of([])
        notes.append(f"real set: {reference.n} images' Inception features from {reference.where()}")
        hint = "the paired metrics need the real images (--real), not reference statistics (--real-stats)"
    return _Inputs(gen, real_arr, [real_index[nm] for nm in gen_names] if paired else None, ex, groups,
                   "+".join(fmts), real_resize=resize_tag(real_size, real_filter), notes=tuple(notes), pair_hint=hint,
                   reference=reference, labels=label_maps, protocol=protocol)


def evaluate_folders(generated, real=None, *, exemplars=None, pairs=None, options: EvaluationOptions | None = None,
                     progress: bool = True, backbones: dict | None = None, recursive: bool = False,
                     real_size: int | None = None, real_filter: str = "bicubic", real_stats=None, labels=None,
                     **option_fields) -> pd.DataFrame:
    """Every applicable metric on folders (or glob patterns, or dataset layouts) of images,
    each validated first, held or streamed in batches (:mod:`evalkit.image_stack`); see :func:`load_inputs` for how the inputs are matched and resized
    and :func:`evaluate_arrays` for ``options`` and ``backbones``. ``df.attrs["notes"]`` says
    what the inputs left out (label maps, paired metrics on mixed sizes).

    ``real_stats`` (a ``.npz`` of ``evalkit stats build``, or a loaded
    :class:`evalkit.metrics.stats.ReferenceStats`) stands in for ``real``: FID, KID and prdc
    come out exactly as with the images it was built from; the paired metrics are skipped. A
    file built under another protocol (FID mode, weights, real resize, preset) is refused."""
    options = options_from(options, **option_fields).check()
    reference = None
    if real is not None and real_stats is not None:
        raise EvalkitError("pass either the real images (--real) or their reference statistics (--real-stats), not both")
    if real is None and real_stats is None:
        raise EvalkitError("no real set: pass the real images (--real DIR) or their reference statistics "
                           "(--real-stats FILE.npz of `evalkit stats build`)")
    if real_stats is not None:
        from evalkit.metrics import stats

        reference = real_stats if isinstance(real_stats, stats.ReferenceStats) else stats.load(real_stats)
    inputs = load_inputs(generated, real, exemplars=exemplars, pairs=pairs, recursive=recursive,
                         real_size=real_size, real_filter=real_filter, reference=reference,
                         protocol=options.protocol, labels=labels)
    if reference is not None:  # before any backbone is built: nothing computed, nothing written
        stats.check_requested(reference, options, real_resize=inputs.real_resize,
                              weights="inception" not in (backbones or {}))
    return _evaluate(inputs, options, progress=progress, backbones=backbones)
