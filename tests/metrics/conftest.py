"""Fixtures for the metric tests: small crops of the real photographs in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def photo_paths(shared_data: Path) -> list[Path]:
    roots = [
        shared_data / "cocosnet_samples" / "imgs" / "ade20k",
        shared_data / "spade_coco_stuff" / "datasets" / "coco_stuff" / "val_img",
        shared_data / "spade_coco_stuff" / "datasets" / "coco_stuff" / "train_img",
    ]
    paths = sorted(p for r in roots for p in r.rglob("*.jpg"))
    if len(paths) < 16:
        pytest.skip(f"expected >= 16 .jpg photographs under {shared_data}, found {len(paths)}")
    return paths


def crops(path: Path, size: int, k: int) -> list[np.ndarray]:
    """``k`` deterministic square crops of ``path`` resized to ``size`` (uint8 HWC)."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = min(w, h)
    out = []
    for j in range(k):
        left = (w - side) * j // max(k - 1, 1)
        top = (h - side) * j // max(k - 1, 1)
        out.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)))
    return out


@pytest.fixture(scope="session")
def photos(shared_data):
    """Callable ``photos(n, size)`` -> uint8 ``[n, 3, size, size]`` crops of real photographs."""
    paths = photo_paths(shared_data)

    def make(n: int, size: int = 64, offset: int = 0) -> np.ndarray:
        imgs = []
        for p in paths[offset:] + paths[:offset]:
            imgs += crops(p, size, 2)
            if len(imgs) >= n:
                break
        return np.stack(imgs[:n]).transpose(0, 3, 1, 2).copy()

    return make


def _write_folder(folder: Path, images_nchw: np.ndarray, names=None, fmt: str = "png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images_nchw):
        name = names[i] if names else f"img{i:03d}"
        Image.fromarray(im.transpose(1, 2, 0)).save(folder / f"{name}.{fmt}")
    return folder


@pytest.fixture
def write_folder():
    """Callable ``write_folder(folder, images_nchw, names=None, fmt="png")``."""
    return _write_folder
