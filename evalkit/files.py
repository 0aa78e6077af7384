"""Writing and reading files: the one atomic writer, the one image decoder, the image extensions.

Every file evalkit writes (results tables, stage markers, reports, checkpoints, feature
cache entries, pair lists, output images, weights) goes through :func:`atomic_path` or
:func:`write_atomic`: a temp file ``.<name>.<random>.tmp`` in the destination folder,
fsync, ``chmod`` to the permissions a plain ``open()`` gives under the user's umask
(:func:`plain_mode`; ``mkstemp`` alone would leave 0600), then ``os.replace``. A reader
never sees a half-written file; a writer killed mid-way leaves at most a temp file,
which every reader ignores (:func:`is_temp_file`) and :func:`sweep_temp_files` removes.

Images: :func:`load_image` decodes any supported file to RGB uint8 ``[H, W, 3]``,
:func:`open_rgb` to an RGB ``PIL.Image``, :func:`open_label` a label map to ``uint8 [H, W]``;
each failure is one :class:`EvalkitError` naming the file. :data:`IMAGE_EXTENSIONS` is the
set of file endings read as images everywhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from evalkit.errors import EvalkitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TEMP_SUFFIX = ".tmp"
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


# -- writing -------------------------------------------------------------------------------
def plain_mode(directory: bool = False) -> int:
    """Permission bits a plain ``open()`` / ``mkdir()`` would give under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def is_temp_file(path: str | Path) -> bool:
    """True for a temp file of :func:`atomic_path` (or any other dotfile): readers skip them."""
    return Path(path).name.startswith(".")


def is_image_file(path: str | Path) -> bool:
    """A file evalkit reads as an image: a known extension and not a temp/dot file."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not is_temp_file(p)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; on a clean exit it is fsynced, given plain
    permissions and renamed onto ``path``; on an error it is removed.

    For writers that need a file name (``torch.save``, ``PIL.Image.save``, ``savefig``)::

        with atomic_path(out / "last.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, plain_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a new temp folder beside ``path`` to fill; on a clean exit it gets plain
    permissions and is renamed onto ``path``; on an error it is removed.

    ``path`` must be absent or an empty folder (EvalkitError otherwise, before any work).
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise EvalkitError(f"output folder {path} exists and is not empty; choose a new --out", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise EvalkitError(f"cannot create output folder {path}: a file is in the way ({err.filename}); "
                           "choose another --out", path=path) from err
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX))
    try:
        yield tmp
        os.chmod(tmp, plain_mode(directory=True))
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_temp_files(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """Remove the temp files a killed writer left in ``folder`` (and below it when
    ``recursive``); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".*{TEMP_SUFFIX}"
    stale = [p for p in (folder.rglob(pattern) if recursive else folder.glob(pattern)) if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# -- reading images ------------------------------------------------------------------------
def _check_exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise EvalkitError(f"{what} not found: {path}", path=path)


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to RGB uint8 ``[H, W, 3]``.

    Greyscale (L, LA, 1) is replicated to three channels; palette images are expanded;
    alpha (RGBA, LA, PA) is dropped without compositing, as clean-fid's ``convert('RGB')``
    does. 16-bit and float images are refused; truncated or undecodable files raise
    :class:`EvalkitError` naming the file.
    """
    path = Path(path)
    _check_exists(path, "image")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise EvalkitError(
                    f"{path}: {mode} (16-bit or float) images are not supported; save it as 8-bit RGB PNG", path=path)
            if mode == "P":
                im = im.convert("RGBA")
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except _DECODE_ERRORS as err:
        raise EvalkitError(f"{path}: cannot decode image ({type(err).__name__}: {err}); the file is corrupt or "
                           "truncated, re-export it", path=path) from err


def open_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` to an RGB ``PIL.Image`` (the same decoding as :func:`load_image`)."""
    return Image.fromarray(load_image(path))


def open_label(path: str | Path, what: str = "label map") -> np.ndarray:
    """Decode a single-channel label map as ``uint8 [H, W]`` (RGB masks: first channel)."""
    path = Path(path)
    _check_exists(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "F"):
                raise EvalkitError(f"{what} {path} has mode {im.mode}; expected 8-bit class ids", path=path)
            return np.asarray(im.convert("RGB"))[..., 0] if im.mode not in ("L", "P") else np.asarray(im)
    except _DECODE_ERRORS as err:
        raise EvalkitError(f"cannot decode {what} {path} (corrupt or not a PNG: {err}); replace the file",
                           path=path) from err


def save_png(image: np.ndarray | Image.Image, path: str | Path) -> Path:
    """Write an RGB uint8 ``[H, W, 3]`` array (or a PIL image) as PNG, atomically."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def list_files(folder: str | Path, pattern: str = "*") -> list[Path]:
    """Sorted files of ``folder`` matching ``pattern``, temp files excluded."""
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file() and not is_temp_file(p))
