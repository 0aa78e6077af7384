"""Amazon Mechanical Turk in and out: the HIT template + input CSV, and the batch results CSV.

Export (one HIT per trial, catch and repeated trials included and indistinguishable):

- ``hit_template.html``: crowd-html-elements form with MTurk ``${...}`` placeholders
  (``${trial}``, ``${cond_url}``, ``${exemplar_url}``, ``${cand1_url}`` ... ``${candK_url}``)
  and one radio group per question named after it, values ``1..K`` (the slot shown).
- ``input.csv``: one row per trial with exactly those columns.
- ``images/<token>.png``: every picture under its opaque token, to upload to the host
  given as ``image_base_url``.

Import reads the batch results CSV MTurk gives back (``HITId``, ``AssignmentId``,
``WorkerId``, ``AssignmentStatus``, ``WorkTimeInSeconds``, ``Input.*``, ``Answer.*``, ...;
CRLF line ends and quoted fields are handled by :mod:`csv`), maps each ``Answer.<question>``
slot back to a candidate through the stored order, and stores it in the same tables as
local votes (``source='amt'``, participant = WorkerId, reaction time = WorkTimeInSeconds).
All rows are validated first and stored in one transaction: one bad row stores nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from evalkit.errors import EvalkitError
from evalkit.files import atomic_dir
from evalkit.study import store

HERE = Path(__file__).resolve().parent
REQUIRED = ("HITId", "AssignmentId", "WorkerId", "WorkTimeInSeconds", "Input.trial")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def render_hit_template(questions: list[dict], n_slots: int) -> str:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), undefined=StrictUndefined, autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("amt_hit.html").render(
        questions=questions, slots=list(range(1, n_slots + 1)), letters=LETTERS
    )


def export_amt(db: str | Path, out_dir: str | Path, image_base_url: str) -> dict:
    """Write the HIT template, input CSV and token-named images into ``out_dir`` (new folder)."""
    out_dir = Path(out_dir)
    if not image_base_url.startswith(("https://", "http://")):
        raise EvalkitError(
            f"--image-base-url {image_base_url!r} must be an http(s) URL where images/ will be uploaded"
        )
    base = image_base_url.rstrip("/") + "/"
    conn = store.connect(db)
    try:
        questions = [dict(q) for q in store.get_questions(conn)]
        trials = conn.execute("SELECT * FROM trials ORDER BY token").fetchall()
        slots = {
            t["id"]: [r["token"] for r in conn.execute(
                "SELECT token FROM candidates WHERE trial_id = ? ORDER BY slot", (t["id"],))]
            for t in trials
        }
        n_slots = max(len(v) for v in slots.values())
        with atomic_dir(out_dir) as tmp:  # all files or none
            (tmp / "images").mkdir()
            (tmp / "hit_template.html").write_text(render_hit_template(questions, n_slots), encoding="utf-8")
            header = ["trial", "cond_url", "exemplar_url", *[f"cand{k}_url" for k in range(1, n_slots + 1)]]
            tokens = []
            with open(tmp / "input.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for t in trials:
                    row_tokens = [t["cond_token"], t["exemplar_token"], *slots[t["id"]]]
                    tokens.extend(row_tokens)
                    writer.writerow([t["token"], *[f"{base}{tok}.png" for tok in row_tokens]])
            for tok in tokens:
                (tmp / "images" / f"{tok}.png").write_bytes(store.image_bytes(conn, tok))
    finally:
        conn.close()
    return {"hits": len(trials), "images": len(tokens), "out": str(out_dir),
            "questions": [q["name"] for q in questions]}


def _read_results(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise EvalkitError(f"results CSV {path} not found", path=path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise EvalkitError(f"{path} is empty; expected MTurk's batch results CSV", path=path)
            rows = []
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise EvalkitError(
                        f"{path} line {reader.line_num}: {len(fields)} fields, header has {len(header)}; "
                        "nothing imported", path=path)
                rows.append((reader.line_num, dict(zip(header, fields))))
    except (csv.Error, UnicodeDecodeError) as err:
        raise EvalkitError(f"{path} is not a readable CSV ({err}); nothing imported", path=path) from err
    return header, rows


def import_amt(db: str | Path, results_csv: str | Path, *, skip_imported: bool = False) -> dict:
    """Import an MTurk batch results CSV into the study (all rows or none).

    ``skip_imported``: rows whose AssignmentId is already in the study (same worker, same
    trial) are skipped instead of refused, so a batch's growing results file can be
    imported again as assignments come in.
    """
    path = Path(results_csv)
    header, rows = _read_results(path)
    conn = store.connect(db)
    try:
        questions = [q["name"] for q in store.get_questions(conn)]
        missing = [c for c in (*REQUIRED, *[f"Answer.{q}" for q in questions]) if c not in header]
        if missing:
            raise EvalkitError(f"{path} lacks column(s) {missing}; is this MTurk's batch results CSV "
                               "for this study's HIT template?", path=path)
        slots = {}
        for r in conn.execute("SELECT t.token AS trial, c.slot, c.token FROM candidates c "
                              "JOIN trials t ON t.id = c.trial_id"):
            slots.setdefault(r["trial"], {})[str(r["slot"])] = r["token"]
        known = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT s.assignment_id, p.external_id, t.token FROM submissions s JOIN participants p "
            "ON p.id = s.participant_id JOIN trials t ON t.id = s.trial_id WHERE s.assignment_id IS NOT NULL")}
        parsed, skipped, already, seen_pairs, seen_assign = [], 0, 0, set(), set()
        for line, row in rows:
            where = f"{path} line {line}"
            if row.get("AssignmentStatus", "").strip() == "Rejected":
                skipped += 1
                continue
            worker, assignment = row["WorkerId"].strip(), row["AssignmentId"].strip()
            trial = row["Input.trial"].strip()
            if not worker or not assignment:
                raise EvalkitError(f"{where}: empty WorkerId or AssignmentId; nothing imported", path=path)
            if trial not in slots:
                raise EvalkitError(f"{where}: Input.trial {trial!r} is not a trial of this study; "
                                   "nothing imported", path=path)
            answers = {}
            for q in questions:
                value = row[f"Answer.{q}"].strip()
                if value not in slots[trial]:
                    raise EvalkitError(f"{where}: Answer.{q} is {value!r}, expected a slot 1..{len(slots[trial])}; "
                                       "nothing imported", path=path)
                answers[q] = slots[trial][value]
            try:
                seconds = float(row["WorkTimeInSeconds"])
            except ValueError:
                seconds = -1.0
            if not 0 <= seconds < 1e6:
                raise EvalkitError(f"{where}: WorkTimeInSeconds {row['WorkTimeInSeconds']!r} is not a "
                                   "non-negative number; nothing imported", path=path)
            if (worker, trial) in seen_pairs or assignment in seen_assign:
                raise EvalkitError(f"{where}: worker {worker} answered this trial twice in the file "
                                   "(or AssignmentId repeats); nothing imported", path=path)
            seen_pairs.add((worker, trial))
            seen_assign.add(assignment)
            if skip_imported and assignment in known:
                if known[assignment] != (worker, trial):
                    raise EvalkitError(f"{where}: assignment {assignment} was imported before for another worker "
                                       "or trial; nothing imported", path=path)
                already += 1
                continue
            parsed.append((where, worker, trial, answers, seconds * 1000.0, assignment, row["HITId"].strip()))
        with store.transaction(conn):
            for where, worker, trial, answers, rt_ms, assignment, hit in parsed:
                try:
                    store.record_submission(
                        conn, participant=worker, trial_token=trial, answers=answers, rt_ms=rt_ms,
                        source="amt", assignment_id=assignment, hit_id=hit, register=True, in_transaction=True,
                    )
                except store.DuplicateSubmission as err:
                    raise EvalkitError(f"{where}: {err} (already in the study); nothing imported", path=path) from err
    finally:
        conn.close()
    workers = {w for _, w, *_ in parsed}
    return {"imported": len(parsed), "skipped_rejected": skipped, "skipped_imported": already,
            "workers": len(workers)}
