"""Image I/O for evaluation: decode once to RGB uint8, quantise generator outputs, and the
"clean" resize of clean-fid (Parmar et al., CVPR 2022, Sec. 3).

- Every metric sees uint8 ``[H, W, 3]`` (or batched ``[N, 3, H, W]``) images. Generator
  outputs in [-1, 1] are quantised with :func:`to_uint8` (round + clamp), as
  ``torchvision.utils.save_image`` and the reference evaluation scripts do.
- :func:`clean_resize` is clean-fid's ``make_resizer("PIL", False, "bicubic", size)``:
  PIL bicubic on each channel in float32 ("F" mode), no requantisation.
  :func:`clean_resize_batch` is a batched torch equivalent (bicubic + antialias on float,
  Pillow's kernel) that tests hold within 2e-3 (on the 0..255 scale) of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.files import IMAGE_EXTENSIONS, is_image_file, load_image  # noqa: F401 - the one decoder, re-exported

def image_format(path: str | Path) -> str:
    """Lower-case file format name as recorded in the protocol (``png``, ``jpeg``, ...)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "jpeg", "tif": "tiff"}.get(suffix, suffix)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalkitError(f"{folder}: not a folder; pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise EvalkitError(f"{folder}: no images found ({', '.join(IMAGE_EXTENSIONS)}); point to the folder holding the images")
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise EvalkitError(f"{folder}: two images share the name '{p.stem}' ({stems[p.stem].name}, {p.name}); keep one")
        stems[p.stem] = p
    return files


def load_folder(folder: str | Path) -> tuple[list[str], list[np.ndarray]]:
    """Names (file stems, sorted) and decoded RGB uint8 images of every image in ``folder``."""
    files = list_images(folder)
    return [p.stem for p in files], [load_image(p) for p in files]


def stack_images(images: list[np.ndarray], names: list[str], where: str) -> np.ndarray:
    """Stack equal-size ``[H, W, 3]`` images into ``[N, 3, H, W]`` uint8; mixed sizes are an error."""
    h, w = images[0].shape[:2]
    for name, im in zip(names, images):
        if im.shape[:2] != (h, w):
            raise EvalkitError(
                f"{where}: image '{name}' is {im.shape[1]}x{im.shape[0]} but '{names[0]}' is {w}x{h}; "
                f"all images of a set must share one size (resize them first)"
            )
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def to_uint8(x):
    """Quantise images in [-1, 1] to uint8: ``floor((x + 1) / 2 * 255 + 0.5)`` clamped to
    [0, 255] (round half up, as ``torchvision.utils.save_image``). Same layout; NumPy in,
    NumPy out; torch in, torch out."""
    if isinstance(x, torch.Tensor):
        y = ((x.detach().float() + 1) * 127.5 + 0.5).clamp_(0, 255).floor_()
        return y.to(torch.uint8)
    y = np.floor((np.asarray(x, dtype=np.float64) + 1) * 127.5 + 0.5)
    return np.clip(y, 0, 255).astype(np.uint8)


def as_uint8_batch(x, what: str = "images") -> torch.Tensor:
    """Validate and convert ``[N, 3, H, W]`` uint8 (NumPy or torch) to a torch uint8 tensor."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.dtype != torch.uint8:
        raise EvalkitError(f"{what}: expected uint8 images, got {t.dtype}; quantise generator outputs with evalkit.images.to_uint8")
    if t.ndim != 4 or t.shape[1] != 3:
        raise EvalkitError(f"{what}: expected shape [N, 3, H, W], got {list(t.shape)}")
    return t


def content_hash(image: np.ndarray | torch.Tensor) -> str:
    """sha256 of the decoded pixels (shape + bytes): the cache key of one image."""
    a = np.ascontiguousarray(image.cpu().numpy() if isinstance(image, torch.Tensor) else image)
    h = hashlib.sha256(repr((a.shape, str(a.dtype))).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def clean_resize(image_hwc: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's "clean" resize: PIL bicubic per channel on float32, clip to [0, 255],
    no requantisation. ``[H, W, 3]`` uint8 -> ``[size, size, 3]`` float32."""
    out = []
    for c in range(image_hwc.shape[2]):
        channel = Image.fromarray(image_hwc[:, :, c].astype(np.float32), mode="F")
        out.append(np.asarray(channel.resize((size, size), resample=Image.BICUBIC)).clip(0, 255))
    return np.stack(out, axis=2).astype(np.float32)


def clean_resize_batch(images_nchw: torch.Tensor, size: int) -> torch.Tensor:
    """Batched torch version of :func:`clean_resize`: ``[N, 3, H, W]`` uint8 ->
    ``[N, 3, size, size]`` float32 in [0, 255] (bicubic with antialias = Pillow's kernel,
    a = -0.5, computed in float64; no requantisation). Within ~3e-5 of clean-fid's PIL path
    on the 0..255 scale (float32 interpolation would drift to ~6e-3 on noise images)."""
    x = images_nchw.double()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp_(0, 255).float()
