"""Helpers for the study tests: tiny outputs folders written with PIL, study databases, a live server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from evalkit.study import store

# Distinctive method names, so a leak into a page, URL or image is unambiguous.
METHODS = ["zebrafinch", "quokka/ras", "narwhalnet"]


def write_png(path: Path, array: np.ndarray, text: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text is not None:  # a metadata chunk naming the method: must not survive into the study
        info = PngImagePlugin.PngInfo()
        info.add_text("method", text)
    Image.fromarray(array).save(path, pnginfo=info)


def make_outputs(root: Path, n_items: int = 12, methods=METHODS, size: int = 32, seed: int = 0) -> Path:
    """An outputs-layout folder: inputs/{real,exemplar,cond}/<name>.png and <variant_dir>/images."""
    rng = np.random.default_rng(seed)
    for i in range(n_items):
        name = f"sample_{i:03d}"
        for sub in ("real", "exemplar", "cond"):
            write_png(root / "inputs" / sub / f"{name}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        for method in methods:
            write_png(root / method.replace("/", "__") / "images" / f"{name}.png",
                      rng.integers(0, 256, (size, size, 3), dtype=np.uint8), text=method)
    for method in methods:
        (root / method.replace("/", "__") / "meta.json").write_text(json.dumps({"variant": method}))
    return root


def build_study(tmp_path: Path, *, trials=8, catch_rate=0.25, repeat_rate=0.25, questions="quality,style",
                seed=0, n_items=12, name="study.sqlite") -> Path:
    out = tmp_path / "out"
    if not out.exists():
        make_outputs(out, n_items=n_items)
    db = tmp_path / name
    source = store.read_outputs([str(out)])
    store.create_study(db, source, store.StudyConfig(tuple(store.parse_questions(questions)), trials,
                                                     catch_rate, repeat_rate, seed))
    return db


class LiveServer:
    """The study app on 127.0.0.1, an ephemeral port, in a daemon thread."""

    def __init__(self, db: Path, admin_token: str | None = None):
        from evalkit.study.server import make_server

        self.server = make_server(db, "127.0.0.1", 0, admin_token=admin_token)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.admin_token = self.server.app.config["ADMIN_TOKEN"]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def candidate_for(conn, trial_token: str, method: str | None = None, role: str | None = None) -> str:
    """The candidate token of ``method`` (or of ``role``) in a trial (reads the un-blinded map)."""
    row = conn.execute(
        "SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id LEFT JOIN methods m ON m.id = c.method_id "
        "WHERE t.token = ? AND (m.name = ? OR c.role = ?) ORDER BY c.role = 'corrupted' LIMIT 1",
        (trial_token, method, role),
    ).fetchone()
    return row[0]


def trial_tokens(conn, kind: str = "main") -> list[str]:
    return [r[0] for r in conn.execute("SELECT token FROM trials WHERE kind = ? ORDER BY id", (kind,))]


class Participant:
    """One participant's browser on the Flask test client: its own cookie jar (the session)."""

    def __init__(self, app, pid: str):
        self.client, self.pid = app.test_client(), pid

    def enrol(self):
        return self.client.post("/api/enrol", json={"participant": self.pid})

    def next(self) -> dict:
        return self.client.get("/api/next").get_json()

    def vote(self, trial: str, answers: dict, **extra):
        return self.client.post("/api/vote", json={"trial": trial, "answers": answers, **extra})
