"""Throughput of vote submissions through the real threaded server on 127.0.0.1.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/bench_study_votes.py --benchmark-only -q
One round = 20 fresh participants x 10 trials = 200 votes, 32 client threads.
"""

from __future__ import annotations

import itertools
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "study"))

from study_helpers import LiveServer, build_study  # noqa: E402

from evalkit.study import store  # noqa: E402


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status


def test_vote_throughput(benchmark, tmp_path):
    db = build_study(tmp_path, trials=10, catch_rate=0, repeat_rate=0)
    conn = store.connect(db)
    trials = {r[0]: r[1] for r in conn.execute("SELECT t.token, MIN(c.token) FROM trials t "
                                                "JOIN candidates c ON c.trial_id = t.id GROUP BY t.id")}
    conn.close()
    counter = itertools.count()
    with LiveServer(db) as live, ThreadPoolExecutor(max_workers=32) as pool:
        def setup():
            people = [f"bench-{next(counter)}" for _ in range(20)]
            for p in people:
                urllib.request.urlopen(f"{live.url}/api/next?participant={p}", timeout=60).read()
            votes = [{"participant": p, "trial": t, "answers": {"quality": c, "style": c}}
                     for p in people for t, c in trials.items()]
            return (votes,), {}

        def run(votes):
            statuses = list(pool.map(lambda v: _post(f"{live.url}/api/vote", v), votes))
            assert statuses == [201] * len(votes)

        benchmark.pedantic(run, setup=setup, rounds=5)
