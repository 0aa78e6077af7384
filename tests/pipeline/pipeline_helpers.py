"""Shared helpers of the pipeline tests: tiny outputs folders and configs."""

from __future__ import annotations

import socket
from pathlib import Path


def make_outputs(out_dir: Path, variant: str = "reference/blur", *, n: int = 8, size: int = 32) -> Path:
    """An outputs layout of a reference variant on the built-in shapes (2 exemplars per query)."""
    from evalkit.data import get_dataset
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import infer

    ds = get_dataset("shapes", split="test", size=size, n=n, seed=0, exemplars_per_query=2)
    infer(build_translator(variant, cond_channels=ds.cond_channels), ds, out_dir, progress=False, device="cpu")
    return out_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ROOT = Path(__file__).resolve().parents[2]


def tiny_config(out: Path, name: str = "tiny-ci") -> Path:
    """configs/tiny-ci.toml with its run folder under ``out``; returns the config path."""
    text = (ROOT / "configs" / "tiny-ci.toml").read_text(encoding="utf-8")
    text = text.replace('out = "runs"', f'out = "{out.as_posix()}"').replace('name = "tiny-ci"', f'name = "{name}"')
    path = out.parent / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path
