"""Statistics of a forced-choice study: one path for local and AMT answers.

Per question, over the ``main`` trials of the included participants:

- selection rate of each method, ``k / n``, with a Wilson score interval
  (``statsmodels.stats.proportion.proportion_confint(method='wilson')``):
  ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``. It treats answers as
  independent, which they are not (a participant answers many trials, an item is seen
  by many participants), hence also
- a two-way cluster ("pigeonhole", Owen 2007) bootstrap: each replicate resamples
  participants and items with replacement; an answer's weight is the product of its
  participant's and its item's multiplicities; percentile interval of the weighted rate.
- Pearson's chi-square test of the counts against uniform choice (``scipy.stats.chisquare``),
  and the same test on the positions chosen (position bias; candidate orders are
  position-balanced, so a position preference does not favour any method). Both treat
  answers as independent; read them with the bootstrap intervals.
- Luce (Plackett-Luce top-1; Bradley-Terry for two methods) strengths from the choices,
  ``P(i chosen from S) = exp(t_i) / sum_{j in S} exp(t_j)``, fitted by I-LSR
  (``choix.ilsr_top1``); mean-centred log-strengths and the implied choice probabilities.
  With every method in every trial the MLE is ``t_i = log k_i + c``.
- Inter-rater agreement over trials answered by the same number of raters: Fleiss' kappa
  and Randolph's free-marginal kappa (``statsmodels.stats.inter_rater.fleiss_kappa``).
- Consistency: share of repeated trials answered with the same method as the original.

Catch trials give each participant a pass rate (``corrupt``: every question must pick the
one clean candidate; ``exemplar``: style questions must pick the exemplar);
``exclude_failed_catch`` drops participants whose pass rate is below ``min_catch_pass``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import choix
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from evalkit.errors import EvalkitError
from evalkit.files import atomic_path, write_atomic
from evalkit.study import store


def wilson_interval(count, nobs, alpha: float = 0.05):
    """Wilson score interval for ``count`` successes of ``nobs`` (statsmodels)."""
    return proportion_confint(count, nobs, alpha=alpha, method="wilson")


def chi_square_uniform(counts) -> tuple[float, float]:
    """Pearson chi-square statistic and p-value of ``counts`` against equal expected counts."""
    res = stats.chisquare(np.asarray(counts, dtype=float))
    return float(res.statistic), float(res.pvalue)


def cluster_bootstrap(participant, item, choice, n_methods: int, *, n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05, chunk: int = 250) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-way cluster bootstrap of selection rates over participants and items.

    ``participant``, ``item``, ``choice``: integer codes, one entry per answer. Each of the
    ``n_boot`` replicates draws participants and items with replacement (multinomial
    multiplicities ``w_p``, ``w_i``); answer ``r`` gets weight ``w_p[p_r] * w_i[i_r]``;
    the replicate's rate of method ``m`` is ``sum_r w_r [c_r = m] / sum_r w_r``.
    Returns (low, high, replicates ``[n_boot, n_methods]``): percentile interval.
    """
    participant, item, choice = (np.asarray(a, dtype=np.int64) for a in (participant, item, choice))
    n_p, n_i = int(participant.max()) + 1, int(item.max()) + 1
    rng = np.random.default_rng(seed)
    onehot = np.eye(n_methods)[choice]
    reps = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        wp = rng.multinomial(n_p, np.full(n_p, 1.0 / n_p), size=b).astype(float)
        wi = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=b).astype(float)
        w = wp[:, participant] * wi[:, item]
        total = w.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append((w @ onehot) / total)
    reps = np.concatenate(reps)
    reps = reps[np.isfinite(reps).all(1)]  # a replicate that drew no answer at all
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high, reps


def luce_strengths(winners, choice_sets, n_methods: int, *, alpha: float = 0.0) -> np.ndarray:
    """Mean-centred Luce log-strengths from top-1 choices (``choix.ilsr_top1``)."""
    data = [(int(w), tuple(int(j) for j in s if j != w)) for w, s in zip(winners, choice_sets)]
    return choix.ilsr_top1(n_methods, data, alpha=alpha)


def kappas(table: np.ndarray) -> tuple[float, float]:
    """Fleiss' and Randolph's kappa of a subjects x categories count table (statsmodels)."""
    return float(fleiss_kappa(table, method="fleiss")), float(fleiss_kappa(table, method="randolph"))


@dataclass
class StudyAnalysis:
    """``table``: one row per (question, method); ``questions``: one row per question;
    ``participants``: catch pass rates and exclusions; ``summary``: everything as JSON-ready dict."""

    table: pd.DataFrame
    questions: pd.DataFrame
    participants: pd.DataFrame
    summary: dict


def load_answers(db: str | Path) -> tuple[pd.DataFrame, list[str], dict[str, bool]]:
    """Every stored answer (local and AMT alike), the method names and each question's
    exemplar-catch flag."""
    conn = store.connect(db)
    try:
        rows = store.export_rows(conn)
        methods = [r["name"] for r in conn.execute("SELECT name FROM methods ORDER BY name")]
        questions = {q["name"]: bool(q["exemplar_catch"]) for q in store.get_questions(conn)}
    finally:
        conn.close()
    columns = ["participant", "source", "trial", "kind", "catch_kind", "repeat_of", "item", "question",
               "slot", "role", "expected", "method", "rt_ms", "trial_rt_ms"]
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else columns)
    return frame, methods, questions


def catch_pass_rates(answers: pd.DataFrame, exemplar_catch: dict[str, bool]) -> pd.DataFrame:
    """Per participant: catch answers checked, passed, pass rate (NaN without catch trials)."""
    catch = answers[answers["kind"] == "catch"]
    checked = catch[(catch["catch_kind"] == "corrupt") | catch["question"].map(exemplar_catch).fillna(False)
                    .astype(bool)]
    per = checked.groupby("participant")["expected"].agg(catch_checked="size", catch_passed="sum")
    out = pd.DataFrame(index=pd.Index(sorted(answers["participant"].unique()), name="participant"))
    out = out.join(per).fillna({"catch_checked": 0, "catch_passed": 0}).astype(int)
    out["catch_pass_rate"] = out["catch_passed"] / out["catch_checked"].where(out["catch_checked"] > 0)
    return out


def analyze(db: str | Path, *, exclude_failed_catch: bool = False, min_catch_pass: float = 1.0,
            n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> StudyAnalysis:
    """Analyse the study database ``db`` (see the module docstring for every statistic)."""
    answers, methods, exemplar_catch = load_answers(db)
    if answers.empty:
        raise EvalkitError(f"{db} holds no answers yet; collect some with `evalkit study serve` or import-amt",
                           path=db)
    people = catch_pass_rates(answers, exemplar_catch)
    people["answers"] = answers.groupby("participant").size()
    people["excluded"] = exclude_failed_catch & (people["catch_pass_rate"] < min_catch_pass).fillna(False)
    keep = answers[~answers["participant"].map(people["excluded"])]
    main = keep[keep["kind"] == "main"]
    if main.empty:
        raise EvalkitError(f"{db}: no main-trial answers left after exclusions", path=db)
    m_index = {m: k for k, m in enumerate(methods)}
    n_methods = len(methods)
    rows, qrows = [], []
    for question in exemplar_catch:
        sub = main[main["question"] == question]
        if sub.empty:
            continue
        choice = sub["method"].map(m_index).to_numpy()
        counts = np.bincount(choice, minlength=n_methods)
        n = int(counts.sum())
        lo, hi = wilson_interval(counts, n, alpha)
        p_codes = pd.factorize(sub["participant"], sort=True)[0]
        i_codes = pd.factorize(sub["item"], sort=True)[0]
        b_lo, b_hi, _ = cluster_bootstrap(p_codes, i_codes, choice, n_methods, n_boot=n_boot, seed=seed,
                                          alpha=alpha)
        luce_alpha = 0.0 if (counts > 0).all() else 0.01
        strengths = luce_strengths(choice, [range(n_methods)] * n, n_methods, alpha=luce_alpha)
        probs = choix.probabilities(list(range(n_methods)), strengths)
        chi2, p_value = chi_square_uniform(counts)
        # position bias: choices by slot shown (orders are balanced, so this is separate from methods)
        pos_chi2, pos_p = chi_square_uniform(np.bincount(sub["slot"].to_numpy() - 1, minlength=n_methods))
        table = sub.pivot_table(index="trial", columns="method", values="participant", aggfunc="size",
                                fill_value=0).reindex(columns=methods, fill_value=0).to_numpy()
        raters = table.sum(1)
        complete = table[raters == raters.max()] if len(table) else table
        if len(complete) and raters.max() >= 2:
            k_fleiss, k_randolph = kappas(complete)
        else:
            k_fleiss = k_randolph = float("nan")
        rep = keep[(keep["kind"] == "repeat") & (keep["question"] == question)]
        orig = keep[(keep["kind"] == "main") & (keep["question"] == question)]
        pairs = rep.merge(orig, left_on=["participant", "repeat_of"], right_on=["participant", "trial"],
                          suffixes=("_rep", "_orig"))
        consistency = float((pairs["method_rep"] == pairs["method_orig"]).mean()) if len(pairs) else float("nan")
        for k, method in enumerate(methods):
            rows.append({
                "question": question, "method": method, "chosen": int(counts[k]), "n": n,
                "rate": counts[k] / n, "wilson_low": float(lo[k]), "wilson_high": float(hi[k]),
                "boot_low": float(b_lo[k]), "boot_high": float(b_hi[k]),
                "luce_strength": float(strengths[k]), "luce_prob": float(probs[k]),
            })
        qrows.append({
            "question": question, "n": n, "participants": int(sub["participant"].nunique()),
            "items": int(sub["item"].nunique()), "chi2": chi2, "df": n_methods - 1, "p_value": p_value,
            "position_chi2": pos_chi2, "position_p": pos_p, "fleiss_kappa": k_fleiss,
            "randolph_kappa": k_randolph, "kappa_trials": int(len(complete)),
            "kappa_raters": int(raters.max()) if len(raters) else 0, "luce_alpha": luce_alpha,
            "repeat_pairs": int(len(pairs)), "consistency": consistency,
            "median_rt_ms": float(sub["rt_ms"].median()) if sub["rt_ms"].notna().any() else float("nan"),
        })
    table = pd.DataFrame(rows)
    qtable = pd.DataFrame(qrows)
    checked = people["catch_checked"].sum()
    summary = {
        "study": str(db), "methods": methods, "alpha": alpha, "n_boot": n_boot, "bootstrap_seed": seed,
        "participants": int(len(people)), "excluded": sorted(people.index[people["excluded"]].tolist()),
        "exclude_failed_catch": exclude_failed_catch, "min_catch_pass": min_catch_pass,
        "catch_pass_rate": float(people["catch_passed"].sum() / checked) if checked else None,
        "sources": sorted(answers["source"].unique().tolist()),
        "questions": _jsonable(qtable.to_dict(orient="records")),
        "selection": _jsonable(table.to_dict(orient="records")),
    }
    return StudyAnalysis(table=table, questions=qtable, participants=people.reset_index(), summary=summary)


def _jsonable(records):
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in records]


def default_report_dir(db: str | Path) -> Path:
    """The run's ``report/`` when the study was made from a benchmark run, else ``<study>_report/``."""
    conn = store.connect(db)
    try:
        run_dir = store.get_meta(conn).get("run_dir", "")
    finally:
        conn.close()
    if run_dir and Path(run_dir).is_dir():
        return Path(run_dir) / "report"
    return Path(db).with_name(f"{Path(db).stem}_report")


def plot_selection(result: StudyAnalysis, path: str | Path) -> Path:
    """Grouped bars: selection rate per method and question, Wilson 95% error bars, chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = result.table
    questions = list(dict.fromkeys(t["question"]))
    methods = result.summary["methods"]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.5 + 2.4 * len(questions), 3.2))
    x = np.arange(len(questions))
    for k, method in enumerate(methods):
        rows = t[t["method"] == method].set_index("question").loc[questions]
        err = np.vstack([rows["rate"] - rows["wilson_low"], rows["wilson_high"] - rows["rate"]])
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, rows["rate"], width, yerr=err, capsize=3, label=method)
    ax.axhline(1.0 / len(methods), color="k", lw=0.8, ls="--", label="chance")
    ax.set_xticks(x, questions)
    ax.set_ylabel("selection rate")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path


def write_report(result: StudyAnalysis, out_dir: str | Path) -> list[Path]:
    """Write ``study_selection.csv``, ``study_questions.csv``, ``study_participants.csv``,
    ``study_summary.json``, ``study_selection.png`` and ``study.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from evalkit.study.store import spreadsheet_safe

    files = {  # participant ids and question names are typed by people: spreadsheet-safe cells
        "study_selection.csv": result.table.map(spreadsheet_safe).to_csv(index=False),
        "study_questions.csv": result.questions.map(spreadsheet_safe).to_csv(index=False),
        "study_participants.csv": result.participants.map(spreadsheet_safe).to_csv(index=False),
        "study_summary.json": json.dumps(result.summary, indent=2),
        "study.md": to_markdown(result),
    }
    for name, text in files.items():
        write_atomic(out / name, text)
    return [out / n for n in files] + [plot_selection(result, out / "study_selection.png")]


def to_markdown(result: StudyAnalysis) -> str:
    """The selection table and per-question tests as a Markdown section for a run's report."""
    s = result.summary
    lines = ["## User study", "",
             f"{s['participants']} participants ({len(s['excluded'])} excluded by catch trials), "
             f"catch pass rate {_fmt(s['catch_pass_rate'])}; intervals at {1 - s['alpha']:.0%}.", "",
             "| question | method | chosen / n | rate | Wilson | cluster bootstrap | Luce prob |",
             "|---|---|---|---|---|---|---|"]
    for r in result.table.itertuples():
        lines.append(f"| {r.question} | {r.method} | {r.chosen} / {r.n} | {r.rate:.3f} | "
                     f"[{r.wilson_low:.3f}, {r.wilson_high:.3f}] | [{r.boot_low:.3f}, {r.boot_high:.3f}] | "
                     f"{r.luce_prob:.3f} |")
    lines += ["", "| question | chi2 (df) | p | position p | Fleiss kappa | Randolph kappa | consistency |",
              "|---|---|---|---|---|---|---|"]
    for q in result.questions.itertuples():
        lines.append(f"| {q.question} | {q.chi2:.2f} ({q.df}) | {q.p_value:.3g} | {q.position_p:.3g} | "
                     f"{_fmt(q.fleiss_kappa)} | "
                     f"{_fmt(q.randolph_kappa)} | {_fmt(q.consistency)} ({q.repeat_pairs} pairs) |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"
