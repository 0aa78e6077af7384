"""Claims that transfer: the orderings the papers' tables assert, checked on a run.

An absolute number of a paper is comparable only under the paper's dataset, n and
evaluation preset (:mod:`evalkit.reports.paper_tables`). What does transfer to any run is
the *ordering* a table asserts between two methods on one metric, e.g. "RABIT < CoCosNet on
FID (ADE20K, RABIT Tab. 1)". :func:`orderings` derives them from the published numbers
(for each table, dataset and metric, each pair of methods evalkit implements, ordered by
the paper's values and the metric's direction from the metric registry; ties are no
ordering). :func:`check` says what a run shows for the corresponding variants on the same
metric, per dataset and seed of the run, from the paired bootstrap over its test items
(:func:`evalkit.reports.bootstrap.paired_bootstrap`, 95 %, the run's seed, 1000
resamples): ``holds`` when the interval of Δ = better − worse lies on the paper's better
method's side of 0, ``reversed`` when it lies on the other side, ``not resolved`` when it
contains 0. A metric without per-item values (a set statistic the registry gives no
:class:`~evalkit.metrics.registry.PerItem` for, such as SWD) is listed as
``not resolved (no per-item values)``, never dropped.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from evalkit.files import write_atomic
from evalkit.metrics import registry
from evalkit.reports import bootstrap as B
from evalkit.reports import paper_tables as P
from evalkit.reports import results as R

ORDERING_COLUMNS = ["paper", "table", "task", "paper_dataset", "metric", "ek_metric", "higher_is_better",
                    "better", "worse", "better_variant", "worse_variant", "better_paper", "worse_paper", "claim"]
CLAIM_COLUMNS = ORDERING_COLUMNS + ["dataset", "seed", "stat_better", "stat_worse", "delta", "ci_low", "ci_high",
                                    "p_holds", "n_items", "n_boot", "verdict"]
HOLDS, REVERSED, NOT_RESOLVED = "holds", "reversed", "not resolved"
NO_PER_ITEM = "not resolved (no per-item values)"

# per_items(seed) -> per(dataset, variant, ek_metric) -> PerItem: the run's per-item values at one seed.
PerItems = Callable[[int], Callable[[str, str, str], registry.PerItem]]


def _one_blas_thread():
    """BLAS on one thread for the bootstrap's many small products (a busy second core makes
    OpenBLAS's threads spin: a 48 x 2048 FID replicate goes from under 1 ms to 50 ms)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _direction(ek_metric, fallback: bool) -> bool:
    """The metric's direction from the registry (the transcription's column for a number
    evalkit does not compute, such as the user-study share)."""
    return R.higher_is_better(ek_metric) if isinstance(ek_metric, str) else bool(fallback)


def claim_text(better: str, worse: str, metric: str, higher_is_better: bool, dataset: str, paper: str,
               table: str) -> str:
    """``RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)``: the better method first, ``<`` for a
    lower-is-better metric and ``>`` for a higher-is-better one."""
    return (f"{better} {'>' if higher_is_better else '<'} {worse} on {metric} "
            f"({dataset}, {P.table_label(paper, table)})")


def orderings(paper: pd.DataFrame | None = None, *, variants=None,
              tasks: tuple[str, ...] = ("translation", "ablation")) -> pd.DataFrame:
    """Every ordering the paper tables assert between two methods evalkit implements.

    paper: the transcription (:func:`evalkit.reports.paper_tables.load`; default: the shipped one).
    variants: keep only orderings whose two methods map to these evalkit variants.
    tasks: as :func:`evalkit.reports.paper_tables.compare` (a translation run is never held
        to RABIT Table 2's manipulation numbers).

    One row per (paper, table, dataset, metric, pair of methods with different values), in
    the transcription's order, the better method (by the metric's direction) in ``better``.
    """
    paper = P.load() if paper is None else paper
    paper = paper[paper["task"].isin(tasks) & paper["ek_variant"].notna()]
    if variants is not None:
        paper = paper[paper["ek_variant"].isin(set(variants))]
    rows = []
    keys = ["paper", "table", "task", "dataset", "metric"]
    for (pp, table, task, dataset, metric), g in paper.groupby(keys, sort=False):
        g = g.drop_duplicates("method")
        hib = _direction(g["ek_metric"].iloc[0], g["higher_is_better"].iloc[0])
        for (_, x), (_, y) in combinations(g.iterrows(), 2):
            vx, vy = float(x["value"]), float(y["value"])
            if vx == vy:
                continue  # a tie asserts no ordering
            better, worse = (x, y) if (vx > vy) == hib else (y, x)
            rows.append({"paper": pp, "table": table, "task": task, "paper_dataset": dataset, "metric": metric,
                         "ek_metric": g["ek_metric"].iloc[0] if isinstance(g["ek_metric"].iloc[0], str) else None,
                         "higher_is_better": hib, "better": better["method"], "worse": worse["method"],
                         "better_variant": better["ek_variant"], "worse_variant": worse["ek_variant"],
                         "better_paper": float(better["value"]), "worse_paper": float(worse["value"]),
                         "claim": claim_text(better["method"], worse["method"], metric, hib, dataset, pp, table)})
    return pd.DataFrame(rows, columns=ORDERING_COLUMNS)


def paper_datasets_for(dataset: str, dataset_map: dict[str, str] | None, paper: pd.DataFrame) -> list[str]:
    """The paper datasets whose orderings a run's ``dataset`` is held to: the one it is mapped
    to (``--as shapes=ADE20K``, a run config's ``report.paper_datasets``), else those of the
    same evalkit name, else every paper dataset (orderings transfer to any data)."""
    if dataset_map and dataset in dataset_map:
        return [dataset_map[dataset]]
    same = [d for d, ek in P.DATASETS.items() if ek == dataset]
    return same or list(dict.fromkeys(paper["dataset"]))


def verdict(res: B.BootstrapResult) -> str:
    """``holds`` / ``reversed`` / ``not resolved`` for a bootstrap of A = the paper's better
    method against B = its worse one."""
    return HOLDS if res.a_beats_b else REVERSED if res.b_beats_a else NOT_RESOLVED


def check(results: pd.DataFrame, per_items: PerItems, *, dataset_map: dict[str, str] | None = None,
          paper: pd.DataFrame | None = None, n_boot: int = 1000, confidence: float = 0.95) -> pd.DataFrame:
    """What the run of ``results`` (its test rows) shows for each ordering, per dataset and seed.

    per_items(seed)(dataset, variant, metric): the per-item values of the run at ``seed``
    (:class:`evalkit.reports.claims._PerItem`); only called for rows with per-item values.
    The bootstrap seed is the run's seed. Returns :data:`CLAIM_COLUMNS`.
    """
    paper = P.load() if paper is None else paper
    results = R.validate(results)
    test = results[(results["split"] == "test") & (results["metric"].map(R.metric_kind) == "quality")]
    resolvable = set(registry.claim_rows())
    rows = []
    for dataset in dict.fromkeys(test["dataset"]):
        wanted = set(paper_datasets_for(dataset, dataset_map, paper))
        for seed in sorted(set(int(s) for s in test.loc[test["dataset"] == dataset, "seed"])):
            sub = test[(test["dataset"] == dataset) & (test["seed"] == seed)]
            have = set(sub["variant"])
            todo = orderings(paper, variants=have)
            todo = todo[todo["paper_dataset"].isin(wanted)]
            per = None
            for o in todo.to_dict("records"):
                rec = {**o, "dataset": dataset, "seed": seed, "stat_better": np.nan, "stat_worse": np.nan,
                       "delta": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_holds": np.nan, "n_items": 0,
                       "n_boot": 0}
                metric = o["ek_metric"] if isinstance(o["ek_metric"], str) else None  # None: evalkit has no such row
                rows_of = {v: sub[(sub["variant"] == v) & (sub["metric"] == metric)]
                           for v in (o["better_variant"], o["worse_variant"])} if metric else {}
                if metric is None:
                    rec["verdict"] = f"not resolved (evalkit does not compute {o['metric']})"
                elif any(r.empty for r in rows_of.values()):
                    rec["verdict"] = f"not resolved (no {metric} rows in this run)"
                elif metric not in resolvable:
                    rec["verdict"] = NO_PER_ITEM
                else:
                    per = per or per_items(seed)
                    a = per(dataset, o["better_variant"], metric)
                    b = per(dataset, o["worse_variant"], metric)
                    with _one_blas_thread():
                        if a.statistic is not None:
                            res = B.paired_bootstrap(a.values, b.values, higher_is_better=o["higher_is_better"],
                                                     statistic=a.statistic, reference=a.reference, n_boot=n_boot,
                                                     confidence=confidence, seed=seed)
                        else:
                            res = B.paired_bootstrap(np.asarray(a.values, dtype=float),
                                                     np.asarray(b.values, dtype=float),
                                                     higher_is_better=o["higher_is_better"], n_boot=n_boot,
                                                     confidence=confidence, seed=seed)
                    rec.update(stat_better=res.stat_a, stat_worse=res.stat_b, delta=res.delta, ci_low=res.ci_low,
                               ci_high=res.ci_high, p_holds=res.p_better, n_items=res.n_items, n_boot=n_boot,
                               verdict=verdict(res))
                rows.append(rec)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def summary_line(claims: pd.DataFrame) -> str:
    """``K of N orderings hold, R reversed, U not resolved (M without per-item values)``."""
    v = claims["verdict"]
    unresolved = v.str.startswith(NOT_RESOLVED)
    no_items = int((unresolved & (v != NOT_RESOLVED)).sum())
    return (f"{int((v == HOLDS).sum())} of {len(claims)} ordering(s) hold, {int((v == REVERSED).sum())} reversed, "
            f"{int(unresolved.sum())} not resolved ({no_items} without per-item values in this run)")


def _g(v: float) -> str:
    return "—" if pd.isna(v) else (f"{v:.3e}" if abs(v) >= 1e6 else f"{v:.4g}")


def to_markdown(claims: pd.DataFrame, card: list[tuple[str, str]] | None = None, *,
                variants: list[str] | None = None) -> str:
    """The claims report: the protocol card, then one section per paper table."""
    from evalkit.reports.card import card_markdown

    lines = [card_markdown(card)] if card else []
    if claims.empty:
        known = ", ".join(sorted({*P.METHODS.values(), *P.ABLATION_METHODS.values()}))
        lines += [f"No paper table orders two of this run's variants ({', '.join(variants or []) or 'none'}); "
                  f"the papers' methods are {known}.", ""]
        return "\n".join(lines) + "\n"
    lines += [summary_line(claims) + ".", ""]
    for (pp, table), g in claims.groupby(["paper", "table"], sort=False):
        lines += [f"## {P.table_label(pp, table)}", "",
                  "| paper's ordering | paper | run (seed) | better | worse | Δ = better − worse | 95% interval | "
                  "P(holds) | this run |",
                  "| --- | --- | --- | --- | --- | ---: | --- | ---: | --- |"]
        for r in g.to_dict("records"):
            interval = "—" if pd.isna(r["ci_low"]) else f"[{_g(r['ci_low'])}, {_g(r['ci_high'])}]"
            lines.append(f"| {r['claim']} | {_g(r['better_paper'])} vs {_g(r['worse_paper'])} | {r['dataset']} "
                         f"(seed {r['seed']}) | {r['better_variant']} {_g(r['stat_better'])} | {r['worse_variant']} "
                         f"{_g(r['stat_worse'])} | {_g(r['delta'])} | {interval} | "
                         f"{'—' if pd.isna(r['p_holds']) else format(r['p_holds'], '.3f')} | {r['verdict']} |")
        lines.append("")
    n_items = claims.loc[claims["n_items"] > 0, "n_items"]
    over = f" over the run's {int(n_items.iloc[0])} test items" if len(n_items) else ""
    lines += [f"Each ordering is the paper's (its numbers, the metric's direction); the run's variants are "
              f"compared on the same metric by the paired bootstrap{over} (95 %, 1000 resamples, the run's seed): "
              "\"holds\" when the whole interval of Δ lies on the paper's better method's side of 0, \"reversed\" "
              "when it lies on the other side, \"not resolved\" when it contains 0 or the metric has no per-item "
              "values. Absolute numbers are compared only in paper_tables.md, and only where dataset, n and "
              "evaluation preset are the paper's."]
    return "\n".join(lines) + "\n"


def to_json(claims: pd.DataFrame) -> str:
    return claims.to_json(orient="records", double_precision=15)


def write(claims: pd.DataFrame, out_dir: str | Path, *, card: list[tuple[str, str]] | None = None,
          variants: list[str] | None = None, stem: str = "claims_vs_papers") -> dict[str, Path]:
    """``<stem>.md`` (opening with the protocol card) and ``<stem>.csv`` (full precision), atomically."""
    out_dir = Path(out_dir)
    return {"md": write_atomic(out_dir / f"{stem}.md", to_markdown(claims, card, variants=variants)),
            "csv": write_atomic(out_dir / f"{stem}.csv", claims.to_csv(index=False))}


def report(results: pd.DataFrame, out_dir: str | Path, *, outputs_root: Path, options, cache_dir: Path | None,
           dataset_map: dict[str, str] | None = None, run_info: dict | list[dict] | None = None,
           per=None, n_boot: int = 1000) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Check every ordering on a run (``outputs_root/<dataset>/seed<S>`` its outputs layouts)
    and write ``claims_vs_papers.{md,csv}`` into ``out_dir``; ``per``: a
    :class:`evalkit.reports.claims._PerItem` already holding one seed's values (reused)."""
    from evalkit.reports.card import protocol_card
    from evalkit.reports.claims import _PerItem

    results = R.validate(results)
    made = {per.seed: per} if per is not None else {}

    def per_items(seed: int):
        if seed not in made:
            made[seed] = _PerItem(outputs_root, seed, options, cache_dir)
        return made[seed]

    claims = check(results, per_items, dataset_map=dataset_map, n_boot=n_boot)
    test = results[results["split"] == "test"]
    card = protocol_card(test, run_info) if len(test) else None
    return claims, write(claims, out_dir, card=card, variants=sorted(set(test["variant"])))
