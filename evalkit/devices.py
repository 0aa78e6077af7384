"""The one device resolver: ``--device`` / config ``device`` → a usable ``torch.device``.

Accepted: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
A device this machine does not have, or anything else, is one :class:`EvalkitError`
line naming the value and the fix, raised before any work starts (commands call
:func:`resolve_device` first).
"""

from __future__ import annotations

import re

import torch

from evalkit.errors import EvalkitError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_SPEC = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(spec: str | torch.device | None = "auto", *, option: str = "--device") -> torch.device:
    """``spec`` as a ``torch.device`` this machine has; ``None`` means ``auto``.

    ``option`` names the setting in the error (``--device`` or a config field).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(1) == "cpu" and match.group(2) not in (None, "0")):
        raise EvalkitError(f"{option} {spec}: unknown device; use {DEVICE_CHOICES}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise EvalkitError(f"{option} {spec}: no MPS (Apple GPU) device on this machine; use {option} cpu or auto")
        return torch.device(text)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise EvalkitError(f"{option} {spec}: no CUDA device on this machine (torch sees 0); "
                           f"use {option} cpu or auto")
    if index is not None and int(index) >= count:
        raise EvalkitError(f"{option} {spec}: torch sees {count} CUDA device(s) (cuda:0..cuda:{count - 1}); "
                           f"use one of them, cpu or auto")
    return torch.device(text)


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


HEAP_MMAP_THRESHOLD = 4 * 2 ** 20  # allocations above this are mapped on their own and returned at free


def return_freed_memory(threshold: int = HEAP_MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``), for commands that stream
    large sets. glibc otherwise raises the threshold up to 32 MiB after the first large free.
    The many 16-32 MiB batch buffers of a streamed evaluation then come from the heap, whose
    holes are never returned, and peak RSS grows with N: 1.30 -> 1.63 GiB for the SWD of
    2000 + 2000 images at 256 px (docs/performance.md). False where the C library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    except OSError:
        return False
    if mallopt is None:
        return False
    return bool(mallopt(-3, int(threshold)))  # M_MMAP_THRESHOLD = -3 (malloc.h)
