"""AMT out (HIT template + input CSV) and in (batch results CSV in MTurk's column layout)."""

from __future__ import annotations

import csv
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from study_helpers import METHODS, Participant, build_study

from evalkit.errors import EvalkitError
from evalkit.study import amt, analysis, store
from evalkit.study.server import create_app

# MTurk's batch results columns, in its order (Input.* and Answer.* are the HIT's)
AMT_HEAD = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime", "MaxAssignments",
            "RequesterAnnotation", "AssignmentDurationInSeconds", "AutoApprovalDelayInSeconds", "Expiration",
            "NumberOfSimilarHITs", "LifetimeInSeconds", "AssignmentId", "WorkerId", "AssignmentStatus",
            "AcceptTime", "SubmitTime", "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
            "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate", "Last7DaysApprovalRate"]


def results_csv(path, export_dir, answers, extra_rows=()):
    """Write MTurk-style results: CRLF, every field quoted, a field with a comma, quote and newline."""
    inputs = list(csv.DictReader(open(export_dir / "input.csv", newline="")))
    by_trial = {r["trial"]: r for r in inputs}
    in_cols = [f"Input.{c}" for c in inputs[0]]
    ans_cols = sorted({f"Answer.{q}" for a in answers for q in a["answers"]})
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(AMT_HEAD + in_cols + ans_cols + ["Approve", "Reject"])
        for k, a in enumerate([*answers, *extra_rows]):
            meta = {"HITId": f"3HIT{a['trial'][:6]}", "HITTypeId": "3TYPE", "Title": "Pick the best image",
                    "Description": 'Compare images, then "pick" one;\nit takes a minute', "Keywords": "image, study",
                    "Reward": "$0.05", "CreationTime": "Sat Nov 21 10:00:00 PST 2026", "MaxAssignments": "5",
                    "AssignmentId": a.get("assignment", f"3ASSIGN{k:05d}"), "WorkerId": a["worker"],
                    "AssignmentStatus": a.get("status", "Submitted"), "WorkTimeInSeconds": str(a.get("secs", 12)),
                    "LifetimeApprovalRate": "100% (10/10)"}
            row = [meta.get(c, "") for c in AMT_HEAD]
            row += [by_trial[a["trial"]][c[6:]] if a["trial"] in by_trial else a["trial"] for c in in_cols]
            row += [a["answers"].get(c[7:], "") for c in ans_cols] + ["", ""]
            w.writerow(row)
    return path


@pytest.fixture
def exported(tmp_path):
    db = build_study(tmp_path, trials=6, catch_rate=0.34, repeat_rate=0.34)
    out = tmp_path / "amt"
    summary = amt.export_amt(db, out, "https://example.org/study-images")
    return db, out, summary


def test_export_template_and_input_csv_are_blinded(exported):
    db, out, summary = exported
    html = (out / "hit_template.html").read_text()
    inputs = list(csv.DictReader(open(out / "input.csv", newline="")))
    placeholders = set(re.findall(r"\$\{(\w+)\}", html))
    assert placeholders == set(inputs[0]) == {"trial", "cond_url", "exemplar_url", "cand1_url", "cand2_url",
                                              "cand3_url"}
    assert '<input type="radio" name="quality" value="3" required>' in html and 'name="style"' in html
    conn = store.connect(db)
    assert len(inputs) == summary["hits"] == conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    for row in inputs:  # each candidate URL is the stored slot order of that trial
        slots = [r[0] for r in conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                                            "WHERE t.token = ? ORDER BY c.slot", (row["trial"],))]
        assert [row[f"cand{k}_url"] for k in (1, 2, 3)] == [f"https://example.org/study-images/{s}.png" for s in slots]
    files = sorted(p.name for p in (out / "images").iterdir())
    assert len(files) == summary["images"] == 5 * len(inputs)  # cond, exemplar, 3 candidates
    everything = html + (out / "input.csv").read_text() + " ".join(files)
    for word in METHODS + ["zebra", "quokka", "narwhal"]:
        assert word not in everything
        assert not any(word.encode() in p.read_bytes() for p in (out / "images").iterdir())
    with pytest.raises(EvalkitError, match="not empty"):
        amt.export_amt(db, out, "https://example.org/x")
    with pytest.raises(EvalkitError, match="http"):
        amt.export_amt(db, out.parent / "amt2", "ftp://example.org")
    assert not (out.parent / "amt2").exists()


def simulated_answers(db, n_workers=5, seed=0):
    conn = store.connect(db)
    trials = {r[0]: r[1] for r in conn.execute("SELECT t.token, COUNT(c.id) FROM trials t "
                                                "JOIN candidates c ON c.trial_id = t.id GROUP BY t.id")}
    conn.close()
    rng = np.random.default_rng(seed)
    return [{"worker": f"A{w:03d}XYZ", "trial": t, "secs": int(rng.integers(5, 60)),
             "answers": {"quality": str(rng.integers(1, k + 1)), "style": str(rng.integers(1, k + 1))}}
            for w in range(n_workers) for t, k in trials.items()]


def test_import_gives_same_analysis_as_local_votes(exported, tmp_path):
    db, out, _ = exported
    local_db = tmp_path / "local.sqlite"
    shutil.copy(db, local_db)  # the same study (same tokens), one copy per route
    answers = simulated_answers(db)
    # local: the same choices through the participant API, each worker answering the trials it is served
    app = create_app(local_db)
    conn = store.connect(local_db)
    by_worker: dict[str, dict[str, dict]] = {}
    for a in answers:
        by_worker.setdefault(a["worker"], {})[a["trial"]] = a
    for worker, mine in by_worker.items():
        person = Participant(app, worker)
        assert person.enrol().status_code == 201
        while not (served := person.next())["done"]:
            a = mine[served["trial"]]
            slots = {str(r[0]): r[1] for r in conn.execute(
                "SELECT c.slot, c.token FROM candidates c JOIN trials t ON t.id = c.trial_id WHERE t.token = ?",
                (a["trial"],))}
            r = person.vote(a["trial"], {q: slots[s] for q, s in a["answers"].items()}, rt_ms=a["secs"] * 1000.0)
            assert r.status_code == 201
    conn.close()
    # AMT: the same choices as a results CSV (plus one rejected assignment, which is skipped)
    rejected = {**answers[0], "worker": "AREJECTED", "status": "Rejected", "assignment": "3REJ"}
    path = results_csv(tmp_path / "Batch_123_batch_results.csv", out, answers, [rejected])
    assert b"\r\n" in path.read_bytes() and b'""pick""' in path.read_bytes()  # quotes doubled
    summary = amt.import_amt(db, path)
    assert summary == {"imported": len(answers), "skipped_rejected": 1, "skipped_imported": 0, "workers": 5}
    a_local = analysis.analyze(local_db, n_boot=300, seed=1)
    a_amt = analysis.analyze(db, n_boot=300, seed=1)
    pd.testing.assert_frame_equal(a_local.table, a_amt.table)
    pd.testing.assert_frame_equal(a_local.questions, a_amt.questions)
    pd.testing.assert_frame_equal(a_local.participants, a_amt.participants)
    assert a_amt.summary["sources"] == ["amt"] and a_local.summary["sources"] == ["local"]
    # re-importing the same file is refused and stores nothing more
    with pytest.raises(EvalkitError, match="already"):
        amt.import_amt(db, path)
    conn = store.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == len(answers)
    # a grown batch file: old assignments skipped on request, the new ones imported
    more = simulated_answers(db, n_workers=6, seed=5)[-10:]  # worker A005XYZ, new assignments
    more = [{**a, "assignment": f"3NEW{k}"} for k, a in enumerate(more)]
    grown = results_csv(tmp_path / "grown.csv", out, answers + more)
    summary = amt.import_amt(db, grown, skip_imported=True)
    assert summary["imported"] == 10 and summary["skipped_imported"] == len(answers)
    assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == len(answers) + 10


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.__setitem__(3, {**a[3], "answers": {**a[3]["answers"], "quality": "7"}}), "expected a slot"),
    (lambda a: a.__setitem__(3, {**a[3], "answers": {**a[3]["answers"], "style": "x"}}), "Answer.style"),
    (lambda a: a.__setitem__(3, {**a[3], "trial": "unknown-trial-token"}), "not a trial"),
    (lambda a: a.__setitem__(3, {**a[3], "secs": "soon"}), "WorkTimeInSeconds"),
    (lambda a: a.__setitem__(3, {**a[3], "worker": ""}), "empty WorkerId"),
    (lambda a: a.append({**a[3], "assignment": "3OTHER"}), "twice"),
])
def test_import_bad_row_stores_nothing(exported, tmp_path, mutate, message):
    db, out, _ = exported
    answers = simulated_answers(db, n_workers=2)
    mutate(answers)
    path = results_csv(tmp_path / "bad.csv", out, answers)
    with pytest.raises(EvalkitError, match=message) as err:
        amt.import_amt(db, path)
    assert "line" in str(err.value) and "nothing imported" in str(err.value)
    conn = store.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM participants").fetchone()[0] == 0


def test_import_malformed_csv(exported, tmp_path):
    db, out, _ = exported
    good = results_csv(tmp_path / "good.csv", out, simulated_answers(db, n_workers=1))
    text = good.read_text()
    (tmp_path / "short.csv").write_text(text + '"only","three","fields"\r\n')
    with pytest.raises(EvalkitError, match="3 fields"):
        amt.import_amt(db, tmp_path / "short.csv")
    (tmp_path / "nocol.csv").write_text(text.replace('"Answer.style"', '"Answer.colour"'))
    with pytest.raises(EvalkitError, match="Answer.style"):
        amt.import_amt(db, tmp_path / "nocol.csv")
    (tmp_path / "quote.csv").write_text(text + '"unterminated,\r\n')
    with pytest.raises(EvalkitError, match="nothing imported|not a readable CSV"):
        amt.import_amt(db, tmp_path / "quote.csv")
    with pytest.raises(EvalkitError, match="not found"):
        amt.import_amt(db, tmp_path / "missing.csv")
    conn = store.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 0
