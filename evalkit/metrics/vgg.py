"""VGG19 semantic and style consistency (UNITE, Zhan et al., CVPR 2021, Sec. 4.1 / Table 2,
extending Zhang et al., CoCosNet, CVPR 2020, Sec. 4.1).

One definition, torchvision VGG19 (ImageNet weights ``vgg19-dcbb9e9d.pth``), images at
their own resolution, ImageNet mean/std normalisation:

- semantic consistency (output vs ground truth), per layer l in {relu4_2, relu5_2}:
  ``cos(vec(F_l(out)), vec(F_l(gt)))`` over the flattened C*H*W activations, averaged over
  images;
- style consistency (output vs its exemplar), on relu1_2: ``cos(mu(out), mu(ex))`` of the
  channel-wise spatial means ("style-mean", VGG_M) and ``cos(sigma(out), sigma(ex))`` of the
  channel-wise spatial standard deviations (population std; "style-std", VGG_V), averaged.

How it differs from the official scripts: they load Caffe-converted VGG19 weights (BGR,
0..255 input with mean subtraction), so absolute values differ from these; one of them
compares channel-wise variance instead of std and pairs each output with the exemplar of
the next listed sample (an off-by-one). evalkit keeps the definition the papers state;
``--protocol unite2021`` computes the scripts' numbers instead (:mod:`evalkit.protocols.unite`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError
from evalkit.features import FeatureCache, VGG19Features, cached_per_item, pair_key
from evalkit.images import as_uint8_batch

SEMANTIC_LAYERS = ("relu4_2", "relu5_2")


def _flat_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``[B, C, H, W]`` maps as ``[B, C*H*W]`` float64, both in ``a``'s memory order: a
    cosine does not depend on an order both vectors share, and a channels_last map is then
    not copied into NCHW first."""
    if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
        a, b = a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)
    return a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()


def semantic_cosines(feats_out: dict, feats_gt: dict) -> torch.Tensor:
    """``[B, 2]`` cosine of flattened relu4_2 / relu5_2 activations."""
    return torch.stack([F.cosine_similarity(*_flat_pair(feats_out[l], feats_gt[l]), dim=1)
                        for l in SEMANTIC_LAYERS], dim=1)


def style_stats(feats: dict) -> torch.Tensor:
    """``[B, 2, 64]`` (float64): channel-wise spatial mean and population std of relu1_2.

    The corrected two-pass algorithm (Chan, Golub & LeVeque 1983, Eq. 1.7) in the
    activations' own float32 and layout: ``d = f - mean(f)``, ``mean = mean(f) + mean(d)``,
    ``var = mean(d²) - mean(d)²`` (the second term cancels the first mean's rounding, which
    would otherwise dominate a channel whose spread is far below its mean). Within 3e-7 relative
    of the float64 ``mean`` / ``std`` of a flattened copy, at a fifth of its cost (no float64
    copy, no NCHW copy of a channels_last map)."""
    f = feats["relu1_2"]
    first = f.mean((2, 3))
    d = f - first[:, :, None, None]
    shift = d.mean((2, 3))
    var = d.square_().mean((2, 3)) - shift * shift
    return torch.stack([first + shift, var.clamp_(min=0).sqrt()], dim=1).double()


def style_cosines(stats_out: torch.Tensor, stats_ex: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` cosine of channel means and of channel stds."""
    return F.cosine_similarity(stats_out, stats_ex, dim=2)


def vgg_consistency(outputs, ground_truth=None, exemplars=None, *, weights: str = "pretrained", seed: int = 0,
                    batch_size: int = 8, model: VGG19Features | None = None) -> dict[str, float]:
    """Mean semantic (needs ``ground_truth``) and style (needs ``exemplars``) consistency of
    uint8 ``[N, 3, H, W]`` outputs. Keys: ``semantic-relu4_2``, ``semantic-relu5_2``,
    ``style-mean``, ``style-std``."""
    out = as_uint8_batch(outputs, "VGG outputs")
    if ground_truth is None and exemplars is None:
        raise EvalkitError("vgg_consistency needs ground_truth (semantic) and/or exemplars (style)")
    gt = None if ground_truth is None else as_uint8_batch(ground_truth, "VGG ground truth")
    ex = None if exemplars is None else as_uint8_batch(exemplars, "VGG exemplars")
    for name, other in (("ground truth", gt), ("exemplars", ex)):
        if other is not None and other.shape[0] != out.shape[0]:
            raise EvalkitError(f"VGG consistency: {out.shape[0]} outputs but {other.shape[0]} {name}; pass one per output")
    if gt is not None and gt.shape != out.shape:
        raise EvalkitError(f"VGG semantic consistency needs outputs and ground truth of equal size, got {list(out.shape)} and {list(gt.shape)}")
    net = model if model is not None else VGG19Features(weights, seed)
    sem, sty = [], []
    for i in range(0, len(out), batch_size):
        fo = net(out[i:i + batch_size])
        if gt is not None:
            sem.append(semantic_cosines(fo, net(gt[i:i + batch_size])))
        if ex is not None:
            sty.append(style_cosines(style_stats(fo), style_stats(net(ex[i:i + batch_size]))))
    result = {}
    if sem:
        s = torch.cat(sem).mean(0)
        result.update({f"semantic-{l}": float(v) for l, v in zip(SEMANTIC_LAYERS, s.cpu())})
    if sty:
        s = torch.cat(sty).mean(0).cpu()
        result.update({"style-mean": float(s[0]), "style-std": float(s[1])})
    return result


# -- the ``vgg`` family (evalkit.metrics.registry) -----------------------------------------
def _vgg_compute(ctx) -> list[dict]:
    """Semantic (pairs) and style (per-image relu1_2 stats) consistency; every image
    goes through VGG at most once. Under ``--protocol unite2021``: UNITE's scripts
    (:func:`evalkit.protocols.unite.compute`)."""
    from evalkit import protocols

    if protocols.get(ctx.options.protocol).consistency == "unite2021":
        from evalkit.protocols import unite

        return unite.compute(ctx)
    inp, net, cache, bars = ctx.inputs, ctx.backbones["vgg"], ctx.cache, ctx.bars
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
        rows += [ctx.row(f"semantic-{l}", "vgg19", v, n, ctx.protocol(net)) for l, v in zip(SEMANTIC_LAYERS, s)]
    if do_style:
        ex_keys = ["style" + h for h in inp.ex_hash]

        def compute(idx):
            return list(style_stats(net(inp.exemplars[idx])).cpu().numpy())

        ex_style = cached_per_item(cache, ns, ex_keys, compute, batch_size=8, advance=bars.task("VGG19 exemplars", n))
        cos = style_cosines(torch.as_tensor(np.stack(gen_style)), torch.as_tensor(np.stack(ex_style))).numpy().mean(0)
        rows += [ctx.row("style-mean", "vgg19", cos[0], n, ctx.protocol(net)),
                 ctx.row("style-std", "vgg19", cos[1], n, ctx.protocol(net))]
    return rows


def _build_vgg(options, device):
    """torchvision's VGG19, or under ``--protocol unite2021`` the scripts' Caffe VGG19."""
    from evalkit import protocols

    if protocols.get(options.protocol).consistency == "unite2021":
        from evalkit.protocols.unite import UniteVGG

        return UniteVGG(options.weights, options.seed, weights_file=options.weights_files.get("vgg19-caffe"),
                        device=device)
    return VGG19Features(options.weights, options.seed, device=device, weights_files=options.weights_files)


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, RowSpec, register_backbone, register_metric

    register_backbone("vgg", _build_vgg)
    register_metric(MetricSpec(
        "vgg", rows=tuple(RowSpec(name, higher_is_better=True, decimals=3) for name in
                          (*(f"semantic-{l}" for l in SEMANTIC_LAYERS), "style-mean", "style-std")),
        compute=_vgg_compute, needs_any=("pairs", "exemplars"), backbone="vgg", shards=True, order=60, min_size=16))


_register()
