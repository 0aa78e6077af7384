"""CelebA-HQ with CelebAMask-HQ annotations in CoCosNet's layout.

``<root>/CelebA-HQ-img/<id>.jpg``, ``<root>/{train,val}.txt`` (one id a line) and
``<root>/CelebAMask-HQ-mask-anno/<id // 2000>/<%05d>_<part>.png`` (one binary mask per
part), optionally with the combined ``all_parts_except_glasses/<%05d>.png``.

``celebahq`` (masks, ``data/celebahq_dataset.py`` + ``Pix2PixModel.preprocess_input``):
19 one-hot channels of the index map in CoCosNet's part order (0 background, 1 hair,
2 skin, 3 l_brow, 4 r_brow, 5 l_eye, 6 r_eye, 7 l_ear, 8 r_ear, 9 nose, 10 u_lip,
11 mouth, 12 l_lip, 13 neck, 14 cloth, 15 hat, 16 eye_g, 17 ear_r, 18 neck_l); the
combined map never uses 16: channel 16 is the separate glasses mask (``_eye_g.png``),
which may overlap the eyes. Without the combined map, the index map is painted from
the part masks in CelebAMask-HQ's own order (``g_mask.py``: skin first, cloth last).
``label`` is the index map with glasses painted on top.

``celebahq-edge`` (``data/celebahqedge_dataset.py``), 15 channels computed at the load
size: [all edges = part boundaries + Canny of the grey image outside the face parts
(background and hair keep Canny edges), 13 distance maps ``clip(DT_L1(part edges)/3,
0, 255)/255`` for skin, l_brow, r_brow, l_eye, r_eye, l_ear, r_ear, nose, u_lip, mouth,
l_lip, eye_g, hair, part-boundary edges].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from skimage import feature

from evalkit.data.ade20k import one_hot
from evalkit.data.pairs import PairedDataset, check_label_range, open_label, read_text
from evalkit.data.registry import register_dataset
from evalkit.data.transforms import TransformParams, apply_pil
from evalkit.errors import EvalkitError

LAYOUT = "CelebA-HQ-img/<id>.jpg, {train,val}.txt, CelebAMask-HQ-mask-anno/<id//2000>/<%05d>_<part>.png"
PARTS = ("background", "hair", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip",
         "mouth", "l_lip", "neck", "cloth", "hat", "eye_g", "ear_r", "neck_l")
GLASSES = PARTS.index("eye_g")  # 16 = channel -3 of 19
PAINT_ORDER = ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip",
               "hair", "hat", "ear_r", "neck_l", "neck", "cloth")  # CelebAMask-HQ g_mask.py, without eye_g
EDGE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip", "mouth", "l_lip",
              "eye_g", "hair")


def boundaries(mask: np.ndarray) -> np.ndarray:
    """CoCosNet's ``get_edges``: 1 where a 4-neighbour differs."""
    edge = np.zeros(mask.shape, dtype=bool)
    dx, dy = mask[:, 1:] != mask[:, :-1], mask[1:, :] != mask[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


class _CelebABase(PairedDataset):
    pair_stem = "celebahq"

    def split_source(self) -> str:
        return f"ids in {self.root / ('train.txt' if self.split == 'train' else 'val.txt')}"

    def list_keys(self) -> list[str]:
        listing = self.root / ("train.txt" if self.split == "train" else "val.txt")
        if not listing.is_file():
            return []
        ids = [t.strip() for t in read_text(listing, "split listing", "one numeric id a line").splitlines() if t.strip()]
        bad = [t for t in ids if not (t.isascii() and t.isdigit())]
        if bad:
            raise EvalkitError(f"{listing}: expected numeric CelebA-HQ ids, got {bad[0]!r}", path=listing)
        return [f"{int(t)}.jpg" for t in ids]

    def image_path(self, key: str, exemplar: bool) -> Path:
        return self.root / "CelebA-HQ-img" / key

    def part_path(self, key: str, part: str) -> Path:
        idx = int(Path(key).stem)
        return self.root / "CelebAMask-HQ-mask-anno" / str(idx // 2000) / f"{idx:05d}_{part}.png"

    def part_mask(self, key: str, part: str, image: Image.Image) -> np.ndarray | None:
        """Binary mask of one part (None when the file does not exist: part absent)."""
        path = self.part_path(key, part)
        if not path.is_file():
            return None
        m = open_label(path, "part mask")
        _check_square(image, m, path)
        return m > 127

    def sample_name(self, key: str) -> str:
        return Path(key).stem


def _check_square(image: Image.Image, label: np.ndarray, path: Path) -> None:
    """CelebA-HQ images are 1024² and masks 512²: both must be square (same aspect)."""
    if label.shape[0] != label.shape[1] or image.size[0] != image.size[1]:
        raise EvalkitError(f"image/label size mismatch: {path} is {label.shape[1]}x{label.shape[0]} and its image "
                           f"{image.size[0]}x{image.size[1]}; CelebA-HQ images and masks are square", path=path)


class CelebAHQ(_CelebABase):
    name = "celebahq"
    cond_channels = len(PARTS)
    num_classes = len(PARTS)

    def combined_path(self, key: str) -> Path:
        return self.root / "CelebAMask-HQ-mask-anno" / "all_parts_except_glasses" / f"{int(Path(key).stem):05d}.png"

    def label_files(self, key: str, exemplar: bool) -> list[Path]:
        combined = self.combined_path(key)
        if combined.is_file():
            return [combined]
        parts = [self.part_path(key, p) for p in PAINT_ORDER if self.part_path(key, p).is_file()]
        return parts or [combined]

    def index_map(self, key: str, image: Image.Image) -> np.ndarray:
        combined = self.combined_path(key)
        if combined.is_file():
            lab = open_label(combined)
            _check_square(image, lab, combined)
            check_label_range(lab, np.array([i for i in range(len(PARTS)) if i != GLASSES]), combined)
            return lab
        lab = None
        for part in PAINT_ORDER:
            m = self.part_mask(key, part, image)
            if m is not None:
                lab = np.zeros(m.shape, np.uint8) if lab is None else lab
                lab[m] = PARTS.index(part)
        if lab is None:
            raise EvalkitError(f"no annotation for {self.image_path(key, False)}: neither {combined} nor any "
                               f"{self.part_path(key, 'skin').parent}/<%05d>_<part>.png", path=combined)
        return lab

    def encode(self, key, exemplar, params: TransformParams, image: Image.Image):
        lab = self.index_map(key, image)
        glasses = self.part_mask(key, "eye_g", image)
        glasses = np.zeros(lab.shape, bool) if glasses is None else glasses
        if glasses.shape != lab.shape:
            raise EvalkitError(f"image/label size mismatch: {self.part_path(key, 'eye_g')} is {glasses.shape} but the "
                               f"label map is {lab.shape}", path=self.part_path(key, "eye_g"))
        lab = np.asarray(apply_pil(Image.fromarray(lab), params, Image.NEAREST)).astype(np.int64)
        g = np.asarray(apply_pil(Image.fromarray(glasses.astype(np.uint8) * 255), params, Image.NEAREST)) > 127
        cond = one_hot(lab, len(PARTS))
        cond[GLASSES] = torch.from_numpy(g.astype(np.float32))
        lab[g] = GLASSES
        return cond, torch.from_numpy(lab)


class CelebAHQEdge(_CelebABase):
    name = "celebahq-edge"
    cond_channels = 15
    num_classes = None
    cond_kind = "channels"

    def label_files(self, key: str, exemplar: bool) -> list[Path]:
        parts = [self.part_path(key, p) for p in EDGE_PARTS if self.part_path(key, p).is_file()]
        return parts or [self.part_path(key, "skin")]

    def encode(self, key, exemplar, params: TransformParams, image: Image.Image):
        load = params.load
        img = image.resize((load, load), Image.BILINEAR)
        inner = np.ones((load, load), dtype=np.uint8)  # 1 where Canny edges are kept
        edges = np.zeros((load, load), dtype=bool)
        dists = []
        for part in EDGE_PARTS:
            edge = np.zeros((load, load), dtype=bool)
            m = self.part_mask(key, part, image)
            if m is not None:
                m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((load, load), Image.NEAREST)) > 127
                if part != "hair":
                    inner[m] = 0
                edge = boundaries(m)
                edges |= edge
            dist = cv2.distanceTransform(255 - edge.astype(np.uint8) * 255, cv2.DIST_L1, 3)
            dist = np.clip(dist / 3, 0, 255).astype(np.uint8)
            d = apply_pil(Image.fromarray(dist), params, Image.BILINEAR)  # already at load size: crop + flip
            dists.append(np.asarray(d, dtype=np.float32) / 255.0)
        canny = feature.canny(np.asarray(img.convert("L"))) & inner.astype(bool)

        def crop(binary: np.ndarray) -> np.ndarray:
            return np.asarray(apply_pil(Image.fromarray(binary.astype(np.uint8) * 255), params, Image.NEAREST)) > 127

        all_edges = crop(edges | canny).astype(np.float32)
        part_edges = crop(edges).astype(np.float32)
        cond = np.stack([all_edges, *dists, part_edges])
        return torch.from_numpy(cond), None


@register_dataset("celebahq", description="CelebA-HQ masks (CoCosNet): 19 part channels, channel 16 = glasses",
                  needs_root=True, cond_kind="label", layout=LAYOUT, paired=True)
def _celebahq(*, root, split, size, n, seed, **kw) -> CelebAHQ:
    return CelebAHQ(root=root, split=split, size=size, n=n, seed=seed, **kw)


@register_dataset("celebahq-edge", description="CelebA-HQ edges (CoCosNet): all edges, 13 part distance maps, part edges",
                  needs_root=True, cond_kind="channels", layout=LAYOUT, paired=True)
def _celebahq_edge(*, root, split, size, n, seed, **kw) -> CelebAHQEdge:
    return CelebAHQEdge(root=root, split=split, size=size, n=n, seed=seed, **kw)
