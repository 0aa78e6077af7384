"""Issue 13 items 6-8: study blinding and integrity.

6. Candidates are sRGB pixels in PNGs with only critical chunks: two methods' identical
   pixels are byte-identical whatever profile or metadata their files carried.
7. Participants are enrolled by POST only and get an unguessable session; a vote needs that
   session and is accepted only for the trial the server served; repeats, items shown
   again and exemplar-catch candidates are never byte-identical to a picture served before.
8. Deep JSON is a 400, never a 500; admin CSV cells are spreadsheet-safe; a busy port is one
   error line; waitress serves the same app.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sqlite3
import struct
import threading
import urllib.request

import numpy as np
import pytest
from reliability_helpers import cli, one_error
from PIL import Image, ImageCms

from evalkit.study import analysis, store
from evalkit.study.server import create_app, make_server


# -- a hand-written ICC v2 profile (matrix/TRC): sRGB's primaries with red and green swapped
def _s15(x):
    return struct.pack(">i", round(x * 65536))


def _xyz(v):
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in v)


def _curve(gamma):
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def swapped_profile() -> bytes:
    """ICC.1:2001 layout (128-byte header, tag table, tags). A pixel (r, g, b) in it is the
    colour r * G + g * R + b * B of sRGB's D50 primaries, so in sRGB it is about (g, r, b)."""
    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    tags = [(b"wtpt", _xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", _xyz(green)), (b"gXYZ", _xyz(red)),
            (b"bXYZ", _xyz(blue)), (b"rTRC", _curve(2.2)), (b"gTRC", _curve(2.2)), (b"bTRC", _curve(2.2))]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    header = (struct.pack(">I", start + len(data)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


def chunks(png: bytes) -> list[bytes]:
    out, i = [], 8
    while i < len(png):
        n = int.from_bytes(png[i:i + 4], "big")
        out.append(png[i + 4:i + 8])
        i += 12 + n
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two methods with identical pixels; one saves its PNGs with an sRGB ICC profile and a
    text chunk (the issue's 2.6 KB larger files), the other plainly."""
    root = tmp_path_factory.mktemp("study")
    out = root / "out"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        for sub in ("cond", "exemplar", "real"):
            (out / "inputs" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(out / "inputs" / sub / f"s{i}.png")
        for method in ("alpha", "beta"):
            (out / method / "images").mkdir(parents=True, exist_ok=True)
            extra = {"icc_profile": srgb} if method == "alpha" else {}
            Image.fromarray(pixels).save(out / method / "images" / f"s{i}.png", **extra)
    for method in ("alpha", "beta"):
        (out / method / "meta.json").write_text(json.dumps({"variant": method}))
    db = root / "study.sqlite"
    r = cli("study", "create", "--outputs", out, "--trials", "6", "--catch-rate", "0.67", "--repeat-rate", "0.5",
            "--questions", "quality,style", "--study", db)
    assert r.exit_code == 0, r.stderr
    return db


def test_identical_pixels_are_byte_identical_candidates_without_any_ancillary_chunk(study):
    conn = store.connect(study)
    rows = conn.execute("SELECT c.trial_id, m.name, i.png FROM candidates c JOIN methods m ON m.id = c.method_id "
                        "JOIN media md ON md.token = c.token JOIN images i ON i.id = md.image_id "
                        "WHERE c.role = 'method'").fetchall()
    by_trial: dict[int, dict[str, bytes]] = {}
    for trial, method, png in rows:
        by_trial.setdefault(trial, {})[method] = bytes(png)
    assert len([t for t in by_trial.values() if len(t) == 2]) >= 6
    for pngs in by_trial.values():
        if len(pngs) == 2:
            assert pngs["alpha"] == pngs["beta"]
    for (png,) in conn.execute("SELECT png FROM images"):
        assert set(chunks(bytes(png))) <= {b"IHDR", b"IDAT", b"IEND"}


def test_an_embedded_profile_is_applied_then_dropped(tmp_path):
    """A candidate saved in another RGB space is shown as the sRGB colours it means:
    red/green-swapped primaries give about (g, r, b) (LittleCMS, perceptual intent)."""
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 200, 40, 90
    path = tmp_path / "swapped.png"
    Image.fromarray(pixels).save(path, icc_profile=swapped_profile())
    shown = np.asarray(Image.open(io.BytesIO(store.encode_png(path))))
    assert np.abs(shown.astype(int) - pixels[..., [1, 0, 2]]).max() <= 8  # gamma 2.2 vs the sRGB curve
    assert "icc_profile" not in Image.open(io.BytesIO(store.encode_png(path))).info


def test_repeats_catch_items_and_exemplar_candidates_are_never_served_twice(study):
    conn = store.connect(study)
    served = conn.execute(
        "SELECT t.id AS trial, t.kind, t.catch_kind, t.repeat_of, 'cand' AS role, c.role AS crole, i.png "
        "FROM candidates c JOIN trials t ON t.id = c.trial_id JOIN media m ON m.token = c.token "
        "JOIN images i ON i.id = m.image_id "
        "UNION ALL SELECT t.id, t.kind, t.catch_kind, t.repeat_of, 'cond', NULL, i.png FROM trials t "
        "JOIN media m ON m.token = t.cond_token JOIN images i ON i.id = m.image_id "
        "UNION ALL SELECT t.id, t.kind, t.catch_kind, t.repeat_of, 'exemplar', NULL, i.png FROM trials t "
        "JOIN media m ON m.token = t.exemplar_token JOIN images i ON i.id = m.image_id").fetchall()
    owner: dict[str, tuple] = {}
    for r in served:
        digest = hashlib.sha256(bytes(r["png"])).hexdigest()
        here = (r["trial"], r["role"])
        assert owner.setdefault(digest, here) == here, (here, owner[digest])  # one trial and role per byte string
    kinds = {r["kind"] for r in served} | {r["catch_kind"] for r in served}
    assert {"repeat", "exemplar", "corrupt"} <= kinds
    # ...while the pixels of a repeat are those of its original (the stimulus is unchanged)
    def pixels(trial, role):
        return sorted(np.asarray(Image.open(io.BytesIO(bytes(r["png"])))).tobytes()
                      for r in served if r["trial"] == trial and r["role"] == role)
    for r in served:
        if r["kind"] == "repeat":
            assert pixels(r["trial"], "cand") == pixels(r["repeat_of"], "cand")


@pytest.fixture
def app(study, tmp_path):
    db = tmp_path / "s.sqlite"
    db.write_bytes(study.read_bytes())
    return create_app(db, admin_token="admin-token-for-tests"), db


def _count(db, table):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_no_get_or_cross_site_request_creates_a_participant(app):
    flask_app, db = app
    c = flask_app.test_client()
    assert c.get("/api/next?participant=mallory").status_code == 401
    assert c.get("/?participant=mallory").status_code == 200
    r = c.post("/api/enrol", data={"participant": "mallory"})  # a cross-site HTML form can only send this
    assert r.status_code == 415
    r = c.post("/api/enrol", json={"participant": "mallory"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.get_json()["error"]
    r = c.post("/api/enrol", json={"participant": "mallory"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert _count(db, "participants") == 0


def test_an_id_is_not_a_credential_and_only_the_served_trial_is_accepted(app):
    flask_app, db = app
    alice = flask_app.test_client()
    r = alice.post("/api/enrol", json={"participant": "alice"})
    assert r.status_code == 201
    secret = r.headers["Set-Cookie"].split("evalkit_study=", 1)[1].split(";", 1)[0]
    assert len(secret) >= 43 and secret.encode() not in db.read_bytes()  # 256 bits; only its sha256 is stored
    assert alice.post("/api/enrol", json={"participant": "alice"}).status_code == 200  # a reload: same session
    thief = flask_app.test_client()
    assert thief.post("/api/enrol", json={"participant": "alice"}).status_code == 409
    served = alice.get("/api/next").get_json()
    answers = {"quality": served["candidates"][0]["id"], "style": served["candidates"][1]["id"]}
    r = thief.post("/api/vote", json={"participant": "alice", "trial": served["trial"], "answers": answers})
    assert r.status_code == 401
    thief.set_cookie("evalkit_study", "x" * 43)
    assert thief.post("/api/vote", json={"trial": served["trial"], "answers": answers}).status_code == 401
    conn = store.connect(db)
    other = conn.execute("SELECT token, id FROM trials WHERE token != ? ORDER BY id LIMIT 1",
                         (served["trial"],)).fetchone()
    cands = [x[0] for x in conn.execute("SELECT token FROM candidates WHERE trial_id = ?", (other["id"],))]
    r = alice.post("/api/vote", json={"trial": other["token"], "answers": {"quality": cands[0], "style": cands[0]}})
    assert r.status_code == 409 and "not served" in r.get_json()["error"]
    assert _count(db, "submissions") == 0
    assert alice.post("/api/vote", json={"trial": served["trial"], "answers": answers}).status_code == 201
    assert _count(db, "submissions") == 1


def test_deep_json_is_a_400_and_admin_csv_cells_are_spreadsheet_safe(app, tmp_path):
    flask_app, db = app
    c = flask_app.test_client()
    body = "[" * 30_000 + "]" * 30_000  # 60 KB: under the 64 KiB limit, deep enough to exhaust a recursive parser
    r = c.post("/api/enrol", data=body, content_type="application/json")
    assert r.status_code == 400 and "nested deeper" in r.get_json()["error"]
    evil = '=HYPERLINK("http://evil.example","x")'
    assert c.post("/api/enrol", json={"participant": evil}).status_code == 201
    served = c.get("/api/next").get_json()
    cand = served["candidates"][0]["id"]
    assert c.post("/api/vote", json={"trial": served["trial"], "answers": {"quality": cand, "style": cand}}
                  ).status_code == 201
    auth = {"Authorization": "Bearer admin-token-for-tests"}
    csv_text = c.get("/admin/results?format=csv", headers=auth).get_data(as_text=True)
    cells = [line.split(",")[0] for line in csv_text.splitlines()[1:]]
    assert cells and all(cell.startswith("\"'=HYPERLINK") for cell in cells), cells
    assert c.get("/admin/results", headers=auth).get_json()["rows"][0]["participant"] == evil  # JSON keeps it raw
    files = analysis.write_report(analysis.analyze(db, n_boot=100), tmp_path / "report")
    people = next(f for f in files if f.name == "study_participants.csv").read_text()
    assert "'=HYPERLINK" in people and "\n=HYPERLINK" not in people


@pytest.mark.parametrize("server", ["werkzeug", "waitress"])
def test_busy_port_is_one_error_line(study, server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        one_error(cli("study", "serve", "--study", study, "--port", port, "--server", server),
                  f"cannot listen on 127.0.0.1:{port}", "in use")


def test_waitress_serves_a_participant_end_to_end(app):
    _, db = app
    server = make_server(db, "127.0.0.1", 0, server="waitress", threads=4)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.port}"

    def call(path, body=None, cookie=None):
        req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Set-Cookie")

    try:
        status, _, cookie = call("/api/enrol", {"participant": "w1"})
        assert status == 201
        cookie = cookie.split(";", 1)[0]
        status, served, _ = call("/api/next", cookie=cookie)
        cand = served["candidates"][0]["id"]
        status, voted, _ = call("/api/vote", {"trial": served["trial"], "answers": {"quality": cand, "style": cand}},
                                cookie=cookie)
        assert status == 201 and voted["answered"] == 1
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert _count(db, "submissions") == 1


def test_a_schema_1_study_is_upgraded_by_serve_and_keeps_its_answers(study, tmp_path):
    """Studies created before sessions (schema 1: participants without ``session_sha256`` and
    ``served_trial``) are read as they are and upgraded when served."""
    v1 = tmp_path / "v1.sqlite"
    src = sqlite3.connect(study)
    dst = sqlite3.connect(v1)
    schema_1 = store.SCHEMA.replace(",\n    session_sha256 TEXT UNIQUE, served_trial INTEGER REFERENCES trials(id)", "")
    assert schema_1 != store.SCHEMA
    dst.executescript(schema_1)
    for (table,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'participants'"):
        rows = src.execute(f"SELECT * FROM {table}").fetchall()
        if rows:
            dst.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * len(rows[0]))})", rows)
    dst.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    dst.commit()
    conn = store.connect(v1)  # readable as it is
    assert store.schema_version(conn) == 1
    trial = conn.execute("SELECT id, token FROM trials ORDER BY id LIMIT 1").fetchone()
    cand = conn.execute("SELECT token FROM candidates WHERE trial_id = ? ORDER BY slot LIMIT 1", (trial["id"],)).fetchone()
    store.record_submission(conn, participant="amt-worker", trial_token=trial["token"],
                            answers={q["name"]: cand[0] for q in store.get_questions(conn)}, register=True, source="amt")
    conn.close()
    c = create_app(v1).test_client()
    assert store.schema_version(store.connect(v1)) == store.SCHEMA_VERSION
    assert c.post("/api/enrol", json={"participant": "new"}).status_code == 201
    served = c.get("/api/next").get_json()
    cand = served["candidates"][0]["id"]
    assert c.post("/api/vote", json={"trial": served["trial"], "answers": {"quality": cand, "style": cand}}
                  ).status_code == 201
    assert _count(v1, "submissions") == 2

