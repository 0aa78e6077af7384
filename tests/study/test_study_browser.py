"""A participant in real headless Chromium (Debian's /usr/bin/chromium, Playwright's Python client)."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_helpers import METHODS, LiveServer, build_study

from evalkit.study import store

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LEAK_WORDS = METHODS + ["zebra", "quokka", "narwhal", "__ras"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason="Debian chromium not installed at /usr/bin/chromium (apt-get install -y chromium)"),
]


def test_participant_completes_study_by_clicking(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    db = build_study(tmp_path, trials=4, catch_rate=0.25, repeat_rate=0.25, questions="quality,style")
    seen: list[tuple[str, bytes]] = []
    clicks: list[tuple[str, str]] = []  # (question, candidate token) as chosen when Next was clicked
    with LiveServer(db) as live, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)

            def record(response):
                try:
                    body = response.body()
                except Exception:  # noqa: BLE001 - redirects and aborted loads have no body
                    body = b""
                seen.append((response.url, body))

            page.on("response", record)
            page.goto(f"{live.url}/")
            page.fill("#participant", "browser-participant")
            page.click("#start")
            n_pages = 0
            while True:
                page.wait_for_selector("#trial:not([hidden]) .choose, #done:not([hidden])")
                if page.is_visible("#done"):
                    break
                n_pages += 1
                progress = page.text_content("#progress")
                assert progress == f"Page {n_pages} of 6"
                seen.append((page.url, page.content().encode()))
                n_cands = page.locator(".candidate").count()
                trial_choice = {}
                # a first choice for each question, then a change of mind for "quality": the last click counts
                for q, k in [("quality", 0), ("style", 1), ("quality", n_cands - 1)]:
                    button = page.locator(f'.choose[data-question="{q}"]').nth(k)
                    button.click()
                    trial_choice[q] = button.get_attribute("data-candidate")
                assert page.is_enabled("#submit")
                page.click("#submit")
                page.wait_for_function("(p) => document.querySelector('#progress').textContent !== p || "
                                       "!document.querySelector('#done').hidden", arg=progress)
                clicks.extend(trial_choice.items())
            assert "Thank you" in page.text_content("#done")
            seen.append((page.url, page.content().encode()))
        finally:
            browser.close()
    conn = store.connect(db)
    total = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    assert n_pages == total == 6
    rows = conn.execute("SELECT c.token, q.name, p.external_id FROM responses r JOIN candidates c ON c.id = r.candidate_id "
                        "JOIN questions q ON q.id = r.question_id JOIN submissions s ON s.id = r.submission_id "
                        "JOIN participants p ON p.id = s.participant_id").fetchall()
    assert sorted(clicks) == sorted((r[1], r[0]) for r in rows)
    assert {r[2] for r in rows} == {"browser-participant"}
    assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == total
    # reaction times were measured by the page: per answer and per trial, all present and >= 0
    times = conn.execute("SELECT r.rt_ms, s.rt_ms FROM responses r JOIN submissions s ON s.id = r.submission_id")
    assert all(a is not None and b is not None and 0 <= a <= b + 1 for a, b in times)
    # blinding: nothing the browser saw names a method (URLs, HTML, JS, JSON, image bytes)
    assert len(seen) > 6 * 5
    for url, body in seen:
        for word in LEAK_WORDS:
            assert word not in url and word.encode() not in body, (url, word)
