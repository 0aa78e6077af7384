"""Image I/O for evaluation: decode once to RGB uint8, quantise generator outputs, and the
"clean" resize of clean-fid (Parmar et al., CVPR 2022, Sec. 3).

- Every metric sees uint8 ``[H, W, 3]`` (or batched ``[N, 3, H, W]``) images. Generator
  outputs in [-1, 1] are quantised with :func:`to_uint8` (round + clamp), as
  ``torchvision.utils.save_image`` and the reference evaluation scripts do.
- :func:`clean_resize` is clean-fid's ``make_resizer("PIL", False, "bicubic", size)``:
  PIL bicubic on each channel in float32 ("F" mode), no requantisation.
  :func:`clean_resize_batch` is a batched torch equivalent (bicubic + antialias on float,
  Pillow's kernel) that tests hold within 2e-3 (on the 0..255 scale) of it.
- :func:`resolve_images` is the one reader of evaluation inputs: a folder (``recursive``:
  its sub-folders too), a glob pattern, or a registered dataset layout
  ``DATASET:ROOT[:SPLIT]``; where an image and a label map share a name, the image is
  taken and the skip noted. :func:`resize_uint8` is the papers' resize of real images to
  the generated size (PIL bicubic on uint8, ``--real-size``), recorded as ``real_resize``.
"""

from __future__ import annotations

import glob as globlib
import hashlib
from dataclasses import dataclass
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


SPLIT_ALIASES = {"test": "test", "val": "test", "validation": "test", "train": "train", "training": "train"}
RESIZE_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS,
                  "nearest": Image.NEAREST, "box": Image.BOX}
_LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


@dataclass(frozen=True)
class ImageSet:
    """The image files of one evaluation input and the names they are matched by.

    ``names[i]`` names ``files[i]``: the file stem, or, for files found in sub-folders
    (``--recursive``) or through a dataset layout, the relative path joined with ``__``
    (as ``evalkit infer`` names the samples of a dataset). ``notes``: what was left out, and why.
    """

    source: str
    names: tuple[str, ...]
    files: tuple[Path, ...]
    notes: tuple[str, ...] = ()


def _name(path: Path, base: Path | None) -> str:
    rel = path.relative_to(base) if base is not None else Path(path.name)
    return rel.with_suffix("").as_posix().replace("/", "__")


def _is_label_map(path: Path) -> bool:
    """A single-channel (greyscale, palette or integer) file: how label maps are stored."""
    try:
        with Image.open(path) as im:
            return im.mode in _LABEL_MODES
    except (OSError, ValueError, Image.DecompressionBombError):
        return False  # undecodable: kept, so that the decoder names it


def _unique_names(source: str, found: list[tuple[str, Path]]) -> tuple[list[tuple[str, Path]], list[str]]:
    """One file per name. Where an image and a label map share a name (ADE20K's
    ``ADE_val_*.jpg`` beside ``ADE_val_*.png``), the image is taken and the label skipped."""
    by_name: dict[str, list[Path]] = {}
    for name, p in sorted(found, key=lambda item: item[1]):
        by_name.setdefault(name, []).append(p)
    kept, skipped = [], []
    for name, paths in by_name.items():
        if len(paths) > 1:
            images = [p for p in paths if not _is_label_map(p)]
            if len(images) != 1:
                raise EvalkitError(
                    f"{source}: several images share the name '{name}' ({', '.join(p.name for p in paths)}); "
                    f"keep one, or select them with a quoted glob such as \"{Path(source) / ('*' + paths[0].suffix)}\"")
            skipped += [p for p in paths if p is not images[0]]
            paths = images
        kept.append((name, paths[0]))
    notes = []
    if skipped:
        skipped.sort()
        shown = ", ".join(p.name for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        notes.append(f"{source}: took the images, skipped {len(skipped)} label map(s) of the same name ({shown})")
    return sorted(kept), notes


def _dataset_images(spec: str) -> ImageSet | None:
    """``DATASET:ROOT[:SPLIT]``: the query images of a registered dataset layout (split
    ``test`` by default), named as ``evalkit infer`` names its samples; None if ``spec``
    does not name a registered dataset."""
    from evalkit.data.registry import dataset_spec, list_datasets

    name, sep, rest = spec.partition(":")
    if not sep or name not in list_datasets():
        return None
    root, split = rest, "test"
    head, sep2, tail = rest.rpartition(":")
    if sep2 and tail.lower() in SPLIT_ALIASES:
        root, split = head, SPLIT_ALIASES[tail.lower()]
    ds_spec = dataset_spec(name)
    if not ds_spec.paired:
        raise EvalkitError(f"{spec}: dataset {name!r} has no image files on disk (it is generated); evaluate "
                           f"the inputs/real folder that `evalkit infer` writes for it")
    from evalkit.data import get_dataset

    ds = get_dataset(name, root=root, split=split, size=8, require_pairs=False)
    found = [(ds.sample_name(it.key), ds.image_path(it.key, False)) for it in ds.items]
    missing = [str(p) for _, p in found if not p.is_file()]
    if missing:
        raise EvalkitError(f"{spec}: image not found: {missing[0]} ({len(missing)} missing); check the dataset root")
    kept, notes = _unique_names(spec, found)
    return ImageSet(spec, tuple(n for n, _ in kept), tuple(p for _, p in kept), tuple(notes))


def resolve_images(spec: str | Path, *, recursive: bool = False) -> ImageSet:
    """The images named by ``spec``: a folder (sub-folders too with ``recursive``), a quoted
    glob pattern (``"validation/*.jpg"``, ``**`` for any depth), or a registered dataset
    layout ``DATASET:ROOT[:SPLIT]`` read through :func:`evalkit.data.get_dataset`. Temp and
    dot files are never listed; label maps beside images of the same name are skipped."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        walk = path.rglob("*") if recursive else path.iterdir()
        found = [(_name(p, path), p) for p in walk if p.is_file() and is_image_file(p)
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        where = f"{path}{' (and its sub-folders)' if recursive else ''}"
        if not found:
            hint = "" if recursive else "; pass --recursive to search its sub-folders"
            raise EvalkitError(f"{where}: no images found ({', '.join(IMAGE_EXTENSIONS)}){hint}", path=path)
        kept, notes = _unique_names(text, found)
        return ImageSet(text, tuple(n for n, _ in kept), tuple(p for _, p in kept), tuple(notes))
    if path.is_file():
        raise EvalkitError(f"{path}: is a file; pass a folder of images, a quoted glob (\"DIR/*.png\") or "
                           "DATASET:ROOT[:SPLIT]", path=path)
    if any(c in text for c in "*?["):
        matches = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        found = [(p.stem, p) for p in matches if p.is_file() and is_image_file(p)]
        if not found:
            raise EvalkitError(f"{text}: no images match this pattern ({', '.join(IMAGE_EXTENSIONS)}); "
                               "check the folder and the extension")
        kept, notes = _unique_names(text, found)
        return ImageSet(text, tuple(n for n, _ in kept), tuple(p for _, p in kept), tuple(notes))
    dataset = _dataset_images(text)
    if dataset is not None:
        return dataset
    raise EvalkitError(f"{text}: not found; pass a folder of images, a quoted glob (\"DIR/*.png\") or "
                       "DATASET:ROOT[:SPLIT] (a dataset of `evalkit data list`)", path=path)


def load_folder(folder: str | Path) -> tuple[list[str], list[np.ndarray]]:
    """Names (file stems, sorted) and decoded RGB uint8 images of every image in ``folder``."""
    images = resolve_images(folder)
    return list(images.names), [load_image(p) for p in images.files]


def resize_uint8(image_hwc: np.ndarray, size: int, filter: str = "bicubic") -> np.ndarray:
    """``[H, W, 3]`` uint8 resized to ``size`` x ``size`` with a named PIL filter (the
    papers resize real images this way, bicubic, before evaluating at 256 px)."""
    if filter not in RESIZE_FILTERS:
        raise EvalkitError(f"unknown resize filter {filter!r}; choose one of {', '.join(RESIZE_FILTERS)}")
    if image_hwc.shape[:2] == (size, size):
        return image_hwc
    return np.asarray(Image.fromarray(image_hwc).resize((size, size), RESIZE_FILTERS[filter]), dtype=np.uint8)


def resize_tag(size: int | None, filter: str = "bicubic") -> str:
    """How real images were resized before evaluation, as the Protocol records it."""
    return "none" if size is None else f"pil-{filter}-{size}"


def check_one_size(shapes: list[tuple], names: list[str], where: str) -> None:
    """Every image of a set has one size (``shapes``: ``(3, H, W)`` each), else one EvalkitError."""
    h, w = shapes[0][-2:]
    for name, shape in zip(names, shapes):
        if tuple(shape[-2:]) != (h, w):
            raise EvalkitError(
                f"{where}: image '{name}' is {shape[-1]}x{shape[-2]} but '{names[0]}' is {w}x{h}; "
                f"all images of a set must share one size (resize them first)"
            )


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
