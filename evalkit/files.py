"""Writing and reading files: the one atomic writer, the one image decoder, the image extensions.

Every file evalkit writes (results tables, stage markers, reports, checkpoints, feature
cache entries, pair lists, output images, weights) goes through :func:`atomic_path` or
:func:`write_atomic`: a temp file ``.<name>.<random>.tmp`` in the destination folder,
fsync, ``chmod`` to the permissions a plain ``open()`` gives under the user's umask
(:func:`plain_mode`; ``mkstemp`` alone would leave 0600), then ``os.replace``. A reader
never sees a half-written file; a writer killed mid-way leaves at most a temp file,
which every reader ignores (:func:`is_temp_file`) and :func:`sweep_temp_files` removes.

A write that the file system refuses (read-only, full, no permission) is one
:class:`EvalkitError` naming the file, and leaves nothing behind; :func:`check_writable`
asks the same question before any work. Test hook: with ``EVALKIT_TEST_KILL_AT`` set to a
file name pattern (``fnmatch``, matched against the target's name and its full path;
``PATTERN@N`` for the N-th match), the process SIGKILLs itself after the temp file (or
temp folder) of a matching target is complete and before it is renamed: the one moment a
real kill can leave a temp file behind (tests/reliability).

Images: :func:`load_image` decodes any supported file to RGB uint8 ``[H, W, 3]``,
:func:`open_rgb` to an RGB ``PIL.Image``, :func:`open_label` a label map to ``uint8 [H, W]``;
each failure is one :class:`EvalkitError` naming the file. Images above
``PIL.Image.MAX_IMAGE_PIXELS`` (about 89 Mpixel: a decompression bomb, or a photo far
beyond any benchmark's size) and 16-bit PNGs (Pillow would silently drop the low byte of
16-bit RGB) are refused before their pixels are decoded. :data:`IMAGE_EXTENSIONS` is the
set of file endings read as images everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import io
import os
import re
import shutil
import signal
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from evalkit.errors import EvalkitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TEMP_SUFFIX = ".tmp"
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
KILL_ENV = "EVALKIT_TEST_KILL_AT"
# errno values of a write the file system refuses: one error line, not a traceback
_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EISDIR,
                 errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


# -- writing -------------------------------------------------------------------------------
def plain_mode(directory: bool = False) -> int:
    """Permission bits a plain ``open()`` / ``mkdir()`` would give under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def is_temp_file(path: str | Path) -> bool:
    """True for a temp file of :func:`atomic_path` (or any other dotfile): readers skip them."""
    return Path(path).name.startswith(".")


def _write_error(path: Path, err: OSError) -> EvalkitError:
    """The one line for a write the file system refused."""
    why = {errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the device",
           errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EISDIR: "a folder is in the way", errno.ENOTDIR: "a file is in the way",
           errno.EEXIST: "a file is in the way"}.get(err.errno, err.strerror or str(err))
    return EvalkitError(f"cannot write {path}: {why}; choose another output path (nothing was written there)",
                        path=path)


def _nearest_existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("."))


def check_writable(path: str | Path, *, directory: bool = False) -> Path:
    """Raise one :class:`EvalkitError` unless ``path`` (a file, or with ``directory`` a folder,
    existing or not) can be written: the nearest existing folder must accept a new file (a
    probe temp file is created and removed, so a read-only or permission-less file system is
    found before any work), and no file may stand where a folder is needed."""
    path = Path(path)
    existing = _nearest_existing(path)
    if existing == path and directory and not path.is_dir():
        raise EvalkitError(f"cannot write into {path}: it is a file; give a folder", path=path)
    if existing == path and not directory and path.is_dir():
        raise EvalkitError(f"cannot write {path}: it is a folder; give a file name", path=path)
    folder = existing if existing.is_dir() else existing.parent
    if existing != path and not existing.is_dir():
        raise EvalkitError(f"cannot write {path}: {existing} is a file, not a folder", path=path)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".evalkit-write-check.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
        if os.statvfs(folder).f_bavail == 0:  # a full disk: found now, not after the work
            raise OSError(errno.ENOSPC, "no space left on device")
    except OSError as err:
        raise _write_error(path, err) from err
    return path


_kill_count = [0]


def _kill_point(path: Path) -> None:
    """The test hook of the module docstring: SIGKILL at the rename of a matching target
    (``PATTERN@N``: at the N-th matching rename of this process, default the first)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    pattern, _, nth = spec.rpartition("@") if "@" in spec and spec.rpartition("@")[2].isdigit() else (spec, "", "1")
    if fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(str(path), pattern):
        _kill_count[0] += 1
        if _kill_count[0] >= int(nth):
            os.kill(os.getpid(), signal.SIGKILL)


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        raise _write_error(path, err) from err
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, plain_mode())
        _kill_point(path)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in _WRITE_ERRNOS:
            raise _write_error(path, err) from err
        raise
    except BaseException as err:
        full = isinstance(err, RuntimeError) and _disk_full(path.parent)  # before the temp file frees its space
        tmp.unlink(missing_ok=True)
        if full:  # torch.save reports a full disk as a RuntimeError ("unexpected pos ...")
            raise _write_error(path, OSError(errno.ENOSPC, str(err))) from err
        raise


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


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
    except OSError as err:
        raise _write_error(path, err) from err
    tmp = staging_dir(path)
    try:
        yield tmp
        os.chmod(tmp, plain_mode(directory=True))
        _kill_point(path)
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in _WRITE_ERRNOS:
            raise _write_error(path, err) from err
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def staging_dir(path: str | Path) -> Path:
    """A new, empty temp folder ``.<name>.<random>.tmp`` beside ``path`` (readers skip it,
    :func:`sweep_temp_files` removes it when a killed writer left it)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX))
    except OSError as err:
        raise _write_error(path, err) from err


def replace_dir(staged: str | Path, path: str | Path) -> None:
    """Move the complete folder ``staged`` onto ``path``, replacing what was there: the old
    folder is first renamed to a temp name (so a kill leaves either the old folder, or no
    folder and a temp one to sweep, never a mix), then removed."""
    staged, path = Path(staged), Path(path)
    os.chmod(staged, plain_mode(directory=True))
    _kill_point(path)
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.", suffix=TEMP_SUFFIX))
        os.replace(path, old / path.name)
    os.replace(staged, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sweep_temp_files(folder: str | Path, *, recursive: bool = True, target: str | None = None) -> list[Path]:
    """Remove the temp files and temp folders (:func:`staging_dir`) a killed writer left in
    ``folder`` (and below it when ``recursive``); with ``target``, only those of that one
    file or folder name (``.<target>.*.tmp``); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{glob_escape(target)}.*{TEMP_SUFFIX}" if target else f".*{TEMP_SUFFIX}"
    stale = sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    removed = []
    for p in stale:
        if any(p.is_relative_to(q) for q in removed):  # inside a temp folder already removed
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    """``name`` as a literal in a glob pattern."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def in_temp_path(path: str | Path, root: str | Path) -> bool:
    """True when ``path`` or a folder between ``root`` and it is a temp/dot entry."""
    rel = Path(path).relative_to(root)
    return any(part.startswith(".") for part in rel.parts)


# -- reading images ------------------------------------------------------------------------
def _check_exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise EvalkitError(f"{what} not found: {path}", path=path)


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR (byte 24), None for another format."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) == 26:
        return head[24]
    return None


@contextlib.contextmanager
def _open_checked(path: Path, what: str):
    """``Image.open`` that refuses decompression bombs and 16-bit PNGs before any pixel is
    decoded, and turns every decode failure into one EvalkitError line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(path)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                found = re.search(r"\((\d+) pixels\)", str(err))
                size = f" ({int(found.group(1)) / 1e6:.0f} Mpixel)" if found else ""
                raise EvalkitError(
                    f"{path}: the {what}'s header declares more than {Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpixel{size}, "
                    "a decompression bomb or a far too large image; nothing was decoded, resize it", path=path) from None
        with im:
            if im.format == "PNG" and _png_bit_depth(path) == 16:
                raise EvalkitError(f"{path}: 16-bit PNG ({im.mode}); evalkit reads 8-bit images only, "
                                   "save it as 8-bit RGB PNG", path=path)
            yield im
    except EvalkitError:
        raise
    except _DECODE_ERRORS as err:
        raise EvalkitError(f"{path}: cannot decode {what} ({type(err).__name__}: {err}); the file is corrupt or "
                           "truncated, re-export it", path=path) from err


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to RGB uint8 ``[H, W, 3]``.

    Greyscale (L, LA, 1) is replicated to three channels; palette images are expanded;
    alpha (RGBA, LA, PA) is dropped without compositing, as clean-fid's ``convert('RGB')``
    does. 16-bit and float images and images above ``Image.MAX_IMAGE_PIXELS`` are refused;
    truncated or undecodable files raise :class:`EvalkitError` naming the file.
    """
    path = Path(path)
    _check_exists(path, "image")
    with _open_checked(path, "image") as im:
        im.load()
        mode = im.mode
        if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise EvalkitError(
                f"{path}: {mode} (16-bit or float) images are not supported; save it as 8-bit RGB PNG", path=path)
        if mode == "P":
            im = im.convert("RGBA")
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def open_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` to an RGB ``PIL.Image`` (the same decoding as :func:`load_image`)."""
    return Image.fromarray(load_image(path))


def load_srgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` for display: as :func:`load_image`, but pixels with an embedded ICC
    profile are converted from it to sRGB (perceptual intent), so that two files that
    look alike in a colour-managed browser give the same pixels (user studies show
    re-encoded pixels without the profile). Metrics keep :func:`load_image`, which ignores
    profiles as clean-fid and the reference scripts do."""
    path = Path(path)
    rgb = load_image(path)
    with _open_checked(path, "image") as im:
        icc = im.info.get("icc_profile")
    if not icc:
        return rgb
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if src.profile.xcolor_space.strip() != "RGB":  # a grey or CMYK profile: the RGB pixels are not in it
            return rgb
        out = ImageCms.profileToProfile(Image.fromarray(rgb), src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (OSError, ImageCms.PyCMSError) as err:
        raise EvalkitError(f"{path}: its embedded colour profile cannot be read ({err}); re-export the image as sRGB",
                           path=path) from err
    return np.asarray(out, dtype=np.uint8).copy()


def open_label(path: str | Path, what: str = "label map") -> np.ndarray:
    """Decode a single-channel label map as ``uint8 [H, W]`` (RGB masks: first channel)."""
    path = Path(path)
    _check_exists(path, what)
    with _open_checked(path, what) as im:
        im.load()
        if im.mode in ("I", "I;16", "F"):
            raise EvalkitError(f"{what} {path} has mode {im.mode}; expected 8-bit class ids", path=path)
        return np.asarray(im.convert("RGB"))[..., 0] if im.mode not in ("L", "P") else np.asarray(im)


def save_png(image: np.ndarray | Image.Image, path: str | Path) -> Path:
    """Write an RGB uint8 ``[H, W, 3]`` array (or a PIL image) as PNG, atomically."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def list_files(folder: str | Path, pattern: str = "*") -> list[Path]:
    """Sorted files of ``folder`` matching ``pattern``, temp files excluded."""
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file() and not is_temp_file(p))
