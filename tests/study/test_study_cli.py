"""`evalkit study ...` through Typer's CliRunner: exit codes, --json on stdout only."""

from __future__ import annotations

import json

from study_helpers import METHODS, make_outputs
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.study import store


def run(*args):
    return CliRunner().invoke(app, ["study", *map(str, args)])


def test_create_vote_export_analyze(tmp_path):
    out = make_outputs(tmp_path / "out", n_items=8)
    db = tmp_path / "s.sqlite"
    r = run("create", "--outputs", out, "--questions", "quality,style", "--trials", 6, "--catch-rate", 0.2,
            "--seed", 7, "--study", db, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["trials"] == {"main": 6, "catch": 1, "repeat": 1} and sorted(summary["methods"]) == sorted(METHODS)
    assert run("create", "--outputs", out, "--trials", 6, "--study", db).exit_code == 2  # exists
    r = run("export-amt", "--study", db, "--out", tmp_path / "amt", "--image-base-url", "https://x.org/i", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"] == 8
    r = run("analyze", "--study", db)
    assert r.exit_code == 2 and "no answers" in r.stderr
    conn = store.connect(db)
    for trial, in conn.execute("SELECT token FROM trials").fetchall():
        cand = conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                            "WHERE t.token = ? AND c.slot = 1", (trial,)).fetchone()[0]
        for person in ("a", "b"):
            store.record_submission(conn, participant=person, trial_token=trial,
                                    answers={"quality": cand, "style": cand}, register=True)
    conn.close()
    r = run("analyze", "--study", db, "--bootstrap", 200, "--out", tmp_path / "report", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)  # stdout is the JSON and nothing else
    assert result["participants"] == 2 and {row["method"] for row in result["selection"]} == set(METHODS)
    assert (tmp_path / "report" / "study_selection.png").is_file()
    r = run("analyze", "--study", db, "--bootstrap", 200, "--out", tmp_path / "report")
    assert r.exit_code == 0 and "Wilson" in r.stdout and "chi2=" in r.stdout
    # both always picked slot 1, so both failed the catch trial: nobody is left
    r = run("analyze", "--study", db, "--bootstrap", 200, "--exclude-failed-catch", "--out", tmp_path / "report")
    assert r.exit_code == 2 and "after exclusions" in r.stderr


def test_bad_input_exit_2(tmp_path):
    out = make_outputs(tmp_path / "out", n_items=3)
    cases = [
        ["create", "--outputs", tmp_path / "nothing", "--trials", 2, "--study", tmp_path / "a.sqlite"],
        ["create", "--outputs", out, "--trials", 9, "--study", tmp_path / "a.sqlite"],
        ["create", "--outputs", out, "--trials", 2, "--questions", "beauty", "--study", tmp_path / "a.sqlite"],
        ["analyze", "--study", tmp_path / "missing.sqlite"],
        ["import-amt", tmp_path / "missing.csv", "--study", tmp_path / "missing.sqlite"],
        ["serve", "--study", tmp_path / "missing.sqlite", "--port", 0],
    ]
    for args in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a.sqlite").exists()


def test_study_from_a_run_folder_reports_into_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "demo"
    make_outputs(run_dir / "outputs" / "shapes" / "seed0", n_items=4)
    (run_dir / "run.json").write_text("{}")
    db = tmp_path / "s.sqlite"
    r = run("create", "--outputs", run_dir, "--trials", 3, "--catch-rate", 0, "--repeat-rate", 0, "--study", db,
            "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run_dir"] == str(run_dir.resolve())
    conn = store.connect(db)
    for trial, in conn.execute("SELECT token FROM trials").fetchall():
        cand = conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                            "WHERE t.token = ? AND c.slot = 2", (trial,)).fetchone()[0]
        store.record_submission(conn, participant="p", trial_token=trial, answers={"quality": cand, "style": cand},
                                register=True)
    conn.close()
    r = run("analyze", "--study", db, "--bootstrap", 100)
    assert r.exit_code == 0, r.output
    assert (run_dir / "report" / "study.md").is_file() and (run_dir / "report" / "study_selection.png").is_file()
    # a run with two outputs folders is ambiguous
    make_outputs(run_dir / "outputs" / "shapes" / "seed1", n_items=4)
    r = run("create", "--outputs", run_dir, "--trials", 3, "--study", tmp_path / "t.sqlite")
    assert r.exit_code == 2 and "seed1" in r.stderr
