"""Study creation: sources, balanced design, blinding of images, schema-level integrity."""

from __future__ import annotations

import io
import sqlite3
from collections import Counter

import numpy as np
import pytest
from study_helpers import METHODS, build_study, make_outputs, write_png
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.study import store


def test_read_outputs_layout_and_method_dirs(tmp_path):
    out = make_outputs(tmp_path / "out", n_items=5)
    src = store.read_outputs([str(out)])
    assert sorted(src.methods) == sorted(METHODS)  # names from meta.json ("quokka/ras")
    assert sorted(src.cond) == [f"sample_{i:03d}" for i in range(5)]
    # several method=DIR folders matched by file name; one method lacks an image -> item dropped with a note
    (out / "narwhalnet" / "images" / "sample_004.png").unlink()
    src2 = store.read_outputs([f"a={out / 'zebrafinch'}", f"b={out / 'narwhalnet' / 'images'}"], out / "inputs")
    assert sorted(src2.methods) == ["a", "b"] and len(src2.cond) == 4
    assert any("left out" in n for n in src2.notes)


@pytest.mark.parametrize("args", [
    ["{out}/missing"],
    ["a={out}/zebrafinch"],                       # one method only, and no --inputs
    ["a={out}/zebrafinch", "{out}"],              # mixed forms
])
def test_read_outputs_bad_input(tmp_path, args):
    out = make_outputs(tmp_path / "out", n_items=2)
    with pytest.raises(EvalkitError):
        store.read_outputs([a.format(out=out) for a in args])


def test_balanced_orders_latin_square_property():
    rng = np.random.default_rng(3)
    for n_trials, k in [(12, 3), (13, 4), (5, 2)]:
        orders = store.balanced_orders(n_trials, k, rng)
        assert all(sorted(o) == list(range(k)) for o in orders)
        counts = Counter((m, pos) for o in orders for pos, m in enumerate(o))
        per_cell = [counts[(m, p)] for m in range(k) for p in range(k)]
        assert max(per_cell) - min(per_cell) <= 1


def test_create_study_design_counts_and_seed(tmp_path):
    db = build_study(tmp_path, trials=8, catch_rate=0.25, repeat_rate=0.25, seed=5)
    db2 = build_study(tmp_path, trials=8, catch_rate=0.25, repeat_rate=0.25, seed=5, name="again.sqlite")
    design = []
    for path in (db, db2):
        conn = store.connect(path)
        assert store.get_meta(conn)["seed"] == "5"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        kinds = Counter(r[0] for r in conn.execute("SELECT kind FROM trials"))
        assert kinds == {"main": 8, "catch": 2, "repeat": 2}
        design.append(sorted(tuple(r) for r in conn.execute(
            "SELECT i.name, t.kind, c.slot, m.name, c.role FROM candidates c JOIN trials t ON t.id = c.trial_id "
            "JOIN items i ON i.id = t.item_id LEFT JOIN methods m ON m.id = c.method_id")))
        # tokens are fresh randomness, never derived from the seed
        tokens = [r[0] for r in conn.execute("SELECT token FROM media")]
        assert len(set(tokens)) == len(tokens)
        # catch trials: corrupt -> exactly one clean expected candidate; exemplar -> the exemplar is expected
        for kind, expected_role in [("corrupt", "method"), ("exemplar", "exemplar")]:
            rows = conn.execute("SELECT c.role, c.expected FROM candidates c JOIN trials t ON t.id = c.trial_id "
                                "WHERE t.catch_kind = ?", (kind,)).fetchall()
            assert [r[0] for r in rows if r[1]] == [expected_role]
        conn.close()
    assert design[0] == design[1]  # same seed -> same items, orders, catch/repeat design
    conn = store.connect(db)
    tok1 = set(r[0] for r in conn.execute("SELECT token FROM media"))
    conn.close()
    conn = store.connect(db2)
    assert tok1.isdisjoint(r[0] for r in conn.execute("SELECT token FROM media"))


def test_images_are_reencoded_without_metadata(tmp_path):
    db = build_study(tmp_path, trials=4)
    conn = store.connect(db)
    for (png,) in conn.execute("SELECT png FROM images"):
        png = bytes(png)
        assert not any(m.encode() in png for m in METHODS + ["narwhal", "zebra", "quokka"])
        assert Image.open(io.BytesIO(png)).info.get("method") is None
    # decoded pixels are kept exactly
    src = np.asarray(Image.open(tmp_path / "out" / "inputs" / "cond" / "sample_000.png").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(store.encode_png(src)))), src)


def test_corrupted_candidate_is_far_from_original(tmp_path):
    rng = np.random.default_rng(0)
    img = np.full((32, 32, 3), 64, np.uint8)
    img[:, 1::2] = 192  # fine stripes: pixelation wipes them out, the noise adds ~48 grey levels
    bad = store.corrupt(store.encode_png(img), rng)
    assert bad.shape == img.shape and np.abs(bad.astype(float) - img).mean() > 50


def test_participant_order_reproducible_and_repeats_after_original(tmp_path):
    db = build_study(tmp_path, trials=10, repeat_rate=0.5)
    conn = store.connect(db)
    seed = int(store.get_meta(conn)["seed"])
    repeats = conn.execute("SELECT id, repeat_of FROM trials WHERE kind = 'repeat'").fetchall()
    orders = set()
    for pid in [f"p{i}" for i in range(20)]:
        s1, o1 = store.participant_order(conn, seed, pid)
        assert (s1, o1) == store.participant_order(conn, seed, pid)
        assert sorted(o1) == sorted(r[0] for r in conn.execute("SELECT id FROM trials"))
        for rid, orig in repeats:
            assert o1.index(rid) > o1.index(orig)
        orders.add(tuple(o1))
    assert len(orders) > 1


def test_schema_refuses_double_answers_even_without_app_logic(tmp_path):
    db = build_study(tmp_path, trials=3)
    conn = store.connect(db)
    with store.transaction(conn):
        person = store.ensure_participant(conn, "p1")
    trial = conn.execute("SELECT id FROM trials LIMIT 1").fetchone()[0]
    insert = ("INSERT INTO submissions(participant_id, trial_id, source, created) VALUES (?, ?, 'local', 0)")
    conn.execute(insert, (person["id"], trial))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(insert, (person["id"], trial))
    # an answer naming a candidate of another trial violates the composite foreign key
    sid = conn.execute("SELECT id FROM submissions").fetchone()[0]
    other = conn.execute("SELECT id FROM candidates WHERE trial_id != ? LIMIT 1", (trial,)).fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO responses(submission_id, trial_id, question_id, candidate_id) VALUES (?, ?, 1, ?)",
                     (sid, trial, other))


def test_create_refuses_bad_config_and_writes_nothing(tmp_path):
    make_outputs(tmp_path / "out", n_items=4)
    src = store.read_outputs([str(tmp_path / "out")])
    qs = tuple(store.parse_questions("quality"))
    for cfg in [store.StudyConfig(qs, 5), store.StudyConfig(qs, 0), store.StudyConfig(qs, 2, catch_rate=1.5)]:
        with pytest.raises(EvalkitError):
            store.create_study(tmp_path / "s.sqlite", src, cfg)
    assert list(tmp_path.glob("*.sqlite*")) == [] and list(tmp_path.glob(".s.sqlite*")) == []
    write_png(tmp_path / "out" / "zebrafinch" / "images" / "sample_000.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "out" / "zebrafinch" / "images" / "sample_000.png").write_bytes(b"not a png")
    with pytest.raises(EvalkitError, match="sample_000"):
        store.create_study(tmp_path / "s.sqlite", src, store.StudyConfig(qs, 4))
    assert not (tmp_path / "s.sqlite").exists()
    with pytest.raises(EvalkitError):
        store.parse_questions("quality,nonsense")


def test_candidates_of_an_item_share_one_size(tmp_path):
    out = make_outputs(tmp_path / "out", n_items=4)
    for png in (out / "narwhalnet" / "images").iterdir():  # one method writes larger images
        write_png(png, np.full((48, 40, 3), 100, np.uint8))
    src = store.read_outputs([str(out)])
    qs = tuple(store.parse_questions("quality,style"))
    summary = store.create_study(tmp_path / "s.sqlite", src, store.StudyConfig(qs, 4, 0.5, 0.0))
    assert summary["resized_candidates"] == 4  # one per item (catch trials reuse these items)
    conn = store.connect(tmp_path / "s.sqlite")
    sizes = {Image.open(io.BytesIO(bytes(r[0]))).size for r in conn.execute(
        "SELECT i.png FROM candidates c JOIN media m ON m.token = c.token JOIN images i ON i.id = m.image_id")}
    assert sizes == {(32, 32)}
