"""The participant-facing web page (Flask) and the admin results export.

Routes (participants see only opaque tokens; no method name is ever sent to them):

- ``GET /``                      instructions and participant id form (``?participant=ID`` pre-fills it)
- ``GET /api/next?participant=`` registers the participant on first call, returns the next trial
- ``POST /api/vote``             ``{participant, trial, answers: {question: candidate}, rt_ms, answer_rt_ms}``
                                 201 stored; 400 malformed; 404 unknown token/participant;
                                 409 the participant already answered this trial
- ``GET /img/<token>``           a study image by token; anything that looks like a path is refused (400)
- ``GET /admin/results``         all answers, un-blinded, as JSON (``?format=csv`` for CSV);
                                 needs ``Authorization: Bearer <admin token>`` (401 missing, 403 wrong)

Every request uses its own SQLite connection (WAL, busy timeout), so votes from many
threads are safe; duplicate votes are refused by the database's UNIQUE constraint.
"""

from __future__ import annotations

import contextlib
import csv
import hmac
import io
import re
import secrets
import sqlite3
from pathlib import Path

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from evalkit.errors import EvalkitError
from evalkit.study import store

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
HERE = Path(__file__).resolve().parent


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
    store.connect(db).close()  # fail early (EvalkitError) on a missing or foreign file
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
            raise ApiError(400, "give a participant id (?participant=ID)")
        return value.strip()

    @app.get("/")
    def index():
        questions = [dict(q) for q in store.get_questions(conn())]
        return render_template("study.html", questions=questions)

    @app.get("/api/next")
    def api_next():
        pid = _participant_arg(request.args.get("participant"))
        c = conn()
        person = c.execute("SELECT * FROM participants WHERE external_id = ?", (pid,)).fetchone()
        if person is None:  # first visit: register (a write) with this participant's trial order
            try:
                with store.transaction(c):
                    person = store.ensure_participant(c, pid, "local")
            except EvalkitError as err:
                raise ApiError(400, str(err)) from err
        done, total, trial = store.next_trial(c, person)
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
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "send a JSON object {participant, trial, answers, rt_ms}")
        pid = _participant_arg(body.get("participant"))
        answer_rt = body.get("answer_rt_ms") or {}
        if not isinstance(answer_rt, dict):
            raise ApiError(400, "answer_rt_ms must map question -> milliseconds")
        try:
            store.record_submission(
                conn(),
                participant=pid,
                trial_token=str(body.get("trial", "")),
                answers=body.get("answers"),
                rt_ms=body.get("rt_ms"),
                answer_rt_ms=answer_rt,
                source="local",
            )
        except store.DuplicateSubmission as err:
            raise ApiError(409, str(err)) from err
        except store.UnknownToken as err:
            raise ApiError(404, str(err)) from err
        except EvalkitError as err:
            raise ApiError(400, str(err)) from err
        person = conn().execute("SELECT * FROM participants WHERE external_id = ?", (pid,)).fetchone()
        done, total, _ = store.next_trial(conn(), person)
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
            writer.writerows(rows)
            return Response(buf.getvalue(), mimetype="text/csv")
        return jsonify(rows=rows)

    return app


def make_server(db: str | Path, host: str = "127.0.0.1", port: int = 0, *, admin_token: str | None = None):
    """A threaded werkzeug server for the study (``port=0``: an ephemeral port).

    Returns the server; ``server.port`` is the bound port, ``server.app.config['ADMIN_TOKEN']``
    the admin token. Call ``serve_forever()`` (in a thread for tests) and ``shutdown()``.
    """
    from werkzeug.serving import make_server as _make_server

    app = create_app(db, admin_token=admin_token)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # werkzeug prints a bind failure and exits 1
            return _make_server(host, port, app, threaded=True)
    except (SystemExit, OSError) as err:
        why = " ".join(said.getvalue().split()) or str(err)
        raise EvalkitError(f"cannot listen on {host}:{port} ({why}); choose another --host or --port "
                           "(--port 0: any free port)") from None
