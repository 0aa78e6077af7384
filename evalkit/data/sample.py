"""The typed sample every dataset yields, its batch, and the two visualisers.

A :class:`Sample` is one exemplar-based translation problem: the conditional input of
the query (``cond``), its ground truth (``image``), an exemplar image of a different
layout (``exemplar``) and the exemplar's own conditional input (``exemplar_cond``).
``self_ref`` marks CoCosNet's self-reference training pairs, where the exemplar is the
ground truth re-cropped and flipped (CoCosNet, Sec. 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import default_collate

__all__ = ["Sample", "Batch", "collate", "to_uint8_image", "visualise_cond", "label_palette"]


@dataclass
class Sample:
    """One query/exemplar problem. Images are float ``[3, H, W]`` in [-1, 1]."""

    cond: torch.Tensor  # float [C, H, W]
    image: torch.Tensor  # float [3, H, W] in [-1, 1], ground truth
    exemplar: torch.Tensor  # float [3, H, W] in [-1, 1]
    exemplar_cond: torch.Tensor  # float [C, H, W]
    self_ref: bool
    name: str  # unique sample id, safe as a file stem
    exemplar_name: str
    label: torch.Tensor | None = None  # long [H, W] class index map, when the condition has one
    exemplar_label: torch.Tensor | None = None  # long [H, W], the exemplar's index map
    query: str = ""  # groups samples that share a query (several exemplars per query)

    def __post_init__(self) -> None:
        if not self.query:
            self.query = self.name


@dataclass
class Batch:
    """Samples stacked along a new first dimension; names stay Python lists."""

    cond: torch.Tensor
    image: torch.Tensor
    exemplar: torch.Tensor
    exemplar_cond: torch.Tensor
    self_ref: torch.Tensor  # bool [B]
    name: list[str]
    exemplar_name: list[str]
    label: torch.Tensor | None = None
    exemplar_label: torch.Tensor | None = None
    query: list[str] | None = None

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return Batch(**moved)

    def __len__(self) -> int:
        return len(self.name)


def _stack_optional(values: list[torch.Tensor | None]) -> torch.Tensor | None:
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        raise ValueError("collate: some samples have a label map and others do not")
    return default_collate(values)


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into a :class:`Batch` (use as a DataLoader ``collate_fn``)."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    # default_collate stacks tensors straight into shared memory inside DataLoader workers
    return Batch(
        cond=default_collate([s.cond for s in samples]),
        image=default_collate([s.image for s in samples]),
        exemplar=default_collate([s.exemplar for s in samples]),
        exemplar_cond=default_collate([s.exemplar_cond for s in samples]),
        self_ref=torch.tensor([bool(s.self_ref) for s in samples], dtype=torch.bool),
        name=[s.name for s in samples],
        exemplar_name=[s.exemplar_name for s in samples],
        label=_stack_optional([s.label for s in samples]),
        exemplar_label=_stack_optional([s.exemplar_label for s in samples]),
        query=[s.query for s in samples],
    )


def to_uint8_image(tensor: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` float in [-1, 1] → ``[H, W, 3]`` uint8, quantised as everywhere in
    evalkit (:func:`evalkit.images.to_uint8`: round half up, clamp)."""
    from evalkit.images import to_uint8

    t = tensor.detach().float().cpu()
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"to_uint8_image expects [3, H, W], got {tuple(t.shape)}")
    return to_uint8(t).permute(1, 2, 0).numpy()


def label_palette(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 colours: PASCAL-VOC bit-interleaved palette (0 = black), as SPADE's ``labelcolormap``."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        cid = i
        for j in range(8):
            r |= ((cid >> 0) & 1) << (7 - j)
            g |= ((cid >> 1) & 1) << (7 - j)
            b |= ((cid >> 2) & 1) << (7 - j)
            cid >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _is_one_hot(cond: torch.Tensor) -> bool:
    binary = bool(((cond == 0) | (cond == 1)).all())
    return binary and bool((cond.sum(0) <= 1).all())


def visualise_cond(cond: torch.Tensor, kind: str | None = None) -> np.ndarray:
    """Colour-code a conditional input ``[C, H, W]`` as ``[H, W, 3]`` uint8.

    ``kind``: ``"label"`` (one-hot → palette colour of the arg-max class, unlabeled
    black), ``"pose"`` (the first three channels are the rendered RGB skeleton in
    [-1, 1] or [0, 1]), ``"channels"`` (each channel a palette colour, composited by
    maximum: edges, distance maps, heat maps). ``None`` picks ``label`` for a one-hot
    input and ``channels`` otherwise.
    """
    c = cond.detach().float().cpu()
    if c.dim() != 3:
        raise ValueError(f"visualise_cond expects [C, H, W], got {tuple(c.shape)}")
    kind = kind or ("label" if _is_one_hot(c) else "channels")
    if kind == "label":
        idx = c.argmax(0).numpy()
        rgb = label_palette(c.shape[0])[idx]
        rgb[c.sum(0).numpy() == 0] = 0
        return rgb
    if kind == "pose":
        rgb = c[:3]
        if float(rgb.min()) < 0:
            rgb = (rgb + 1) / 2
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if kind == "channels":
        lo = c.amin(dim=(1, 2), keepdim=True)
        hi = c.amax(dim=(1, 2), keepdim=True)
        norm = ((c - lo) / (hi - lo).clamp_min(1e-8)).numpy()  # [C, H, W] in [0, 1]
        palette = label_palette(c.shape[0] + 1)[1:].astype(np.float32)  # skip black
        palette[0] = 255.0  # first channel (edges, skeleton) in white
        out = (norm[:, :, :, None] * palette[:, None, None, :]).max(axis=0)
        return out.round().clip(0, 255).astype(np.uint8)
    raise ValueError(f"visualise_cond: unknown kind {kind!r} (label, pose or channels)")
