"""CoCosNet's train/test transforms (``data/base_dataset.py``, preprocess ``resize_and_crop``).

test: resize to ``size`` x ``size``. train: resize to ``load = round(size · 286/256)``
(286 for 256), random ``size`` crop, horizontal flip with probability 1/2. Images use
bicubic, label maps nearest. The same parameters are applied to an image and its label
map; an exemplar draws its own. A self-reference exemplar (CoCosNet Sec. 3.3) is the
ground truth passed through freshly drawn train parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["TransformParams", "get_params", "apply_pil", "apply_tensor", "self_reference", "load_size_for"]


def load_size_for(size: int) -> int:
    """CoCosNet's ``load_size`` for a ``crop_size`` (286 for 256)."""
    return int(round(size * 286 / 256))


@dataclass(frozen=True)
class TransformParams:
    load: int  # square resize target
    size: int  # crop size
    x: int
    y: int
    flip: bool


def get_params(rng: np.random.Generator, split: str, size: int) -> TransformParams:
    """Draw the resize/crop/flip parameters of one image (no randomness at test time)."""
    if split == "test":
        return TransformParams(size, size, 0, 0, False)
    load = load_size_for(size)
    x, y = (int(v) for v in rng.integers(0, load - size + 1, size=2))
    return TransformParams(load, size, x, y, bool(rng.uniform() > 0.5))


def apply_pil(img: Image.Image, p: TransformParams, resample: int) -> Image.Image:
    """Resize → crop → flip a PIL image (``Image.BICUBIC`` for photos, ``Image.NEAREST`` for labels)."""
    out = img.resize((p.load, p.load), resample)
    if (p.x, p.y, p.load) != (0, 0, p.size):
        out = out.crop((p.x, p.y, p.x + p.size, p.y + p.size))
    return out.transpose(Image.FLIP_LEFT_RIGHT) if p.flip else out


def apply_tensor(t: torch.Tensor, p: TransformParams, mode: str) -> torch.Tensor:
    """The same on a ``[C, H, W]`` tensor (``mode``: ``"bicubic"`` or ``"nearest"``)."""
    x = t[None].float()
    kw = {"align_corners": False} if mode != "nearest" else {}
    x = F.interpolate(x, size=(p.load, p.load), mode=mode, **kw)[0]
    x = x[:, p.y:p.y + p.size, p.x:p.x + p.size]
    x = x.flip(-1) if p.flip else x
    return x.to(t.dtype) if mode == "nearest" else x


def self_reference(image: torch.Tensor, cond: torch.Tensor, label: torch.Tensor | None,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Exemplar, its condition and label map for a self-reference pair: the ground truth
    re-cropped and flipped with freshly drawn train parameters."""
    p = get_params(rng, "train", image.shape[-1])
    ex = apply_tensor(image, p, "bicubic").clamp(-1, 1)
    ex_cond = apply_tensor(cond, p, "nearest")
    ex_label = None if label is None else apply_tensor(label[None], p, "nearest")[0]
    return ex, ex_cond, ex_label
