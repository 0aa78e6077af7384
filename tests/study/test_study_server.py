"""The participant API and the admin export (Flask test client): blinding, refusals, nothing stored on errors."""

from __future__ import annotations

import json

import pytest
from study_helpers import METHODS, Participant, build_study

from evalkit.errors import EvalkitError
from evalkit.study import store
from evalkit.study.server import create_app

LEAK_WORDS = [m.encode() for m in METHODS] + [b"zebra", b"quokka", b"narwhal", b"__ras"]


@pytest.fixture
def app_db(tmp_path):
    db = build_study(tmp_path, trials=6, catch_rate=0.34, repeat_rate=0.34)
    return create_app(db, admin_token="admin-secret-token"), db


def n_rows(db):
    conn = store.connect(db)
    try:
        return (conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    finally:
        conn.close()


def test_full_session_is_blinded_and_recorded(app_db):
    app, db = app_db
    client = app.test_client()
    seen = []  # every (url, body) a participant's browser could see

    def get(url):
        r = client.get(url)
        seen.append((url, r.data))
        return r

    get("/?participant=alice")
    get("/static/study.js")
    get("/static/study.css")
    r = client.post("/api/enrol", json={"participant": "alice"})
    seen.append(("/api/enrol", r.data))
    assert r.status_code == 201 and "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    answered = []
    while True:
        r = get("/api/next")
        data = r.get_json()
        if data["done"]:
            break
        for src in [data["cond"], data["exemplar"], *[c["src"] for c in data["candidates"]]]:
            assert get(src).mimetype == "image/png"
        choice = {"quality": data["candidates"][0]["id"], "style": data["candidates"][-1]["id"]}
        v = client.post("/api/vote", json={"trial": data["trial"], "answers": choice,
                                           "rt_ms": 1234.5, "answer_rt_ms": {"quality": 500, "style": 900}})
        seen.append(("/api/vote", v.data))
        assert v.status_code == 201
        answered.append((data["trial"], choice))
    conn = store.connect(db)
    assert data["total"] == len(answered) == conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    stored = {(r["trial"], r["question"]): r for r in store.export_rows(conn)}
    for trial, choice in answered:
        for q, cand in choice.items():
            slot = conn.execute("SELECT slot FROM candidates WHERE token = ?", (cand,)).fetchone()[0]
            assert stored[(trial, q)]["slot"] == slot and stored[(trial, q)]["participant"] == "alice"
    assert len(stored) == 2 * len(answered)
    # trials came in this participant's recorded order (reproducible from the study seed and the id)
    person = conn.execute("SELECT * FROM participants WHERE external_id = 'alice'").fetchone()
    order = json.loads(person["trial_order"])
    assert (person["order_seed"], order) == store.participant_order(conn, 0, "alice")
    token_of = {r[0]: r[1] for r in conn.execute("SELECT id, token FROM trials")}
    assert [t for t, _ in answered] == [token_of[i] for i in order]
    for url, body in seen:
        for word in LEAK_WORDS:
            assert word not in url.encode() and word not in body, (url, word)


def test_replay_unknown_and_malformed_votes_are_refused_and_store_nothing(app_db):
    app, db = app_db
    bob, carol = Participant(app, "bob"), Participant(app, "carol")
    assert bob.enrol().status_code == 201 and carol.enrol().status_code == 201
    client = bob.client
    data = bob.next()
    good = {"trial": data["trial"],
            "answers": {"quality": data["candidates"][0]["id"], "style": data["candidates"][1]["id"]}}
    other = carol.next()
    cases = [
        ({**good, "trial": "A" * 22}, 404, "unknown trial"),
        ({**good, "answers": {"quality": "B" * 22, "style": good["answers"]["style"]}}, 404, "not a candidate"),
        # a candidate of a different trial
        ({**good, "answers": {"quality": good["answers"]["quality"],
                              "style": next(c["id"] for c in other["candidates"])}}, 404, "not a candidate"),
        ({**good, "participant": "carol"}, 403, "another participant"),
        ({**good, "answers": {"quality": good["answers"]["quality"]}}, 400, "each question"),
        ({**good, "rt_ms": -5}, 400, "reaction time"),
        ({**good, "answers": {"quality": ["a list"], "style": good["answers"]["style"]}}, 400, "candidate token"),
        ({**good, "answers": "quality"}, 400, "each question"),
    ]
    if other["trial"] == data["trial"]:
        cases.pop(2)
    for body, status, message in cases:
        r = client.post("/api/vote", json=body)
        assert r.status_code == status and message in r.get_json()["error"], (body, r.get_json())
    r = client.post("/api/vote", data="not json", content_type="application/json")
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]
    r = app.test_client().post("/api/vote", json=good)  # no session cookie
    assert r.status_code == 401 and "no study session" in r.get_json()["error"]
    assert n_rows(db) == (0, 0)
    assert client.post("/api/vote", json=good).status_code == 201
    replay = client.post("/api/vote", json={**good, "answers": {"quality": good["answers"]["style"],
                                                                "style": good["answers"]["quality"]}})
    assert replay.status_code == 409 and "already answered" in replay.get_json()["error"]
    assert n_rows(db) == (1, 2)
    # the finished trial is not offered again
    assert bob.next()["trial"] != data["trial"]


@pytest.mark.parametrize("url", [
    "/img/../../etc/passwd", "/img/..%2F..%2Fetc%2Fpasswd", "/img//etc/passwd", "/img/%2Fetc%2Fpasswd",
    "/img/..", "/img/study.sqlite", "/img/",
])
def test_images_only_by_token_paths_refused(app_db, url):
    app, db = app_db
    r = app.test_client().get(url)
    assert r.status_code == 400 and "paths are refused" in r.get_json()["error"]
    assert b"root:" not in r.data


def test_image_by_token_and_unknown_token(app_db):
    app, db = app_db
    dan = Participant(app, "dan")
    dan.enrol()
    client = dan.client
    data = dan.next()
    assert client.get(data["cond"]).data[:8] == b"\x89PNG\r\n\x1a\n"
    r = client.get("/img/" + "x" * 22)
    assert r.status_code == 404 and "unknown image token" in r.get_json()["error"]
    r = client.get(f"/img/{str(db)}")  # an absolute path to an existing file
    assert r.status_code == 400


def test_admin_export_needs_token(app_db):
    app, db = app_db
    erin = Participant(app, "erin")
    erin.enrol()
    client = erin.client
    data = erin.next()
    erin.vote(data["trial"], {"quality": data["candidates"][0]["id"], "style": data["candidates"][0]["id"]})
    r = client.get("/admin/results")
    assert r.status_code == 401 and "admin token required" in r.get_json()["error"]
    r = client.get("/admin/results", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and "wrong admin token" in r.get_json()["error"]
    assert b"zebrafinch" not in r.data
    r = client.get("/admin/results", headers={"Authorization": "Bearer admin-secret-token"})
    rows = r.get_json()["rows"]
    assert r.status_code == 200 and len(rows) == 2 and {x["participant"] for x in rows} == {"erin"}
    assert all(x["method"] in METHODS or x["role"] == "exemplar" for x in rows)
    csv_text = client.get("/admin/results?format=csv", headers={"Authorization": "Bearer admin-secret-token"})
    assert csv_text.data.decode().splitlines()[0].startswith("participant,")


def test_admin_token_is_random_by_default(tmp_path):
    db = build_study(tmp_path, trials=2)
    a, b = create_app(db), create_app(db)
    assert len(a.config["ADMIN_TOKEN"]) >= 24 and a.config["ADMIN_TOKEN"] != b.config["ADMIN_TOKEN"]


def test_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(EvalkitError, match="evalkit study create"):
        create_app(tmp_path / "none.sqlite")
    (tmp_path / "junk.sqlite").write_text(json.dumps({"not": "sqlite"}))
    with pytest.raises(EvalkitError, match="not an evalkit study"):
        create_app(tmp_path / "junk.sqlite")


def test_binds_loopback_by_default_and_refuses_bad_participant_ids(app_db):
    from evalkit.study.server import make_server

    app, db = app_db
    server = make_server(db)  # defaults: 127.0.0.1, an ephemeral port
    try:
        assert server.server_address[0] == "127.0.0.1" and server.port > 0
    finally:
        server.server_close()
    client = app.test_client()
    for pid in ["x" * 129, "tab\tinside", "   "]:
        r = client.post("/api/enrol", json={"participant": pid})
        assert r.status_code == 400 and "participant id" in r.get_json()["error"]
    r = client.post("/api/vote", data=b"{" + b" " * 70_000 + b"}", content_type="application/json")
    assert r.status_code == 413
    conn = store.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM participants").fetchone()[0] == 0
