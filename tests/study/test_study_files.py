"""What the study writes: plain permissions under the umask, nothing half-written, temp files ignored."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from study_helpers import METHODS, build_study, make_outputs, write_png

from evalkit.errors import EvalkitError
from evalkit.study import amt, analysis, store


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def vote_all(db, person: str = "solo") -> None:
    conn = store.connect(db)
    try:
        for (trial,) in conn.execute("SELECT token FROM trials").fetchall():
            slot1 = conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                                 "WHERE t.token = ? AND c.slot = 1", (trial,)).fetchone()[0]
            store.record_submission(conn, participant=person, trial_token=trial,
                                    answers={"quality": slot1, "style": slot1}, register=True)
    finally:
        conn.close()


def test_database_export_and_report_are_plain_files(tmp_path, umask_022):
    db = build_study(tmp_path, trials=4, catch_rate=0, repeat_rate=0)
    assert mode(db) == 0o644  # not mkstemp's 0600
    summary = amt.export_amt(db, tmp_path / "amt", "https://example.org/i")
    assert mode(tmp_path / "amt") == 0o755 and mode(tmp_path / "amt" / "images") == 0o755  # not mkdtemp's 0700
    assert summary["hits"] == 4 and mode(tmp_path / "amt" / "input.csv") == 0o644
    vote_all(db)
    files = analysis.write_report(analysis.analyze(db, n_boot=100), tmp_path / "report")
    assert len(files) == 6 and {mode(f) for f in files} == {0o644}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_export_into_a_file_or_a_full_folder_writes_nothing(tmp_path):
    db = build_study(tmp_path, trials=2, catch_rate=0, repeat_rate=0)
    (tmp_path / "taken").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    for target in (tmp_path / "taken", tmp_path / "taken" / "below"):
        with pytest.raises(EvalkitError, match="taken"):
            amt.export_amt(db, target, "https://example.org/i")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_failed_create_leaves_no_database_and_no_temp_file(tmp_path, monkeypatch):
    source = store.read_outputs([str(make_outputs(tmp_path / "out", n_items=4))])
    config = store.StudyConfig(tuple(store.parse_questions("quality")), 3, catch_rate=0.5)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "corrupt", broken)  # fails half-way through the catch trials
    with pytest.raises(RuntimeError, match="disk full"):
        store.create_study(tmp_path / "s.sqlite", source, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_outputs_reader_skips_temp_files_and_folders(tmp_path):
    out = make_outputs(tmp_path / "out", n_items=3)
    rng = np.random.default_rng(1)
    # what a killed writer leaves behind: a temp image beside the outputs, a temp variant folder
    write_png(out / METHODS[0] / "images" / ".sample_000.png.x1.tmp.png", rng.integers(0, 256, (32, 32, 3), np.uint8))
    write_png(out / ".half__written" / "images" / "sample_000.png", rng.integers(0, 256, (32, 32, 3), np.uint8))
    write_png(out / "inputs" / "cond" / "sample_999.tif", rng.integers(0, 256, (32, 32, 3), np.uint8))
    src = store.read_outputs([str(out)])
    assert sorted(src.methods) == sorted(METHODS)
    assert all(sorted(images) == [f"sample_{i:03d}" for i in range(3)] for images in src.methods.values())
    assert any("cond: 1 image(s)" in note for note in src.notes)  # .tif is an image extension everywhere
