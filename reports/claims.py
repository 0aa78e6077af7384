"""Claims of a run: the leaderboard's best vs runner-up trained variant, resolved by the
paired bootstrap (:mod:`evalkit.reports.bootstrap`) over the test items.

For each dataset and each row with per-item values (:func:`evalkit.metrics.registry.claim_rows`:
FID, LPIPS-gt, PSNR, SSIM), the two best trained variants by the row's direction are
compared on the items of the outputs folder of one seed. Per-item values come from the
metric families themselves (:func:`evalkit.metrics.evaluate.per_item`), through the run's
feature cache, with one set of backbones for the whole report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.layout import OutputsLayout
from evalkit.methods.registry import is_reference
from evalkit.metrics import registry
from evalkit.metrics.evaluate import load_inputs, per_item
from evalkit.metrics.options import EvaluationOptions
from evalkit.reports import bootstrap as B
from evalkit.reports import results as R


INTERVAL_COLUMNS = ["run_id", "variant", "dataset", "metric", "seed", "ci_low", "ci_high", "n_items"]


class _PerItem:
    """Per-item values of (dataset, variant, row) from the outputs folders, computed once
    (through the run's feature cache, with one set of backbones) for intervals and claims."""

    def __init__(self, outputs_root: Path, seed: int, options: EvaluationOptions, cache_dir: Path | None):
        self.root, self.seed, self.options, self.cache_dir = Path(outputs_root), seed, options, cache_dir
        self.nets: dict = {}
        self.memo: dict = {}

    def __call__(self, dataset: str, variant: str, metric: str):
        key = (dataset, variant, metric)
        if key not in self.memo:
            layout = OutputsLayout(self.root / dataset / f"seed{self.seed}")
            self.memo[key] = per_item(load_inputs(layout.images(variant), layout.real), metric, self.options,
                                      self.nets, self.cache_dir)
        return self.memo[key]


def item_intervals(table: pd.DataFrame, per: _PerItem, *, datasets: list[str], n_boot: int = 1000) -> pd.DataFrame:
    """95 % bootstrap interval over the test items (first seed) of every (variant, row with
    per-item values): FID resamples generated and real features with the same indices,
    the other rows the per-item scores (:func:`evalkit.reports.bootstrap.bootstrap_interval`)."""
    rows = []
    first = table[table["seed"] == per.seed]
    for dataset in datasets:
        sub = first[first["dataset"] == dataset]
        for metric in registry.claim_rows():
            for r in sub[sub["metric"] == metric].to_dict("records"):
                item = per(dataset, r["variant"], metric)
                lo, hi = B.bootstrap_interval(item.values, statistic=item.statistic, reference=item.reference,
                                              n_boot=n_boot, seed=per.seed)
                rows.append({"run_id": r["run_id"], "variant": r["variant"], "dataset": dataset, "metric": metric,
                             "seed": per.seed, "ci_low": lo, "ci_high": hi, "n_items": len(item.values)})
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def bootstrap_claims(table: pd.DataFrame, outputs_root: Path, *, datasets: list[str], seed: int,
                     options: EvaluationOptions, cache_dir: Path | None, n_boot: int = 1000,
                     per: _PerItem | None = None) -> pd.DataFrame:
    """One claim row per (dataset, claim row) where at least two trained variants have the
    row; ``outputs_root/<dataset>/seed<seed>`` is each dataset's outputs layout."""
    per = per or _PerItem(outputs_root, seed, options, cache_dir)
    rows = []
    trained = table[~table["variant"].map(is_reference) & (table["seed"] == seed)]
    for dataset in datasets:
        sub = trained[trained["dataset"] == dataset]
        for metric in registry.claim_rows():
            hib = R.higher_is_better(metric)
            m = sub[sub["metric"] == metric].sort_values("value", ascending=not hib)
            if len(m) < 2:
                continue
            a, b = m["variant"].iloc[0], m["variant"].iloc[1]
            pa, pb = per(dataset, a, metric), per(dataset, b, metric)
            if pa.statistic is not None:
                res = B.paired_bootstrap(pa.values, pb.values, higher_is_better=hib, reference=pa.reference,
                                         statistic=pa.statistic, n_boot=n_boot, seed=seed)
            else:
                res = B.paired_bootstrap(np.asarray(pa.values), np.asarray(pb.values), higher_is_better=hib,
                                         n_boot=n_boot, seed=seed)
            rows.append(B.claim_row(dataset, seed, metric, a, b, res))
    return pd.DataFrame(rows, columns=B.CLAIM_COLUMNS)
