"""Semantic and style consistency as UNITE's released scripts compute them (preset
``unite2021``): fnzhan/UNITE ``util/vgg_seman_relevance.py`` (semantic, VGG42/VGG52) and
``util/vgg_style_relevance.py`` (style, VGG_M/VGG_V), restated, not copied.

Network: the Caffe-converted VGG19 of ``models/vgg19_conv.pth`` in the scripts' own layout
(:class:`evalkit.backbones.CaffeVGG19`, weights key ``vgg19-caffe``). Its input, given RGB
``x``: BGR, minus ``(0.40760392, 0.45795686, 0.48501961)``, times 255 (``vgg_preprocess``).

- semantic (``vgg_seman_relevance.py:143-218``): pixels as float **0..255** (no ``/ 255``: the
  script's bug, reproduced), relu4_2 / relu5_2 of ground truth and output, each
  nearest-upsampled to the image size; per image ``sum_k cos(mean_k F_gt, mean_k F_out) *
  |R_k| / |image|`` over the values k of the label map (``cal_feat_dist``; a zero mean vector
  has cosine 0, as sklearn's ``normalize``); mean over images; pairs by file name.
- style (``vgg_style_relevance.py:166-213``): pixels ``/ 255``, relu1_2 of output and
  exemplar flattened over H*W; ``cos`` (``eps=1e-6``) of the channel means (VGG_M, row
  ``style-mean``) and of the unbiased channel variances (``torch.var``; VGG_V, row
  ``style-std``); output i against the exemplar of sample i+1 of the listing (the
  off-by-one), the last against the first (the script as published indexes past the end).

Values are computed in float64 from the network's float32 activations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CAFFE_BGR_MEAN = (0.40760392, 0.45795686, 0.48501961)  # the scripts' vgg_preprocess, BGR, on the [0, 1] scale
SEMANTIC_LAYERS = ("relu4_2", "relu5_2")
STYLE_LAYER = "relu1_2"
VARIANT = "vgg19-caffe-unite2021"


class UniteVGG(nn.Module):
    """The scripts' VGG19 (:class:`evalkit.backbones.CaffeVGG19`) on uint8 ``[B, 3, H, W]``
    images; ``scale="unit"`` divides the pixels by 255 first (style script), ``"raw"`` does
    not (semantic script). Weights: the registered ``vgg19_conv.pth`` (``weights="pretrained"``),
    a seeded random initialisation, or ``weights_file`` (loaded strictly, recorded as
    ``unregistered:<sha256>``)."""

    backbone = "vgg19-caffe"
    resize = "none"

    def __init__(self, weights: str = "pretrained", seed: int = 0, *, weights_file=None, device="cpu"):
        super().__init__()
        from evalkit.backbones import load_trunk
        from evalkit.devices import resolve_device

        self.device = resolve_device(device)
        self.net, self.weights_id = load_trunk("vgg19-caffe", weights, seed, weights_file=weights_file,
                                               device=self.device)
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1))
        self.to(self.device)
        self.calls = 0

    def preprocess(self, images_uint8: torch.Tensor, scale: str) -> torch.Tensor:
        x = images_uint8.to(self.device).float()
        if scale == "unit":
            x = x / 255.0
        return (x[:, [2, 1, 0]] - self.mean) * 255

    @torch.no_grad()
    def forward(self, images_uint8: torch.Tensor, layers: tuple[str, ...], scale: str) -> dict[str, torch.Tensor]:
        self.calls += 1
        return self.net(self.preprocess(images_uint8, scale), layers)

    def protocol_key(self) -> dict:
        return dict(backbone=self.backbone, weights=self.weights_id, resolution="native", resize=self.resize,
                    preset="unite2021")


def region_cosine(feat_gt: torch.Tensor, feat_out: torch.Tensor, label: np.ndarray) -> float:
    """``cal_feat_dist`` of ``vgg_seman_relevance.py``: ``[C, h, w]`` features of ground truth
    and output, nearest-upsampled to the ``[H, W]`` label map; the area-weighted sum over its
    label values of the cosine of the two region means."""
    h, w = label.shape
    a = F.interpolate(feat_gt[None].double(), size=(h, w), mode="nearest")[0].reshape(feat_gt.shape[0], -1)
    b = F.interpolate(feat_out[None].double(), size=(h, w), mode="nearest")[0].reshape(feat_out.shape[0], -1)
    values, inverse = np.unique(np.asarray(label).reshape(-1), return_inverse=True)
    onehot = torch.zeros(h * w, len(values), dtype=torch.float64, device=a.device)
    onehot[torch.arange(h * w), torch.as_tensor(inverse.reshape(-1), device=a.device)] = 1
    count = onehot.sum(0)
    ma, mb = (a @ onehot) / count, (b @ onehot) / count  # [C, K] region means
    na, nb = ma.norm(dim=0), mb.norm(dim=0)
    cos = (ma * mb).sum(0) / torch.where((na * nb) > 0, na * nb, torch.ones_like(na))
    return float((cos * count).sum() / (h * w))


def style_stats(feat: torch.Tensor) -> torch.Tensor:
    """``[B, 2, C]``: channel means and unbiased channel variances of ``[B, C, H, W]`` relu1_2."""
    f = feat.double().flatten(2)
    return torch.stack([f.mean(2), f.var(2, unbiased=True)], dim=1)


def style_cosines(stats_out: torch.Tensor, stats_ex: torch.Tensor) -> torch.Tensor:
    """``[N, 2]``: cosine (eps 1e-6, ``nn.CosineSimilarity(dim=1)``) of means and of variances,
    output i against exemplar ``(i + 1) % N`` (the script's ``nms[i+1]``)."""
    shifted = torch.roll(stats_ex, shifts=-1, dims=0)
    return F.cosine_similarity(stats_out, shifted, dim=2, eps=1e-6)


def consistency(net: UniteVGG, outputs, ground_truth=None, labels=None, exemplars=None,
                batch_size: int = 4) -> dict[str, float]:
    """The rows of the ``unite2021`` vgg family on uint8 ``[N, 3, H, W]`` images (see module
    docstring). Semantic needs ``ground_truth`` and ``labels`` (``N`` ``[H, W]`` label maps);
    style needs ``exemplars`` (``exemplars[i]`` is the exemplar of ``outputs[i]``)."""
    from evalkit.images import as_uint8_batch

    out = as_uint8_batch(outputs, "outputs")
    result: dict[str, float] = {}
    if ground_truth is not None and labels is not None:
        gt = as_uint8_batch(ground_truth, "ground truth")
        scores = []
        for i in range(0, len(out), batch_size):
            fo = net(out[i:i + batch_size], SEMANTIC_LAYERS, "raw")
            fg = net(gt[i:i + batch_size], SEMANTIC_LAYERS, "raw")
            for k in range(fo[SEMANTIC_LAYERS[0]].shape[0]):
                scores.append([region_cosine(fg[l][k], fo[l][k], labels[i + k]) for l in SEMANTIC_LAYERS])
        result.update({f"semantic-{l}": float(v) for l, v in zip(SEMANTIC_LAYERS, np.mean(scores, axis=0))})
    if exemplars is not None:
        ex = as_uint8_batch(exemplars, "exemplars")
        so = torch.cat([style_stats(net(out[i:i + batch_size], (STYLE_LAYER,), "unit")[STYLE_LAYER])
                        for i in range(0, len(out), batch_size)])
        se = torch.cat([style_stats(net(ex[i:i + batch_size], (STYLE_LAYER,), "unit")[STYLE_LAYER])
                        for i in range(0, len(ex), batch_size)])
        cos = style_cosines(so, se).mean(0).cpu()
        result.update({"style-mean": float(cos[0]), "style-std": float(cos[1])})
    return result


# -- the vgg family under the unite2021 preset (called from evalkit.metrics.vgg) ------------------
def compute(ctx) -> list[dict]:
    """Rows of the ``vgg`` family under ``unite2021``: semantic where the inputs are paired
    and carry label maps, style where they carry exemplars; per-image values cached."""
    from evalkit.features import FeatureCache, cached_per_item, pair_key
    from evalkit.images import content_hash

    inp, net, cache, bars = ctx.inputs, ctx.backbones["vgg"], ctx.cache, ctx.bars
    n = len(inp.generated)
    ns = FeatureCache.namespace(**net.protocol_key())
    rows = []
    labels = getattr(inp, "labels", None)
    if inp.pairs is not None and labels is not None:
        keys = [pair_key("usem", g, inp.real_hash[j], content_hash(lab))
                for g, j, lab in zip(inp.gen_hash, inp.pairs, labels)]

        def semantic(idx):
            fo = net(inp.generated[idx], SEMANTIC_LAYERS, "raw")
            fg = net(inp.real[[inp.pairs[i] for i in idx]], SEMANTIC_LAYERS, "raw")
            return [np.array([region_cosine(fg[l][k], fo[l][k], labels[i]) for l in SEMANTIC_LAYERS])
                    for k, i in enumerate(idx)]

        sem = np.stack(cached_per_item(cache, ns, keys, semantic, batch_size=4,
                                       advance=bars.task("VGG19 (Caffe) semantic", n))).mean(0)
        rows += [ctx.row(f"semantic-{l}", VARIANT, v, n, ctx.protocol(net)) for l, v in zip(SEMANTIC_LAYERS, sem)]
    if inp.exemplars is not None:
        def stats(images):
            def run(idx):
                return list(style_stats(net(images[idx], (STYLE_LAYER,), "unit")[STYLE_LAYER]).cpu().numpy())
            return run

        so = cached_per_item(cache, ns, ["ustyle" + h for h in inp.gen_hash], stats(inp.generated), batch_size=8,
                             advance=bars.task("VGG19 (Caffe) style", n))
        se = cached_per_item(cache, ns, ["ustyle" + h for h in inp.ex_hash], stats(inp.exemplars), batch_size=8,
                             advance=bars.task("VGG19 (Caffe) exemplars", n))
        cos = style_cosines(torch.as_tensor(np.stack(so)), torch.as_tensor(np.stack(se))).mean(0).numpy()
        rows += [ctx.row("style-mean", VARIANT, cos[0], n, ctx.protocol(net)),
                 ctx.row("style-std", VARIANT, cos[1], n, ctx.protocol(net))]
    return rows
