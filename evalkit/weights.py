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

    def matches(self, digest: str) -> bool:
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
        if not entry.matches(digest):
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
        row = {"key": key, "file": entry.filename, "used_by": entry.used_by, "path": str(path),
               "present": path.is_file(), "verified": False,
               "expected_sha256": entry.sha256 + (" (prefix)" if entry.prefix_only else "")}
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
            row["verified"] = REGISTRY[row["key"]].matches(digest)
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
    raise EvalkitError(
        f"{path} (sha256 {digest[:16]}...) matches none of the known weights files "
        f"({', '.join(e.filename for e in REGISTRY.values())}); check you downloaded the right file"
    )


def _install(stream, entry: WeightsFile, source: str) -> Path:
    """Copy ``stream`` into the cache as ``entry.filename``: temp file, sha256 check, rename."""
    h = hashlib.sha256()
    with atomic_path(weights_dir() / entry.filename) as tmp:
        with open(tmp, "wb") as out:
            while block := stream.read(1 << 20):
                h.update(block)
                out.write(block)
        digest = h.hexdigest()
        if not entry.matches(digest):
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
