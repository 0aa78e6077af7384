"""Bounded load test against the real threaded server on 127.0.0.1: no lost or doubled votes."""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from study_helpers import LiveServer, build_study

from evalkit.study import store

N_PARTICIPANTS, N_TRIALS = 100, 10
TIMEOUT_S = 60  # per request; the pool below is bounded, so the test always stops


def call(url, body=None, session=None):
    """(status, JSON, session cookie value or None) of one request; ``session`` is sent as the cookie."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if session:
        headers["Cookie"] = f"evalkit_study={session}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            cookie = resp.headers.get("Set-Cookie", "")
            secret = cookie.split("evalkit_study=", 1)[1].split(";", 1)[0] if "evalkit_study=" in cookie else None
            return resp.status, json.loads(resp.read()), secret
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), None


def test_1000_concurrent_votes_from_100_participants(tmp_path):
    db = build_study(tmp_path, trials=N_TRIALS, catch_rate=0, repeat_rate=0, questions="quality,style")
    conn = store.connect(db)
    trials = {r["token"]: [c[0] for c in conn.execute("SELECT token FROM candidates WHERE trial_id = ?", (r["id"],))]
              for r in conn.execute("SELECT id, token FROM trials")}
    conn.close()
    assert len(trials) == N_TRIALS
    rng = random.Random(0)
    people = [f"worker-{i:03d}" for i in range(N_PARTICIPANTS)]
    choices = {(p, t): {"quality": rng.choice(c), "style": rng.choice(c)} for p in people for t, c in trials.items()}
    with LiveServer(db) as live, ThreadPoolExecutor(max_workers=64) as pool:
        enrolled = list(pool.map(lambda p: call(f"{live.url}/api/enrol", {"participant": p}), people,
                                 timeout=TIMEOUT_S * 4))
        assert [e[0] for e in enrolled] == [201] * N_PARTICIPANTS
        sessions = dict(zip(people, (e[2] for e in enrolled)))
        start = threading.Barrier(64, timeout=TIMEOUT_S)
        sent: list[dict] = []

        def participate(person, together: bool):
            """One participant: ask for the served trial, answer it, until done; the first 64
            start together, so 64 chains of next/vote run at once."""
            if together:
                start.wait()
            statuses = []
            while True:
                status, served, _ = call(f"{live.url}/api/next", session=sessions[person])
                assert status == 200
                if served["done"]:
                    return statuses
                vote = {"trial": served["trial"], "answers": choices[(person, served["trial"])],
                        "rt_ms": rng.uniform(100, 5000)}
                sent.append({**vote, "participant": person})
                statuses.append(call(f"{live.url}/api/vote", vote, sessions[person])[0])

        futures = [pool.submit(participate, p, i < 64) for i, p in enumerate(people)]
        statuses = Counter(s for f in futures for s in f.result(timeout=TIMEOUT_S * 10))
        assert statuses == {201: 1000}
        # a replayed submission is refused, and so are 15 simultaneous copies of a fresh one
        first = sent[0]
        assert call(f"{live.url}/api/vote", {k: first[k] for k in ("trial", "answers")},
                    sessions[first["participant"]])[0] == 409
        status, _, racer = call(f"{live.url}/api/enrol", {"participant": "racer"})
        assert status == 201
        served = call(f"{live.url}/api/next", session=racer)[1]
        fresh = {"trial": served["trial"], "answers": choices[(people[0], served["trial"])]}
        race = threading.Barrier(16, timeout=TIMEOUT_S)
        results = list(pool.map(lambda _: (race.wait(), call(f"{live.url}/api/vote", fresh, racer)[0])[1], range(16),
                                timeout=TIMEOUT_S * 2))
        assert sorted(results) == [201] + [409] * 15
    conn = store.connect(db)
    rows = conn.execute("SELECT p.external_id, t.token FROM submissions s JOIN participants p ON p.id = s.participant_id "
                        "JOIN trials t ON t.id = s.trial_id WHERE p.external_id != 'racer'").fetchall()
    assert len(rows) == 1000 and len(set(map(tuple, rows))) == 1000  # 0 lost, 0 duplicated
    stored = {(r["participant"], r["trial"], r["question"]): r["method"] for r in store.export_rows(conn)}
    token_method = {r[0]: r[1] for r in conn.execute(
        "SELECT c.token, m.name FROM candidates c JOIN methods m ON m.id = c.method_id")}
    for v in sent:  # every stored answer is the one sent
        for q, cand in v["answers"].items():
            assert stored[(v["participant"], v["trial"], q)] == token_method[cand]
    assert conn.execute("SELECT COUNT(*) FROM submissions s JOIN participants p ON p.id = s.participant_id "
                        "WHERE p.external_id = 'racer'").fetchone()[0] == 1
