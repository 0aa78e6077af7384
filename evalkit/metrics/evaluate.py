"""One pass over an image set: every metric, each backbone run once per image, features
cached on disk by image content + protocol (see :class:`evalkit.features.FeatureCache`).

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
from evalkit.features import (FeatureCache, InceptionFID, VGG19Features, cached_per_item, check_weights_choice,
                              default_cache_dir, pair_key)
from evalkit.images import as_uint8_batch, content_hash, image_format, list_images, load_image, stack_images
from evalkit.metrics.fid import fid_from_features
from evalkit.metrics.kid import kid_from_features
from evalkit.metrics.lpips import LPIPSAlex, diversity_from_features
from evalkit.metrics.pixel import psnr, ssim
from evalkit.metrics.swd import sliced_wasserstein, swd_variant
from evalkit.metrics.vgg import SEMANTIC_LAYERS, semantic_cosines, style_cosines, style_stats
from evalkit.protocol import Protocol

METRICS = ("fid", "kid", "swd", "lpips", "lpips-diversity", "vgg", "psnr", "ssim")


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


class _Progress:
    """Rich progress bars on stderr (no-op when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def task(self, description: str, total: int):
        if self._bar is None:
            return lambda n=1: None
        tid = self._bar.add_task(description, total=total)
        return lambda n=1: self._bar.advance(tid, n)


def _applicable(inp: _Inputs) -> dict[str, str | None]:
    """metric -> None when computable, else why not."""
    n, paired = len(inp.generated), inp.pairs is not None
    few = None if min(n, len(inp.real)) >= 2 else f"needs at least 2 images per set ({n} generated, {len(inp.real)} real); add images"
    why_pair = "needs generated images paired with real ones (same names / same count and size)"
    return {
        "fid": few, "kid": few,
        "swd": None if (len(inp.generated) == (len(inp.pairs) if paired else len(inp.real))
                        and (inp.generated.shape[2:] == inp.real.shape[2:])) else
        f"SWD needs as many real as generated images of the same size ({n} generated, {len(inp.real)} real)",
        "lpips": None if paired else why_pair,
        "psnr": None if paired else why_pair,
        "ssim": None if paired else why_pair,
        "vgg": None if (paired or inp.exemplars is not None) else why_pair + " or exemplars",
        "lpips-diversity": None if inp.groups else "needs groups of outputs per conditional input (--pairs with a query column)",
    }


def _select(metrics, inp: _Inputs) -> list[str]:
    ok = _applicable(inp)
    if metrics is None:
        return [m for m in METRICS if ok[m] is None]
    chosen = []
    for m in metrics:
        m = m.lower()
        if m not in METRICS:
            raise EvalkitError(f"unknown metric '{m}'; choose from {', '.join(METRICS)}")
        if ok[m] is not None:
            raise EvalkitError(f"metric '{m}' cannot be computed here: {ok[m]}")
        chosen.append(m)
    return chosen


def _row(metric, variant, value, n, protocol: Protocol) -> dict:
    return {"metric": metric, "variant": variant, "value": float(value), "n": int(n), **protocol.as_columns()}


def _evaluate(inp: _Inputs, *, metrics, weights, cache_dir, progress, seed, fid_mode, kid_subsets, kid_subset_size,
              backbones, device, swd_shared_patches=False) -> pd.DataFrame:
    check_weights_choice(weights)
    chosen = _select(metrics, inp)
    backbones = dict(backbones or {})
    cache = FeatureCache(default_cache_dir() if cache_dir is None else (None if cache_dir is False else cache_dir))
    # Build every backbone first: missing weights fail before any work.
    if {"fid", "kid"} & set(chosen) and "inception" not in backbones:
        backbones["inception"] = InceptionFID(fid_mode, weights, seed, device=device)
    if {"lpips", "lpips-diversity"} & set(chosen) and "lpips" not in backbones:
        backbones["lpips"] = LPIPSAlex(weights, seed, device=device)
    if "vgg" in chosen and "vgg" not in backbones:
        backbones["vgg"] = VGG19Features(weights, seed, device=device)

    rows: list[dict] = []
    n = len(inp.generated)
    res = inp.generated.shape[2]
    fmt = inp.image_format

    def proto(net=None, resolution=res, resize="none", n_images=n):
        if net is None:
            return Protocol(resolution=resolution, resize=resize, image_format=fmt, backbone="none",
                            weights_sha256="none", n_images=n_images)
        return Protocol(resolution=resolution, resize=net.resize, image_format=fmt, backbone=net.backbone,
                        weights_sha256=net.weights_id, n_images=n_images)

    with _Progress(progress) as bars:
        if {"fid", "kid"} & set(chosen):
            net = backbones["inception"]
            ns = FeatureCache.namespace(**net.protocol_key())
            keys = inp.gen_hash + inp.real_hash

            def image(i):
                return inp.generated[i] if i < n else inp.real[i - n]

            def compute(idx):
                by_size: dict[tuple, list[int]] = {}
                for i in idx:
                    by_size.setdefault(tuple(image(i).shape), []).append(i)
                out = {}
                for group in by_size.values():
                    feats = net(torch.stack([image(i) for i in group])).numpy()
                    out.update(zip(group, feats))
                return [out[i] for i in idx]

            feats = cached_per_item(cache, ns, keys, compute, batch_size=16,
                                    advance=bars.task("Inception features", len(keys)))
            fa, fb = np.stack(feats[:n]), np.stack(feats[n:])
            p = proto(net, resolution=net.resolution)
            if "fid" in chosen:
                rows.append(_row("FID", fid_mode, fid_from_features(fa, fb), n, p))
            if "kid" in chosen:
                mean, std = kid_from_features(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
                rows.append(_row("KID", fid_mode, mean, n, p))
                rows.append(_row("KID-std", fid_mode, std, n, p))

        if "swd" in chosen:
            real = inp.paired_real if inp.pairs is not None else inp.real
            real_hash = [inp.real_hash[j] for j in inp.pairs] if inp.pairs is not None else inp.real_hash
            variant = swd_variant(swd_shared_patches)
            ns = FeatureCache.namespace(backbone="swd-" + variant, seed=seed)
            key = pair_key(*inp.gen_hash, "|", *real_hash)
            advance = bars.task("SWD", 1)
            cached = cache.get(ns, key)
            if cached is None:
                swd = sliced_wasserstein(inp.generated, real, seed=seed, shared_patches=swd_shared_patches)
                cached = np.array([[int(k.split("_")[1]) if k != "SWDx1e3_avg" else -1, v] for k, v in swd.items()])
                cache.put(ns, key, cached)
            advance()
            for level, value in cached:
                rows.append(_row("SWD" if level < 0 else f"SWD@{int(level)}", variant, value, n, proto()))

        if {"lpips", "lpips-diversity"} & set(chosen):
            rows += _lpips_rows(inp, backbones["lpips"], cache, bars, proto(backbones["lpips"]),
                                gt="lpips" in chosen, diversity="lpips-diversity" in chosen)

        if "vgg" in chosen:
            rows += _vgg_rows(inp, backbones["vgg"], cache, bars, proto)

        if {"psnr", "ssim"} & set(chosen):
            real = inp.paired_real
            if "psnr" in chosen:
                rows.append(_row("PSNR", "skimage", np.mean(psnr(inp.generated, real)), n, proto()))
            if "ssim" in chosen:
                rows.append(_row("SSIM", "skimage", np.mean(ssim(inp.generated, real)), n, proto()))
    df = pd.DataFrame(rows)
    if metrics is None:  # say what "all that apply" left out, and why (never silently)
        df.attrs["skipped"] = {m: why for m, why in _applicable(inp).items() if why is not None}
    return df


def _lpips_rows(inp: _Inputs, net: LPIPSAlex, cache: FeatureCache, bars: _Progress, protocol: Protocol, *,
                gt: bool, diversity: bool, batch_images: int = 16) -> list[dict]:
    """LPIPS-gt (per pair) and LPIPS-diversity (per group) with every generated image
    through the AlexNet trunk at most once: work is done group by group (ungrouped images in
    chunks), several groups per trunk batch, and only for what the cache lacks."""
    n = len(inp.generated)
    ns = FeatureCache.namespace(**net.protocol_key())
    gt_keys = [pair_key("gt", g, inp.real_hash[j]) for g, j in zip(inp.gen_hash, inp.pairs)] if gt else []
    groups = inp.groups if diversity else []
    div_keys = [pair_key("div", *sorted(inp.gen_hash[i] for i in g)) for g in groups]
    d_gt = [cache.get(ns, k) for k in gt_keys]
    d_div = [cache.get(ns, k) for k in div_keys]
    units: list[tuple[int | None, list[int]]] = []  # (group index or None, generated indices)
    grouped: set[int] = set()
    for gi, g in enumerate(groups):
        grouped.update(g)
        if d_div[gi] is None or any(d_gt[i] is None for i in g if gt):
            units.append((gi, list(g)))
    rest = [i for i in range(n) if gt and d_gt[i] is None and i not in grouped]
    units += [(None, rest[s:s + batch_images]) for s in range(0, len(rest), batch_images)]
    advance = bars.task("LPIPS", len(units))
    start = 0
    while start < len(units):
        batch = [units[start]]
        while start + len(batch) < len(units) and sum(len(u[1]) for u in batch) + len(units[start + len(batch)][1]) <= batch_images:
            batch.append(units[start + len(batch)])
        idx = [i for _, members in batch for i in members]
        feats = net.features(inp.generated[idx])
        need = [k for k, i in enumerate(idx) if gt and d_gt[i] is None and i not in idx[:k]]
        if need:
            fr = net.features(inp.real[[inp.pairs[idx[k]] for k in need]])
            d = net.distance([f[need] for f in feats], fr).double().cpu().numpy()
            for k, value in zip(need, d):
                cache.put(ns, gt_keys[idx[k]], value)
                d_gt[idx[k]] = value
        offset = 0
        for gi, members in batch:
            if gi is not None and d_div[gi] is None:
                value = np.float64(diversity_from_features(net, [f[offset:offset + len(members)] for f in feats]))
                cache.put(ns, div_keys[gi], value)
                d_div[gi] = value
            offset += len(members)
        advance(len(batch))
        start += len(batch)
    rows = []
    if gt:
        rows.append(_row("LPIPS-gt", "alex-v0.1", np.mean(d_gt), n, protocol))
    if diversity:
        rows.append(_row("LPIPS-diversity", "alex-v0.1", np.mean(d_div), len(groups), protocol))
    return rows


def _vgg_rows(inp: _Inputs, net: VGG19Features, cache: FeatureCache, bars: _Progress, proto) -> list[dict]:
    """Semantic (pairs) and style (per-image relu1_2 stats) consistency; every image
    goes through VGG at most once."""
    n = len(inp.generated)
    ns = FeatureCache.namespace(**net.protocol_key())
    do_sem = inp.pairs is not None
    do_style = inp.exemplars is not None
    sem_keys = [pair_key("sem", g, inp.real_hash[j]) for g, j in zip(inp.gen_hash, inp.pairs)] if do_sem else []
    sem = [cache.get(ns, k) for k in sem_keys]
    gen_style = [cache.get(ns, "style" + h) for h in inp.gen_hash] if do_style else []
    todo = sorted({i for i, v in enumerate(sem) if v is None} | {i for i, v in enumerate(gen_style) if v is None})
    advance = bars.task("VGG19 features", len(todo))
    for start in range(0, len(todo), 8):
        idx = todo[start:start + 8]
        fo = net(inp.generated[idx])
        if do_style:
            stats = style_stats(fo).cpu().numpy()
            for k, i in enumerate(idx):
                cache.put(ns, "style" + inp.gen_hash[i], stats[k])
                gen_style[i] = stats[k]
        need = [k for k, i in enumerate(idx) if do_sem and sem[i] is None]
        if need:
            fr = net(inp.real[[inp.pairs[idx[k]] for k in need]])
            cos = semantic_cosines({l: fo[l][need] for l in SEMANTIC_LAYERS}, fr).cpu().numpy()
            for c, k in zip(cos, need):
                cache.put(ns, sem_keys[idx[k]], c)
                sem[idx[k]] = c
        advance(len(idx))
    rows = []
    if do_sem:
        s = np.mean(np.stack(sem), axis=0)
        rows += [_row(f"semantic-{l}", "vgg19", v, n, proto(net)) for l, v in zip(SEMANTIC_LAYERS, s)]
    if do_style:
        ex_keys = ["style" + h for h in inp.ex_hash]

        def compute(idx):
            return list(style_stats(net(inp.exemplars[idx])).cpu().numpy())

        ex_style = cached_per_item(cache, ns, ex_keys, compute, batch_size=8, advance=bars.task("VGG19 exemplars", n))
        cos = style_cosines(torch.as_tensor(np.stack(gen_style)), torch.as_tensor(np.stack(ex_style))).numpy().mean(0)
        rows += [_row("style-mean", "vgg19", cos[0], n, proto(net)), _row("style-std", "vgg19", cos[1], n, proto(net))]
    return rows


def _check_groups(groups, n: int) -> list[list[int]] | None:
    if groups is None:
        return None
    groups = [list(map(int, g)) for g in groups]
    for g in groups:
        if any(i < 0 or i >= n for i in g):
            raise EvalkitError(f"group {g} indexes outside the {n} generated images")
    return groups


def evaluate_arrays(generated_uint8, real_uint8, *, exemplars_uint8=None, groups=None, metrics=None,
                    weights: str = "pretrained", cache_dir=None, progress: bool = False, seed: int = 0,
                    fid_mode: str = "clean", kid_subsets: int = 100, kid_subset_size: int = 1000,
                    backbones: dict | None = None, image_format: str = "uint8-array", device: str = "auto",
                    swd_shared_patches: bool = False) -> pd.DataFrame:
    """Every applicable metric on in-memory uint8 ``[N, 3, H, W]`` arrays (NumPy or torch).

    ``generated[i]`` pairs with ``real[i]`` when both have the same shape; ``exemplars[i]``
    is the exemplar of ``generated[i]``; ``groups`` lists generated indices that share a
    conditional input (LPIPS diversity). ``metrics`` picks from :data:`METRICS` (default:
    all that apply). ``cache_dir=None`` uses ``$EVALKIT_CACHE`` or ``~/.cache/evalkit/features``;
    ``False`` disables the cache. ``backbones`` may inject ``inception`` / ``lpips`` / ``vgg``
    modules (tests, custom extractors). ``device``: ``auto`` (CUDA when available), ``cpu``,
    ``cuda[:N]`` for the backbones. With ``metrics=None``, ``df.attrs["skipped"]`` maps each
    metric that does not apply to the reason. ``swd_shared_patches``: SWD with one draw of patch centres
    for both sets (variant ``pggan-shared-patches``) instead of the PGGAN protocol's
    independent draws (variant ``pggan``); see :mod:`evalkit.metrics.swd`.
    """
    gen = as_uint8_batch(generated_uint8, "generated")
    real = as_uint8_batch(real_uint8, "real")
    ex = None if exemplars_uint8 is None else as_uint8_batch(exemplars_uint8, "exemplars")
    if ex is not None and len(ex) != len(gen):
        raise EvalkitError(f"{len(ex)} exemplars for {len(gen)} generated images; pass one exemplar per generated image")
    pairs = list(range(len(gen))) if gen.shape == real.shape else None
    inp = _Inputs(gen, real, pairs, ex, _check_groups(groups, len(gen)), image_format)
    return _evaluate(inp, metrics=metrics, weights=weights, cache_dir=cache_dir, progress=progress, seed=seed,
                     fid_mode=fid_mode, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, backbones=backbones,
                     device=device, swd_shared_patches=swd_shared_patches)


def read_pairs(path: str | Path) -> list[dict]:
    """Rows of a ``pairs.csv`` (``name,query,exemplar_name``)."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"{path}: pairs file not found; pass inputs/pairs.csv of the outputs layout")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"name", "query", "exemplar_name"}
    if not rows or not need <= set(rows[0]):
        raise EvalkitError(f"{path}: expected a CSV with columns name,query,exemplar_name")
    return rows


def evaluate_folders(generated, real, *, exemplars=None, pairs=None, metrics=None, weights: str = "pretrained",
                     cache_dir=None, progress: bool = True, seed: int = 0, fid_mode: str = "clean",
                     kid_subsets: int = 100, kid_subset_size: int = 1000, backbones: dict | None = None,
                     device: str = "auto", swd_shared_patches: bool = False) -> pd.DataFrame:
    """Every applicable metric on folders of images (decoded once each).

    Generated and real images pair by file stem when every generated name has a real one.
    ``exemplars``: folder with the exemplar of each sample, named by the sample's name (or
    by its ``exemplar_name`` from ``pairs``). ``pairs``: ``pairs.csv`` whose ``query`` column
    groups samples for LPIPS diversity. Other arguments: :func:`evaluate_arrays`.
    """
    check_weights_choice(weights)
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
    return _evaluate(inp, metrics=metrics, weights=weights, cache_dir=cache_dir, progress=progress, seed=seed,
                     fid_mode=fid_mode, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, backbones=backbones,
                     device=device, swd_shared_patches=swd_shared_patches)
