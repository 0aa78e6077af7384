"""Registry of the pretrained files evalkit's metrics need: where they come from, their
sha256, where they are cached, and how to import / verify / fetch them.

Cache folder: ``$EVALKIT_WEIGHTS`` when set, else torch hub's checkpoints folder
(``torch.hub.get_dir()/checkpoints``), which is where torchvision and lpips look.

Hashes. The two Inception files have full sha256 values (published by torch-fidelity,
k-diffusion and others). The torchvision files (VGG19, AlexNet) are named by torchvision
after the first 8 hex digits of their sha256 (``torch.hub`` checks that prefix); the full
digest is not published with them, so they are verified by that prefix (``prefix_only``)
and the protocol records the full sha256 computed from the file itself.

Nothing is ever half-written: ``fetch`` and ``import`` stream the file into a temp file of
:func:`evalkit.files.atomic_path` in the cache folder, check its sha256, and only then
rename it into place.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.files import atomic_path


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained file: registry key, file name in the cache, source URL, sha256."""

    key: str
    filename: str
    url: str
    sha256: str
    used_by: str
    prefix_only: bool = False  # True: ``sha256`` is the published prefix only
    size: int | None = None  # bytes, where published
    # No digest published anywhere (``sha256`` empty): the file is recognised by its name and by
    # fitting the architecture of trunk ``layout`` (evalkit.backbones), and its own sha256 is recorded.
    digest_published: bool = True
    layout: str | None = None
    manual_download: bool = False  # ``url`` is a page to download from by hand (no direct link)

    def matches(self, digest: str) -> bool:
        if not self.digest_published:
            return False
        return digest.startswith(self.sha256) if self.prefix_only else digest == self.sha256


REGISTRY: dict[str, WeightsFile] = {
    w.key: w
    for w in (
        WeightsFile(
            key="inception-cleanfid",
            filename="inception-2015-12-05.pt",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
            sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
            used_by="FID/KID (clean-fid TorchScript Inception)",
            size=95_607_719,
        ),
        WeightsFile(
            key="inception-pytorch-fid",
            filename="pt_inception-2015-12-05-6726825d.pth",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
            sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
            used_by="FID/KID legacy mode (pytorch-fid Inception)",
            size=95_628_359,
        ),
        WeightsFile(
            key="vgg19",
            filename="vgg19-dcbb9e9d.pth",
            url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            sha256="dcbb9e9d",
            prefix_only=True,
            used_by="semantic / style consistency (torchvision VGG19)",
        ),
        WeightsFile(
            key="alexnet",
            filename="alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            sha256="7be5be79",
            prefix_only=True,
            used_by="LPIPS (torchvision AlexNet trunk; linear layers ship in the lpips package)",
        ),
        WeightsFile(
            # CoCosNet README's Caffe-converted VGG19 (CoCosNet#28), in the layout the CoCosNet/UNITE
            # metric scripts load: conv1_1.weight ... conv5_4.bias (fnzhan/UNITE util/vgg_style_relevance.py).
            key="vgg19-caffe",
            filename="vgg19_conv.pth",
            url="https://drive.google.com/file/d/1fp7DAiXdf0Ay-jANb8f0RHYLTRyjNv4m/view",
            sha256="",
            digest_published=False,
            layout="vgg19-caffe",
            manual_download=True,
            used_by="semantic/style consistency under --protocol unite2021 (the scripts' Caffe VGG19)",
        ),
    )
}


def weights_dir() -> Path:
    """The folder pretrained files are read from and written to."""
    env = os.environ.get("EVALKIT_WEIGHTS")
    if env:
        return Path(env).expanduser()
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_path(key: str) -> Path:
    return weights_dir() / _entry(key).filename


def _entry(key: str) -> WeightsFile:
    if key not in REGISTRY:
        raise EvalkitError(f"unknown weights '{key}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def parse_weights_files(items) -> dict[str, str]:
    """``--weights-file KEY=PATH`` values (repeatable) as ``{key: path}``: each key a registry
    key, each path an existing file; one :class:`EvalkitError` otherwise."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, path = str(item).partition("=")
        key = key.strip()
        if not sep or not key or not path:
            raise EvalkitError(f"--weights-file {item!r}: expected KEY=PATH with KEY one of {', '.join(REGISTRY)}")
        if key not in REGISTRY:
            raise EvalkitError(f"--weights-file {item!r}: unknown weights key {key!r}; choose one of "
                               f"{', '.join(REGISTRY)} (`evalkit weights list`)")
        if key in out:
            raise EvalkitError(f"--weights-file: {key} given twice")
        if not Path(path).is_file():
            raise EvalkitError(f"--weights-file {item!r}: file {path} does not exist", path=path)
        out[key] = path
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def require(key: str) -> tuple[Path, str]:
    """Path and full sha256 of a pretrained file, verified; one-line EvalkitError otherwise.

    The hash is computed once per process per (path, size, mtime).
    """
    entry = _entry(key)
    path = weights_path(key)
    if not path.is_file():
        raise EvalkitError(
            f"missing weights file {entry.filename} ({entry.used_by}); expected at {path}. "
            f"Fix: on a connected machine run `evalkit weights fetch`, or copy the file here and run "
            f"`evalkit weights import PATH`; or pass --weights random (not comparable with published numbers)"
        )
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _VERIFIED:
        digest = file_sha256(path)
        if not entry.digest_published:  # no digest to check: its layout is checked when it is loaded
            _VERIFIED[memo] = digest
        elif not entry.matches(digest):
            raise EvalkitError(
                f"weights file {path} has sha256 {digest[:16]}..., expected {entry.sha256[:16]}... "
                f"(corrupt or wrong file); delete it and run `evalkit weights fetch` or `evalkit weights import PATH`"
            )
        _VERIFIED[memo] = digest
    return path, _VERIFIED[memo]


def status() -> list[dict]:
    """One row per registered file: key, file, present, verified, sha256, path."""
    rows = []
    for key, entry in REGISTRY.items():
        path = weights_path(key)
        expected = entry.sha256 + (" (prefix)" if entry.prefix_only else "")
        if not entry.digest_published:
            expected = f"none published (layout {entry.layout} checked; sha256 recorded)"
        row = {"key": key, "file": entry.filename, "used_by": entry.used_by, "path": str(path),
               "present": path.is_file(), "verified": False, "expected_sha256": expected}
        rows.append(row)
    return rows


def verify(keys: list[str] | None = None) -> list[dict]:
    """Hash every present file; rows with ``verified`` True/False (absent files: False)."""
    rows = []
    for row in status():
        if keys and row["key"] not in keys:
            continue
        if row["present"]:
            digest = file_sha256(row["path"])
            row["sha256"] = digest
            entry = REGISTRY[row["key"]]
            row["verified"] = entry.matches(digest) if entry.digest_published else fits_layout(entry, row["path"])
        rows.append(row)
    return rows


def identify(path: str | Path) -> tuple[WeightsFile, str]:
    """Which registered file ``path`` is, by its sha256 (full or published prefix)."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"{path} does not exist or is not a file; pass the path of a downloaded weights file")
    digest = file_sha256(path)
    for entry in REGISTRY.values():
        if entry.matches(digest):
            return entry, digest
    for entry in REGISTRY.values():  # files without a published digest: by name, then by layout
        if not entry.digest_published and path.name == entry.filename and fits_layout(entry, path):
            return entry, digest
    raise EvalkitError(
        f"{path} (sha256 {digest[:16]}...) matches none of the known weights files "
        f"({', '.join(e.filename for e in REGISTRY.values())}); check you downloaded the right file"
    )


def fits_layout(entry: WeightsFile, path: str | Path) -> bool:
    """True when ``path`` loads strictly into the architecture of ``entry.layout``."""
    from evalkit.backbones import load_user_file

    try:
        load_user_file(entry.layout, path)
    except EvalkitError:
        return False
    return True


def _install(stream, entry: WeightsFile, source: str) -> Path:
    """Copy ``stream`` into the cache as ``entry.filename``: temp file, sha256 check, rename."""
    h = hashlib.sha256()
    with atomic_path(weights_dir() / entry.filename) as tmp:
        with open(tmp, "wb") as out:
            while block := stream.read(1 << 20):
                h.update(block)
                out.write(block)
        digest = h.hexdigest()
        if entry.digest_published and not entry.matches(digest):
            raise EvalkitError(f"{source} has sha256 {digest}, expected {entry.sha256}; {entry.filename} not installed")
    return weights_dir() / entry.filename


def import_file(path: str | Path) -> Path:
    """Copy a downloaded file into the cache under its registered name (atomic, verified)."""
    entry, _ = identify(path)
    with open(path, "rb") as src:
        return _install(src, entry, f"{path} (read again while copying; did it change?)")


def fetch(keys: list[str] | None = None, *, progress: bool = True) -> list[Path]:
    """Download missing files (connected machines): temp file, sha256 check, then rename."""
    done = []
    for key in keys or list(REGISTRY):
        entry = _entry(key)
        dest = weights_dir() / entry.filename
        if entry.manual_download:
            if dest.is_file():
                done.append(dest)
                continue
            how = (f"{entry.filename} has no direct download: get it from {entry.url} (a web page) and run "
                   f"`evalkit weights import PATH`")
            if keys:
                raise EvalkitError(how)
            if progress:
                print(f"note: skipped {key}: {how}", file=sys.stderr)
            continue
        if dest.is_file() and entry.matches(file_sha256(dest)):
            done.append(dest)
            continue
        if progress:
            print(f"downloading {entry.url}", file=sys.stderr)
        try:
            response = urllib.request.urlopen(entry.url, timeout=60)
        except OSError as err:
            raise EvalkitError(
                f"cannot download {entry.filename} from {entry.url} ({err}); on an offline machine copy the "
                f"file over and run `evalkit weights import PATH`"
            ) from err
        with response:
            done.append(_install(response, entry, f"downloaded {entry.filename}"))
    return done
