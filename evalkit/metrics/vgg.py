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
the previous sample (an off-by-one). evalkit keeps the definition the papers state.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError
from evalkit.features import VGG19Features
from evalkit.images import as_uint8_batch

SEMANTIC_LAYERS = ("relu4_2", "relu5_2")


def semantic_cosines(feats_out: dict, feats_gt: dict) -> torch.Tensor:
    """``[B, 2]`` cosine of flattened relu4_2 / relu5_2 activations."""
    return torch.stack([F.cosine_similarity(feats_out[l].flatten(1).double(), feats_gt[l].flatten(1).double(), dim=1)
                        for l in SEMANTIC_LAYERS], dim=1)


def style_stats(feats: dict) -> torch.Tensor:
    """``[B, 2, 64]``: channel-wise spatial mean and population std of relu1_2."""
    f = feats["relu1_2"].double().flatten(2)
    return torch.stack([f.mean(2), f.std(2, unbiased=False)], dim=1)


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
