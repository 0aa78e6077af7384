"""COCO-Stuff in SPADE's layout (``data/coco_dataset.py``).

``<root>/{train,val}_img/<id>.jpg``, ``{train,val}_label/<id>.png`` (182 classes
0..181, 255 = unlabeled) and ``{train,val}_inst/<id>.png`` (instance ids). Encoding
(SPADE, ``contain_dontcare_label``): 255 → 182, one-hot over 183 channels, plus one
instance-boundary channel (1 where a 4-neighbour has another instance id) = 184.
Exemplars come from the train split (pair list ``cocostuff_ref[_test].txt``, built with
``evalkit data pairs`` — COCO-Stuff has no published CoCosNet list).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.data.ade20k import one_hot
from evalkit.data.pairs import PairedDataset, check_label_range, open_label
from evalkit.data.registry import register_dataset
from evalkit.data.transforms import TransformParams, apply_pil

LAYOUT = "{train,val}_img/*.jpg, {train,val}_label/*.png, {train,val}_inst/*.png"
NUM_CLASSES = 182
UNLABELED = 255


def instance_edges(inst: np.ndarray) -> np.ndarray:
    """SPADE's ``get_edges``: 1 where any 4-neighbour has a different instance id."""
    edge = np.zeros(inst.shape, dtype=bool)
    dx = inst[:, 1:] != inst[:, :-1]
    dy = inst[1:, :] != inst[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge.astype(np.float32)


class COCOStuff(PairedDataset):
    name = "cocostuff"
    cond_channels = NUM_CLASSES + 2
    num_classes = NUM_CLASSES + 1
    pair_stem = "cocostuff"

    def __init__(self, *, instance: bool = True, **kw):
        self.instance = instance
        if not instance:
            self.cond_channels = NUM_CLASSES + 1
        super().__init__(**kw)

    def _dir(self, kind: str, exemplar: bool) -> Path:
        return self.root / f"{'train' if exemplar or self.split == 'train' else 'val'}_{kind}"

    def split_source(self) -> str:
        return f"*.jpg in {self._dir('img', False)}"

    def list_keys(self) -> list[str]:
        folder = self._dir("img", False)
        return sorted(p.name for p in folder.glob("*.jpg")) if folder.is_dir() else []

    def orphan_problems(self) -> list[str]:
        labels, images = self._dir("label", False), self._dir("img", False)
        return [f"image not found for label map {p}: expected {images / p.with_suffix('.jpg').name}"
                for p in sorted(labels.glob("*.png")) if not (images / p.with_suffix(".jpg").name).is_file()]

    def image_path(self, key: str, exemplar: bool) -> Path:
        return self._dir("img", exemplar) / key

    def label_files(self, key: str, exemplar: bool) -> list[Path]:
        stem = Path(key).with_suffix(".png").name
        files = [self._dir("label", exemplar) / stem]
        return files + [self._dir("inst", exemplar) / stem] if self.instance else files

    def encode(self, key, exemplar, params: TransformParams, image: Image.Image):
        files = self.label_files(key, exemplar)
        raw = open_label(files[0])
        self.check_same_size(image, raw, files[0])
        check_label_range(raw, np.r_[np.arange(NUM_CLASSES), UNLABELED], files[0])
        lab = np.asarray(apply_pil(Image.fromarray(raw), params, Image.NEAREST)).astype(np.int64)
        lab[lab == UNLABELED] = NUM_CLASSES
        cond = one_hot(lab, NUM_CLASSES + 1)
        if self.instance:
            inst = open_label(files[1], "instance map")
            self.check_same_size(image, inst, files[1])
            inst = np.asarray(apply_pil(Image.fromarray(inst), params, Image.NEAREST))
            cond = torch.cat([cond, torch.from_numpy(instance_edges(inst))[None]])
        return cond, torch.from_numpy(lab)


@register_dataset("cocostuff", description="COCO-Stuff (SPADE layout): 183 one-hot channels (255 → 182) + instance edges",
                  needs_root=True, cond_kind="label", layout=LAYOUT, paired=True)
def _cocostuff(*, root, split, size, n, seed, **kw) -> COCOStuff:
    return COCOStuff(root=root, split=split, size=size, n=n, seed=seed, **kw)
