"""Journey 6: run a study on the methods I choose.

Before: `study create` took every method folder, the reference outputs included
(`reference/ground-truth` as a candidate), with no --methods/--exclude and no list of what it took.
"""

from __future__ import annotations

import json
import sqlite3

from journey_helpers import cli, one_error_line


def _methods(db):
    con = sqlite3.connect(db)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM methods"))
    finally:
        con.close()


def test_references_are_left_out_and_create_says_what_it_took(journey_run, tmp_path):
    outputs = journey_run[0] / "outputs" / "shapes" / "seed0"
    db = tmp_path / "default.sqlite"
    r = cli("study", "create", "--outputs", outputs, "--trials", "4", "--study", db)
    assert "2 methods (mymethod, spade)" in r.stdout
    left_out = next(ln for ln in r.stderr.splitlines() if "methods left out:" in ln)
    assert "reference/ground-truth" in left_out
    assert _methods(db) == ["mymethod", "spade"]


def test_methods_and_exclude_choose(journey_run, tmp_path):
    outputs = journey_run[0] / "outputs" / "shapes" / "seed0"
    r = cli("study", "create", "--outputs", outputs, "--trials", "4", "--study", tmp_path / "a.sqlite",
            "--methods", "spade,reference/ground-truth", "--json")
    assert json.loads(r.stdout)["methods"] == ["reference/ground-truth", "spade"]
    r = cli("study", "create", "--outputs", outputs, "--trials", "4", "--study", tmp_path / "b.sqlite",
            "--exclude", "mymethod", code=2)
    assert "at least 2 methods, found 1 (['spade']; left out:" in one_error_line(r)
    assert not (tmp_path / "b.sqlite").exists()
    r = cli("study", "create", "--outputs", outputs, "--trials", "4", "--study", tmp_path / "c.sqlite",
            "--methods", "rabit", code=2)
    assert "unknown method(s) rabit; the outputs hold" in one_error_line(r)
