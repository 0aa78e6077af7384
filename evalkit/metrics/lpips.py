"""LPIPS (Zhang et al., CVPR 2018, Eq. 1) with the ``lpips`` package: AlexNet trunk, v0.1
linear layers (shipped inside the package), eval mode, inputs in [-1, 1].

    d(x, y) = sum_l mean_{h,w} || w_l * (f̂_l(x) - f̂_l(y)) ||²,   f̂ = unit-normalised channels

:class:`LPIPSAlex` splits ``lpips.LPIPS.forward`` into per-image features (``features``)
and a pairwise combination (``distance``), so diversity over K outputs needs K trunk passes,
not K². The trunk comes from :func:`evalkit.backbones.load_trunk` (``"alexnet"``): the
torchvision AlexNet file verified by :mod:`evalkit.weights` (so lpips never tries to
download), or torchvision's own init under ``seed`` (the trunk of
``lpips.LPIPS(pnet_rand=True)`` built under ``torch.manual_seed(seed)``).

Diversity (RABIT Sec. 4.1, UNITE Sec. 4.1): per conditional input, outputs under 3
exemplars, mean LPIPS over all pairs, then mean over inputs.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from evalkit.backbones import freeze, load_trunk
from evalkit.devices import resolve_device
from evalkit.errors import EvalkitError
from evalkit.features import FeatureCache, pair_key
from evalkit.images import as_uint8_batch

# torchvision alexnet().features index -> lpips alexnet slice holding it
_ALEX_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def _lpips_state(trunk: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of ``lpips.LPIPS(net="alex", version="0.1")``: its input scaling (lpips'
    ``ScalingLayer`` constants), the AlexNet ``trunk`` in lpips' slices, and the v0.1 linear
    layers of the file lpips ships (``lpips/weights/v0.1/alex.pth``, the path ``LPIPS`` itself
    loads; its ``lins`` list holds the same layers)."""
    import lpips

    state = {f"scaling_layer.{k}": v for k, v in lpips.lpips.ScalingLayer().state_dict().items()}
    state.update({f"net.slice{_ALEX_SLICES[int(k.split('.')[0])]}.{k}": v for k, v in trunk.state_dict().items()})
    path = Path(lpips.lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    linear = torch.load(path, map_location="cpu", weights_only=True)
    state.update(linear)
    state.update({k.replace(f"lin{i}.", f"lins.{i}.", 1): v for i in range(5) for k, v in linear.items()
                  if k.startswith(f"lin{i}.")})
    return state


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk, on uint8 ``[B, 3, H, W]`` images (mapped to [-1, 1]
    as ``lpips.im2tensor``)."""

    backbone = "alexnet-lpips-v0.1"
    resize = "none"

    def __init__(self, weights: str = "pretrained", seed: int = 0, device: str | torch.device = "cpu",
                 weights_files: dict | None = None):
        super().__init__()
        self.device = resolve_device(device)
        import lpips

        # before lpips: no download attempt
        trunk, self.weights_id = load_trunk("alexnet", weights, seed, weights_files=weights_files)
        with warnings.catch_warnings(), torch.device("meta"):  # built without drawing: every value is loaded below
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # lpips' `pretrained=` call
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        self.model = model.to_empty(device="cpu")
        self.model.load_state_dict(_lpips_state(trunk), strict=True)
        freeze(self.model).to(self.device)
        self.calls = 0

    @staticmethod
    def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 -> [-1, 1], as ``lpips.im2tensor``."""
        return images_uint8.float() / 127.5 - 1

    @torch.no_grad()
    def features(self, images_uint8: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk activations of each layer (one trunk pass)."""
        import lpips

        self.calls += 1
        x = self.model.scaling_layer(self.to_input(images_uint8.to(self.device)))
        return [lpips.normalize_tensor(f) for f in self.model.net.forward(x)]

    @torch.no_grad()
    def distance(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
        """``[B]`` LPIPS between two feature lists (as ``lpips.LPIPS.forward``), on the model's device."""
        val = 0
        for lin, fa, fb in zip(self.model.lins, feats_a, feats_b):
            val = val + lin((fa - fb) ** 2).mean([2, 3], keepdim=True)
        return val.reshape(-1)

    def protocol_key(self) -> dict:
        return dict(backbone=self.backbone, weights=self.weights_id, resolution="native", resize=self.resize)


def _model(model, weights, seed):
    return model if model is not None else LPIPSAlex(weights, seed)


def lpips_distance(images_a, images_b, *, weights: str = "pretrained", seed: int = 0, batch_size: int = 16,
                   model: LPIPSAlex | None = None) -> np.ndarray:
    """Per-pair LPIPS between uint8 ``[N, 3, H, W]`` sets (output vs ground truth)."""
    a, b = as_uint8_batch(images_a, "LPIPS images_a"), as_uint8_batch(images_b, "LPIPS images_b")
    if a.shape != b.shape:
        raise EvalkitError(f"LPIPS needs paired images of equal shape, got {list(a.shape)} and {list(b.shape)}")
    net = _model(model, weights, seed)
    out = [net.distance(net.features(a[i:i + batch_size]), net.features(b[i:i + batch_size]))
           for i in range(0, len(a), batch_size)]
    return torch.cat(out).cpu().numpy().astype(np.float64)


def diversity_from_features(net: LPIPSAlex, feats: list[torch.Tensor]) -> float:
    """Mean LPIPS over all pairs of one group, from its ``K`` images' :meth:`LPIPSAlex.features`."""
    pairs = list(itertools.combinations(range(feats[0].shape[0]), 2))
    i = torch.tensor([p[0] for p in pairs], device=feats[0].device)
    j = torch.tensor([p[1] for p in pairs], device=feats[0].device)
    return float(net.distance([f[i] for f in feats], [f[j] for f in feats]).double().mean())


def group_diversity(net: LPIPSAlex, group_uint8: torch.Tensor) -> float:
    """Mean LPIPS over all pairs of one group ``[K, 3, H, W]`` (K trunk passes in one batch)."""
    return diversity_from_features(net, net.features(group_uint8))


def lpips_diversity(groups, *, weights: str = "pretrained", seed: int = 0, model: LPIPSAlex | None = None) -> float:
    """Diversity: ``groups`` is uint8 ``[G, K, 3, H, W]`` or a list of ``[K_g, 3, H, W]``
    (outputs of one conditional input under K_g >= 2 exemplars)."""
    groups = list(groups)
    if not groups:
        raise EvalkitError("LPIPS diversity needs at least one group of outputs")
    net = _model(model, weights, seed)
    values = []
    for g, group in enumerate(groups):
        group = as_uint8_batch(group, f"LPIPS diversity group {g}")
        if group.shape[0] < 2:
            raise EvalkitError(f"LPIPS diversity group {g} has {group.shape[0]} output; each conditional input needs >= 2 (papers: 3)")
        values.append(group_diversity(net, group))
    return float(np.mean(values))


# -- the ``lpips`` and ``lpips-diversity`` families (evalkit.metrics.registry) -------------
def _lpips_rows(ctx, *, gt: bool, diversity: bool, batch_images: int = 16) -> list[dict]:
    """LPIPS-gt (per pair) and LPIPS-diversity (per group) with every generated image
    through the AlexNet trunk at most once: work is done group by group (ungrouped images in
    chunks), several groups per trunk batch, and only for what the cache lacks."""
    inp, net, cache, bars = ctx.inputs, ctx.backbones["lpips"], ctx.cache, ctx.bars
    protocol = ctx.protocol(net)
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
    ctx.memo["lpips-gt"] = d_gt
    rows = []
    if gt:
        rows.append(ctx.row("LPIPS-gt", "alex-v0.1", np.mean(d_gt), n, protocol))
    if diversity:
        rows.append(ctx.row("LPIPS-diversity", "alex-v0.1", np.mean(d_div), len(groups), protocol))
    return rows


def _lpips_compute(ctx) -> list[dict]:
    """LPIPS-gt, with LPIPS-diversity in the same trunk pass when it is chosen too."""
    both = "lpips-diversity" in ctx.chosen
    rows = _lpips_rows(ctx, gt=True, diversity=both)
    if both:
        ctx.memo["lpips-diversity rows"] = rows[1:]
    return rows[:1]


def _lpips_diversity_compute(ctx) -> list[dict]:
    if "lpips-diversity rows" in ctx.memo:
        return ctx.memo.pop("lpips-diversity rows")
    return _lpips_rows(ctx, gt=False, diversity=True)


def _lpips_per_item(ctx, row: str):
    from evalkit.metrics.registry import PerItem

    _lpips_rows(ctx, gt=True, diversity=False)
    return PerItem(np.asarray(ctx.memo["lpips-gt"], dtype=np.float64))


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, RowSpec, register_backbone, register_metric

    register_backbone("lpips", lambda options, device: LPIPSAlex(options.weights, options.seed, device=device,
                                                                 weights_files=options.weights_files))
    register_metric(MetricSpec(
        "lpips", rows=(RowSpec("LPIPS-gt", higher_is_better=False, decimals=3),), compute=_lpips_compute,
        needs=("pairs",), backbone="lpips", per_item=_lpips_per_item, shards=True, order=40, min_size=31))
    register_metric(MetricSpec(
        "lpips-diversity", rows=(RowSpec("LPIPS-diversity", higher_is_better=True, decimals=3),),
        compute=_lpips_diversity_compute, needs=("groups",), backbone="lpips", shards=True, order=50, min_size=31))


_register()
