"""Fixtures of the reliability tests: read-only and full file systems (helpers are in
reliability_helpers.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest


def _mount(kind: str, options: str) -> Path | None:
    """A fresh tmpfs mount (read-only, or tiny) when this process may mount; else None."""
    target = Path("/tmp") / f"evalkit-{kind}-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if done.returncode != 0:
        target.rmdir()
        return None
    return target


@contextlib.contextmanager
def _mounted(kind: str, options: str, fill: bool = False):
    target = _mount(kind, options)
    if target is None:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN) for the {kind} file system")
    try:
        if fill:  # fill it up: the next write gets ENOSPC
            with contextlib.suppress(OSError), open(target / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
        with contextlib.suppress(OSError):
            target.rmdir()


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder no one may write into: a read-only tmpfs when we are root (chmod does not
    stop root), else a chmod 0555 folder."""
    if os.geteuid() != 0:
        d = tmp_path / "readonly"
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    with _mounted("readonly", "ro,size=1m") as d:
        yield d


@pytest.fixture
def full_dir():
    """A folder on a file system with no space left (a filled 256 KiB tmpfs)."""
    with _mounted("full", "size=256k", fill=True) as d:
        yield d
