"""Statistics against hand-computed cases and the packages' own functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from study_helpers import METHODS, build_study, candidate_for, make_outputs, trial_tokens
from scipy import stats
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from evalkit.errors import EvalkitError
from evalkit.study import analysis, store

Z95 = 1.959963984540054


def test_wilson_interval_hand_formula():
    k, n = 7, 20
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    lo, hi = analysis.wilson_interval(k, n)
    assert lo == pytest.approx(centre - half, abs=1e-12) and hi == pytest.approx(centre + half, abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.1812, 0.5671)


def test_fleiss_and_randolph_kappa_hand_table():
    # 3 subjects, 3 raters, 2 categories: P_i = 1, 1/3, 1 -> P = 7/9; p_j = 5/9, 4/9 -> Pe = 41/81
    table = np.array([[3, 0], [2, 1], [0, 3]])
    k_fleiss, k_randolph = analysis.kappas(table)
    assert k_fleiss == pytest.approx((7 / 9 - 41 / 81) / (1 - 41 / 81)) == pytest.approx(0.55)
    assert k_randolph == pytest.approx((7 / 9 - 1 / 2) / (1 / 2)) == pytest.approx(5 / 9)


def test_chi_square_hand_formula():
    counts = [30, 12, 18]
    expected = sum(counts) / 3
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    stat, p = analysis.chi_square_uniform(counts)
    assert stat == pytest.approx(chi2) == pytest.approx(8.4)
    assert p == pytest.approx(math.exp(-chi2 / 2))  # chi-square survival with 2 df is exp(-x/2)


def test_luce_strengths_closed_form_and_bradley_terry():
    # every method in every choice set: the Luce MLE is log(count) up to a constant
    counts = np.array([14, 5, 9])
    winners = np.repeat(np.arange(3), counts)
    t = analysis.luce_strengths(winners, [range(3)] * counts.sum(), 3)
    assert t == pytest.approx(np.log(counts) - np.log(counts).mean(), abs=1e-6)
    # two methods, unequal choice sets: Bradley-Terry, P(0 beats 1) = w01 / n01 by MLE
    winners = [0] * 7 + [1] * 3
    t2 = analysis.luce_strengths(winners, [(0, 1)] * 10, 2)
    assert 1 / (1 + math.exp(t2[1] - t2[0])) == pytest.approx(0.7, abs=1e-6)


def test_cluster_bootstrap_reflects_participant_clustering():
    rng = np.random.default_rng(1)
    # 10 participants x 30 items; half always choose method 0, half method 1: strongly clustered
    participant = np.repeat(np.arange(10), 30)
    item = np.tile(np.arange(30), 10)
    choice = (participant % 2).astype(int)
    lo, hi, reps = analysis.cluster_bootstrap(participant, item, choice, 2, n_boot=2000, seed=0)
    wl, wh = analysis.wilson_interval(150, 300)
    assert reps.mean(0) == pytest.approx([0.5, 0.5], abs=0.02)
    assert (hi[0] - lo[0]) > 2.5 * (wh - wl)  # independence badly understates the uncertainty
    # with one item and one answer per participant, it is the ordinary bootstrap of a proportion:
    # replicate sd ~ sqrt(p(1-p)/n)
    n = 400
    choice = (rng.random(n) < 0.3).astype(int)
    _, _, reps = analysis.cluster_bootstrap(np.arange(n), np.zeros(n, int), choice, 2, n_boot=4000, seed=2)
    p = choice.mean()
    assert reps[:, 1].std() == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.08)
    # no variation at all -> a degenerate interval
    lo, hi, _ = analysis.cluster_bootstrap(np.arange(20), np.arange(20), np.zeros(20, int), 3, n_boot=200)
    assert list(lo) == list(hi) == [1.0, 0.0, 0.0]


def vote(conn, participant, trial, choices):
    answers = {q: candidate_for(conn, trial, method=m) if m != "@exemplar" else
               candidate_for(conn, trial, role="exemplar") for q, m in choices.items()}
    store.record_submission(conn, participant=participant, trial_token=trial, answers=answers, rt_ms=1000.0,
                            register=True)


def test_analyze_two_methods_matches_hand_kappa_and_packages(tmp_path):
    make_outputs(tmp_path / "out", n_items=3, methods=["alpha", "beta"])
    db = build_study(tmp_path, trials=3, catch_rate=0, repeat_rate=0, questions="quality")
    conn = store.connect(db)
    trials = sorted(trial_tokens(conn), key=lambda t: conn.execute(
        "SELECT i.name FROM trials t JOIN items i ON i.id = t.item_id WHERE t.token = ?", (t,)).fetchone()[0])
    # the hand table above: trial 1: 3x alpha; trial 2: 2 alpha 1 beta; trial 3: 3x beta
    pattern = {"r1": ["alpha", "alpha", "beta"], "r2": ["alpha", "beta", "beta"], "r3": ["alpha", "alpha", "beta"]}
    for person, picks in pattern.items():
        for trial, method in zip(trials, picks):
            vote(conn, person, trial, {"quality": method})
    conn.close()
    res = analysis.analyze(db, n_boot=500)
    q = res.questions.set_index("question").loc["quality"]
    assert q["fleiss_kappa"] == pytest.approx(0.55) and q["randolph_kappa"] == pytest.approx(5 / 9)
    t = res.table.set_index("method")
    assert list(t["chosen"]) == [5, 4] and list(t["n"]) == [9, 9]
    lo, hi = proportion_confint(np.array([5, 4]), 9, method="wilson")
    assert list(t["wilson_low"]) == pytest.approx(lo) and list(t["wilson_high"]) == pytest.approx(hi)
    assert q["chi2"] == pytest.approx(stats.chisquare([5, 4]).statistic)
    assert q["p_value"] == pytest.approx(stats.chisquare([5, 4]).pvalue)
    assert t.loc["alpha", "luce_prob"] == pytest.approx(5 / 9, abs=1e-6)


def test_analyze_catch_exclusion_consistency_and_package_kappa(tmp_path):
    db = build_study(tmp_path, trials=6, catch_rate=0.34, repeat_rate=0.34, questions="quality,style", seed=3)
    conn = store.connect(db)
    main, catch, repeat = (trial_tokens(conn, k) for k in ("main", "catch", "repeat"))
    rng = np.random.default_rng(0)
    fav = {}
    for i, person in enumerate([f"p{i}" for i in range(6)]):
        careless = i == 5
        for trial in main:
            m = METHODS[rng.integers(3)] if careless else METHODS[(i + len(fav)) % 3]
            fav[(person, trial)] = m
            vote(conn, person, trial, {"quality": m, "style": METHODS[rng.integers(3)]})
        for trial in repeat:
            orig = conn.execute("SELECT o.token FROM trials t JOIN trials o ON o.id = t.repeat_of WHERE t.token = ?",
                                (trial,)).fetchone()[0]
            m = fav[(person, orig)] if i % 2 == 0 else next(x for x in METHODS if x != fav[(person, orig)])
            vote(conn, person, trial, {"quality": m, "style": m})
        for trial in catch:
            kind, = conn.execute("SELECT catch_kind FROM trials WHERE token = ?", (trial,)).fetchone()
            if careless:  # picks a corrupted / non-exemplar candidate
                bad = conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                                   "WHERE t.token = ? AND c.expected = 0 LIMIT 1", (trial,)).fetchone()[0]
                answers = {"quality": bad, "style": bad}
            else:
                good = conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                                    "WHERE t.token = ? AND c.expected = 1", (trial,)).fetchone()[0]
                answers = {"quality": good, "style": good}
            store.record_submission(conn, participant=person, trial_token=trial, answers=answers, register=True)
    conn.close()
    kept = analysis.analyze(db, n_boot=300)
    people = kept.participants.set_index("participant")
    assert people.loc["p5", "catch_pass_rate"] == 0.0
    assert (people.drop("p5")["catch_pass_rate"] == 1.0).all()
    # corrupt catch checks both questions, exemplar catch only "style": 2 + 1 answers checked
    assert (people["catch_checked"] == 3).all()
    assert kept.summary["excluded"] == [] and kept.summary["catch_pass_rate"] == pytest.approx(15 / 18)
    dropped = analysis.analyze(db, n_boot=300, exclude_failed_catch=True)
    assert dropped.summary["excluded"] == ["p5"]
    assert dropped.questions.set_index("question").loc["quality", "participants"] == 5
    assert dropped.table["n"].iloc[0] == 5 * 6
    # consistency: p0, p2, p4 repeat their answer, p1, p3 change; p5 excluded
    q = dropped.questions.set_index("question").loc["quality"]
    assert q["repeat_pairs"] == 5 * 2 and q["consistency"] == pytest.approx(3 / 5)
    # kappa equals statsmodels on the raw rater matrix (trials x raters -> counts)
    answers, methods, _ = analysis.load_answers(db)
    sub = answers[(answers["kind"] == "main") & (answers["question"] == "quality") & (answers["participant"] != "p5")]
    raters = sub.pivot(index="trial", columns="participant", values="method").apply(
        lambda col: col.map({m: k for k, m in enumerate(methods)}))
    table, _ = aggregate_raters(raters.to_numpy(), n_cat=3)
    assert q["fleiss_kappa"] == pytest.approx(fleiss_kappa(table, method="fleiss"))


def test_report_files_and_empty_study(tmp_path):
    db = build_study(tmp_path, trials=4, catch_rate=0, repeat_rate=0)
    with pytest.raises(EvalkitError, match="no answers"):
        analysis.analyze(db)
    conn = store.connect(db)
    for trial in trial_tokens(conn):
        vote(conn, "solo", trial, {"quality": "zebrafinch", "style": "narwhalnet"})
    conn.close()
    res = analysis.analyze(db, n_boot=200)
    files = analysis.write_report(res, tmp_path / "report")
    assert {f.name for f in files} == {"study_selection.csv", "study_questions.csv", "study_participants.csv",
                                       "study_summary.json", "study.md", "study_selection.png"}
    assert (tmp_path / "report" / "study_selection.png").read_bytes()[:4] == b"\x89PNG"
    assert "| quality | zebrafinch | 4 / 4 |" in (tmp_path / "report" / "study.md").read_text()
    # a never-chosen method: Luce fit is regularised (alpha recorded), kappa undefined with one rater
    q = res.questions.set_index("question").loc["quality"]
    assert q["luce_alpha"] > 0 and math.isnan(q["fleiss_kappa"])


def test_position_bias_is_detected_and_does_not_favour_a_method(tmp_path):
    db = build_study(tmp_path, trials=12, catch_rate=0, repeat_rate=0, questions="quality", n_items=12)
    conn = store.connect(db)
    for person in ["a", "b", "c"]:  # everyone always clicks the first candidate shown
        for trial in trial_tokens(conn):
            first = conn.execute("SELECT c.token FROM candidates c JOIN trials t ON t.id = c.trial_id "
                                 "WHERE t.token = ? AND c.slot = 1", (trial,)).fetchone()[0]
            store.record_submission(conn, participant=person, trial_token=trial, answers={"quality": first},
                                    register=True)
    conn.close()
    res = analysis.analyze(db, n_boot=200)
    q = res.questions.set_index("question").loc["quality"]
    assert q["position_chi2"] == pytest.approx(stats.chisquare([36, 0, 0]).statistic) and q["position_p"] < 1e-10
    # balanced orders: 12 trials, 3 methods -> each method shown first in exactly 4 trials
    assert list(res.table["chosen"]) == [12, 12, 12] and q["p_value"] == pytest.approx(1.0)
