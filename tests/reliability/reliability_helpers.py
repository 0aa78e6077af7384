"""Helpers of the reliability tests (issue 13): the CLI, one-error-line checks, injected kills,
listings of what a failed command left behind, tiny run configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from evalkit.cli import app

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv):
    """``evalkit ARGV`` through typer's CliRunner (stdout and stderr apart)."""
    return CliRunner().invoke(app, [str(a) for a in argv])


def one_error(result, *needles: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line on stderr containing every needle."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def files_under(path: Path) -> list[str]:
    """Every file and folder below ``path`` (relative), dot entries included: what is left."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def temp_entries(path: Path) -> list[str]:
    """The temp files/folders (``.<name>.<rand>.tmp``) anywhere below ``path`` (a temp
    folder once, not its contents)."""
    def is_temp(part: str) -> bool:
        return part.startswith(".") and part.endswith(".tmp")

    return [p for p in files_under(path) if is_temp(Path(p).name) and not any(map(is_temp, Path(p).parts[:-1]))]


def evalkit_subprocess(*argv, env_extra: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """``python -m evalkit ARGV`` in a fresh process (what a SIGKILL can kill)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "evalkit", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT, timeout=timeout)


def run_config(name: str, out, variants: list[str], *, n_train: int = 8, n_test: int = 4,
               metrics: tuple[str, ...] = ("psnr",)) -> str:
    """A tiny run config on the built-in shapes (32 px, 2 exemplars per query, random
    backbones); ``variants`` are the bodies of its ``[[variants]]`` tables."""
    tables = "".join(f"[[variants]]\n{body}\n" for body in variants)
    return (f'name = "{name}"\nout = "{out}"\nseeds = [0]\n[[datasets]]\nname = "shapes"\nsize = 32\n'
            f"n_train = {n_train}\nn_test = {n_test}\noptions = {{ exemplars_per_query = 2 }}\n{tables}"
            f'[evaluation]\nmetrics = {json.dumps(list(metrics))}\nweights = "random"\n')


def write_png(path: Path, size: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def image_folder(path: Path, n: int = 4, size: int = 32, seed: int = 0) -> Path:
    for i in range(n):
        write_png(path / f"s{i}.png", size, seed * 100 + i)
    return path
