"""Run folders and stage markers: what lets a killed run resume at its first unfinished stage.

Every stage writes its outputs atomically (:mod:`evalkit.files`), then checks them, then
writes its marker ``stages/<stage>.json`` atomically: ``{"key": hash of the stage's
inputs, "outputs": {file: size}}``. A later run skips a stage whose marker exists, whose
key matches and whose listed outputs are all still there with the same sizes; anything
else is recomputed. The key of a stage includes the markers of the stages it reads, so
recomputing a stage invalidates those downstream of it. ``stages.log`` has one line per
stage start / finish / skip. Before a stage computes, the temp files a killed writer left
in its outputs are swept.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.files import in_temp_path, sweep_temp_files, write_atomic


def stage_hash(obj) -> str:
    """sha256 of the canonical JSON of ``obj`` (a stage key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def output_sizes(root: Path, paths) -> dict[str, int]:
    """{path relative to root: size} for every file under each of ``paths`` (temp files and
    whatever is inside a temp folder excluded)."""
    out = {}
    for p in paths:
        items = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and not in_temp_path(q, p))
        for q in items:
            out[str(q.relative_to(root))] = q.stat().st_size
    return out


@dataclass
class StageLog:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class RunDir:
    """Paths and stage markers of one run folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.stages = self.root / "stages"
        self.log = StageLog()

    def _marker(self, stage: str) -> Path:
        return self.stages / (stage.replace("/", "__") + ".json")

    def append_log(self, line: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "stages.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
            f.flush()
            os.fsync(f.fileno())

    def marker(self, stage: str) -> dict | None:
        p = self._marker(stage)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def is_done(self, stage: str, key: str) -> bool:
        m = self.marker(stage)
        if m is None or m.get("key") != key:
            return False
        return all((self.root / rel).is_file() and (self.root / rel).stat().st_size == size
                   for rel, size in m["outputs"].items())

    def digest(self, stage: str) -> str:
        """Hash of a finished stage's marker: part of the keys of the stages that read it."""
        m = self.marker(stage)
        return stage_hash(m) if m else ""

    def run(self, stage: str, key_obj, outputs: list[Path], compute, validate, *, collective: bool = False) -> bool:
        """Run ``compute()`` unless the stage is done; returns True when it computed.

        Under torchrun, rank 0 decides (markers live on its disk) and writes the marker;
        a ``collective`` stage runs ``compute`` on every rank (it communicates), any other
        stage on rank 0 only while the other ranks wait.
        """
        from evalkit import distributed

        main = distributed.env().is_main
        key = stage_hash(key_obj)
        done = distributed.broadcast(self.is_done(stage, key) if main else None)
        if done:
            self.log.skipped.append(stage)
            if main:
                self.append_log(f"skip {stage}")
            return False
        if main:
            self.append_log(f"start {stage}")
            for p in outputs:
                sweep_temp_files(p) if p.is_dir() else sweep_temp_files(p.parent, recursive=False)
        t0 = time.perf_counter()
        if main or collective:
            compute()
        if main:
            validate()
            seconds = time.perf_counter() - t0
            write_atomic(self._marker(stage), json.dumps(
                {"stage": stage, "key": key, "outputs": output_sizes(self.root, outputs), "seconds": round(seconds, 3)},
                indent=1))
            self.append_log(f"done {stage} {seconds:.2f}s")
            self.log.seconds[stage] = seconds
        self.log.done.append(stage)
        distributed.barrier()
        return True
