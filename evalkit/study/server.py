"""The participant-facing web page (Flask) and the admin results export.

Routes (participants see only opaque tokens; no method name is ever sent to them):

- ``GET /``                      instructions and participant id form (``?participant=ID`` pre-fills it)
- ``POST /api/enrol``            ``{participant}`` (JSON, same origin): registers a new participant and
                                 sets its session cookie (``evalkit_study``: 256 random bits, HttpOnly,
                                 SameSite=Strict); 201 enrolled, 200 this browser's session already is
                                 that participant, 409 the id is taken, 403 a cross-site request
- ``GET /api/next``              the session's next trial (401 without a session); it becomes the one
                                 trial a vote is accepted for
- ``POST /api/vote``             ``{trial, answers: {question: candidate}, rt_ms, answer_rt_ms}`` (JSON,
                                 same origin, with the session): 201 stored; 400 malformed; 401 no session;
                                 404 unknown token; 409 already answered, or not the trial served
- ``GET /img/<token>``           a study image by token; anything that looks like a path is refused (400)
- ``GET /admin/results``         all answers, un-blinded, as JSON (``?format=csv`` for CSV, every text
                                 cell spreadsheet-safe); needs ``Authorization: Bearer <admin token>``
                                 (401 missing, 403 wrong)

A GET never creates or changes a participant's answers, so a cross-site link or image can
neither enrol anyone nor vote; JSON bodies deeper than 32 levels or above 64 KiB are refused
(400 / 413), never a 500. Every request uses its own SQLite connection (WAL, busy timeout),
so votes from many threads are safe; duplicate votes are refused by the database's UNIQUE
constraint. :func:`make_server` serves with werkzeug's threaded server (local studies) or
waitress (``server="waitress"``, a production WSGI server for public studies).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hmac
import io
import json
import re
import secrets
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from evalkit.errors import EvalkitError
from evalkit.study import store

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "evalkit_study"
MAX_JSON_DEPTH = 32
SERVERS = ("werkzeug", "waitress")


def _depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings skipped), found
    without parsing it (so a deeply nested body cannot exhaust the parser's stack)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class _AnyPath(PathConverter):
    """Matches anything after ``/img/`` (leading slashes too), so the handler can refuse it."""

    regex = ".*"
    part_isolating = False


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(db: str | Path, *, admin_token: str | None = None) -> Flask:
    """The study app for database ``db``. ``admin_token`` defaults to a fresh random one
    (``app.config['ADMIN_TOKEN']``), needed for ``/admin/results``."""
    db = Path(db)
    first = store.connect(db)  # fail early (EvalkitError) on a missing or foreign file
    try:
        store.upgrade(first)  # schema 1 -> 2: participant sessions
    except sqlite3.Error as err:
        raise EvalkitError(f"{db}: cannot upgrade the study to schema {store.SCHEMA_VERSION} ({err}); "
                           "is the file writable?", path=db) from err
    finally:
        first.close()
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.config["ADMIN_TOKEN"] = admin_token or secrets.token_urlsafe(24)
    app.config["STUDY_DB"] = str(db)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.url_map.merge_slashes = False  # "/img//etc/passwd" is refused, not redirected
    app.url_map.converters["anypath"] = _AnyPath

    def conn() -> sqlite3.Connection:
        if "conn" not in g:
            g.conn = store.connect(app.config["STUDY_DB"])
        return g.conn

    @app.teardown_appcontext
    def _close(_exc):
        c = g.pop("conn", None)
        if c is not None:
            c.close()

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self'"
        return resp

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return jsonify(error=err.message), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        return jsonify(error=f"{err.code} {err.name}: {err.description}"), err.code

    def _participant_arg(value) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, "give a participant id")
        return value.strip()

    def _same_origin() -> None:
        """Refuse a state-changing request from another site (CSRF): a JSON body (which a
        cross-site form cannot send without a CORS preflight this server never grants),
        and an Origin / Sec-Fetch-Site, when the browser sends them, of this very server."""
        if request.mimetype != "application/json":
            raise ApiError(415, "send the request body as JSON (Content-Type: application/json)")
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if site not in (None, "same-origin", "none") or (
                origin is not None and urlsplit(origin).netloc != urlsplit(request.host_url).netloc):
            raise ApiError(403, "cross-site requests are refused; open the study page itself")

    def _json_body() -> dict:
        raw = request.get_data(cache=True, as_text=False)
        try:
            text = raw.decode("utf-8")
            if _depth(text) > MAX_JSON_DEPTH:
                raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused")
            body = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "send a JSON object {trial, answers, rt_ms}")
        return body

    def _session() -> "sqlite3.Row":
        person = store.participant_by_session(conn(), request.cookies.get(SESSION_COOKIE))
        if person is None:
            raise ApiError(401, "no study session in this browser; start from the study's first page")
        return person

    @app.get("/")
    def index():
        questions = [dict(q) for q in store.get_questions(conn())]
        return render_template("study.html", questions=questions)

    @app.post("/api/enrol")
    def api_enrol():
        _same_origin()
        pid = _participant_arg(_json_body().get("participant"))
        c = conn()
        mine = store.participant_by_session(c, request.cookies.get(SESSION_COOKIE))
        if mine is not None and mine["external_id"] == pid:  # this browser already is that participant
            done, total, _ = store.next_trial(c, mine)
            return jsonify(enrolled=True, answered=done, total=total), 200
        try:
            with store.transaction(c):
                person, secret = store.enroll(c, pid)
        except store.DuplicateParticipant as err:
            raise ApiError(409, str(err)) from err
        except EvalkitError as err:
            raise ApiError(400, str(err)) from err
        done, total, _ = store.next_trial(c, person)
        resp = jsonify(enrolled=True, answered=done, total=total)
        resp.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="Strict", path="/",
                        secure=request.scheme == "https")
        return resp, 201

    @app.get("/api/next")
    def api_next():
        c = conn()
        done, total, trial = store.serve_next(c, _session())
        if trial is None:
            return jsonify(done=True, answered=done, total=total)
        cands = c.execute("SELECT token FROM candidates WHERE trial_id = ? ORDER BY slot", (trial["id"],))
        return jsonify(
            done=False,
            answered=done,
            total=total,
            trial=trial["token"],
            cond=f"/img/{trial['cond_token']}",
            exemplar=f"/img/{trial['exemplar_token']}",
            candidates=[{"id": r["token"], "src": f"/img/{r['token']}"} for r in cands],
        )

    @app.post("/api/vote")
    def api_vote():
        _same_origin()
        body = _json_body()
        person = _session()
        if "participant" in body and body["participant"] != person["external_id"]:
            raise ApiError(403, "this browser's session belongs to another participant")
        answer_rt = body.get("answer_rt_ms") or {}
        if not isinstance(answer_rt, dict):
            raise ApiError(400, "answer_rt_ms must map question -> milliseconds")
        try:
            store.record_submission(
                conn(),
                participant=person["external_id"],
                trial_token=str(body.get("trial", "")),
                answers=body.get("answers"),
                rt_ms=body.get("rt_ms"),
                answer_rt_ms=answer_rt,
                source="local",
                require_served=True,
            )
        except (store.DuplicateSubmission, store.NotServed) as err:
            raise ApiError(409, str(err)) from err
        except store.UnknownToken as err:
            raise ApiError(404, str(err)) from err
        except EvalkitError as err:
            raise ApiError(400, str(err)) from err
        fresh = conn().execute("SELECT * FROM participants WHERE id = ?", (person["id"],)).fetchone()
        done, total, _ = store.next_trial(conn(), fresh)
        return jsonify(ok=True, answered=done, total=total), 201

    @app.get("/img/<anypath:token>")
    def image(token: str):
        if not TOKEN_RE.match(token):
            raise ApiError(400, "images are fetched by their token only; paths are refused")
        data = store.image_bytes(conn(), token)
        if data is None:
            raise ApiError(404, "unknown image token")
        return Response(data, mimetype="image/png")

    @app.get("/admin/results")
    def admin_results():
        auth = request.headers.get("Authorization", "")
        if not auth:
            raise ApiError(401, "admin token required: send 'Authorization: Bearer <token printed at start>'")
        given = auth.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), app.config["ADMIN_TOKEN"].encode()):
            raise ApiError(403, "wrong admin token")
        rows = store.export_rows(conn())
        if request.args.get("format") == "csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["participant"])
            writer.writeheader()
            writer.writerows({k: store.spreadsheet_safe(v) for k, v in r.items()} for r in rows)
            return Response(buf.getvalue(), mimetype="text/csv")
        return jsonify(rows=rows)

    return app


class _Waitress:
    """waitress behind the interface of werkzeug's server (``port``, ``app``,
    ``serve_forever``, ``shutdown``, ``server_close``)."""

    def __init__(self, app, host: str, port: int, threads: int):
        from waitress.server import create_server

        self.app = app
        self._server = create_server(app, host=host, port=port, threads=threads, ident="evalkit-study",
                                     clear_untrusted_proxy_headers=True)
        self.port = self._server.effective_port

    def serve_forever(self) -> None:
        self._server.run()

    def shutdown(self) -> None:
        self._server.close()

    def server_close(self) -> None:
        self._server.close()


def _bind_error(host: str, port: int, err: BaseException, said: str = "") -> EvalkitError:
    if isinstance(err, OSError) and err.errno == errno.EADDRINUSE or "in use" in said:
        why = f"port {port} on {host} is in use by another program"
    elif isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM):
        why = f"no permission to listen on port {port} (ports below 1024 need privileges)"
    elif isinstance(err, OSError) and err.errno == errno.EADDRNOTAVAIL:
        why = f"{host} is not an address of this machine"
    else:
        why = " ".join(said.split()) or str(err)
    return EvalkitError(f"cannot listen on {host}:{port}: {why}; choose another --host or --port "
                        "(--port 0: any free port)")


def make_server(db: str | Path, host: str = "127.0.0.1", port: int = 0, *, admin_token: str | None = None,
                server: str = "werkzeug", threads: int = 8):
    """The study server (``port=0``: an ephemeral port): werkzeug's threaded development
    server (local studies), or ``server="waitress"`` (a production WSGI server with a
    bounded worker pool, for studies open to the public).

    Returns the server; ``server.port`` is the bound port, ``server.app.config['ADMIN_TOKEN']``
    the admin token. Call ``serve_forever()`` (in a thread for tests) and ``shutdown()``.
    A port that cannot be bound is one :class:`EvalkitError` line.
    """
    if server not in SERVERS:
        raise EvalkitError(f"--server {server!r}: choose one of {', '.join(SERVERS)}")
    app = create_app(db, admin_token=admin_token)
    if server == "waitress":
        try:
            return _Waitress(app, host, port, threads)
        except OSError as err:
            raise _bind_error(host, port, err) from None
    from werkzeug.serving import make_server as _make_server

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # werkzeug prints a bind failure and exits 1
            return _make_server(host, port, app, threaded=True)
    except (SystemExit, OSError) as err:
        raise _bind_error(host, port, err, said.getvalue()) from None
