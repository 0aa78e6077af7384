"""ADE20K in CoCosNet's layout (``data/ade20k_dataset.py``).

``<root>/training/ADE_train_*.jpg`` and ``<root>/validation/ADE_val_*.jpg`` with the
``.png`` label map beside each image (150 classes, 0 = unlabeled). Test queries are the
validation images, their exemplars training images (``ade20k_ref_test.txt``).

Two encodings, both 151 channels:

- ``ade20k`` (CoCosNet, ``contain_dontcare_label``): channel ``v`` for label value ``v``,
  so unlabeled stays channel 0 and class ``c`` (1..150) is channel ``c``;
- ``ade20k-spade`` (SPADE's ``ADE20KDataset.postprocess``): ``v - 1``, unlabeled → 150.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.data.pairs import PairedDataset, check_label_range, open_label
from evalkit.data.registry import register_dataset
from evalkit.data.transforms import TransformParams, apply_pil

LAYOUT = "training/ADE_train_*.jpg|png, validation/ADE_val_*.jpg|png"
NUM_CLASSES = 150


def one_hot(label: np.ndarray, k: int) -> torch.Tensor:
    """``[k, H, W]`` float one-hot of an index map."""
    t = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
    return torch.zeros((k, *t.shape), dtype=torch.float32).scatter_(0, t[None], 1.0)


class ADE20K(PairedDataset):
    name = "ade20k"
    cond_channels = NUM_CLASSES + 1
    num_classes = NUM_CLASSES + 1
    pair_stem = "ade20k"

    def __init__(self, *, spade_labels: bool = False, **kw):
        self.spade_labels = spade_labels
        if spade_labels:
            self.name = "ade20k-spade"
        super().__init__(**kw)

    def _folder(self, exemplar: bool) -> Path:
        return self.root / ("training" if exemplar or self.split == "train" else "validation")

    def split_source(self) -> str:
        return f"ADE_{'train' if self.split == 'train' else 'val'}_*.jpg in {self._folder(False)}"

    def list_keys(self) -> list[str]:
        phase = "train" if self.split == "train" else "val"
        folder = self._folder(False)
        return sorted(p.name for p in folder.glob(f"*_{phase}_*.jpg")) if folder.is_dir() else []

    def orphan_problems(self) -> list[str]:
        phase = "train" if self.split == "train" else "val"
        folder = self._folder(False)
        return [f"image not found for label map {p}: expected {p.with_suffix('.jpg')}"
                for p in sorted(folder.glob(f"*_{phase}_*.png")) if not p.with_suffix(".jpg").is_file()]

    def image_path(self, key: str, exemplar: bool) -> Path:
        return self._folder(exemplar) / key

    def label_files(self, key: str, exemplar: bool) -> list[Path]:
        return [self.image_path(key, exemplar).with_suffix(".png")]

    def encode(self, key, exemplar, params: TransformParams, image: Image.Image):
        path = self.label_files(key, exemplar)[0]
        raw = open_label(path)
        self.check_same_size(image, raw, path)
        check_label_range(raw, np.arange(NUM_CLASSES + 1), path)
        lab = np.asarray(apply_pil(Image.fromarray(raw), params, Image.NEAREST)).astype(np.int64)
        if self.spade_labels:
            lab = np.where(lab == 0, NUM_CLASSES, lab - 1)
        return one_hot(lab, NUM_CLASSES + 1), torch.from_numpy(lab)


@register_dataset("ade20k", description="ADE20K, CoCosNet encoding: 151 channels, unlabeled = channel 0",
                  needs_root=True, cond_kind="label", layout=LAYOUT, paired=True)
def _ade20k(*, root, split, size, n, seed, **kw) -> ADE20K:
    return ADE20K(root=root, split=split, size=size, n=n, seed=seed, **kw)


@register_dataset("ade20k-spade", description="ADE20K, SPADE encoding: labels shifted by one, unlabeled = channel 150",
                  needs_root=True, cond_kind="label", layout=LAYOUT, paired=True)
def _ade20k_spade(*, root, split, size, n, seed, **kw) -> ADE20K:
    return ADE20K(root=root, split=split, size=size, n=n, seed=seed, spade_labels=True, **kw)
