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


def bootstrap_claims(table: pd.DataFrame, outputs_root: Path, *, datasets: list[str], seed: int,
                     options: EvaluationOptions, cache_dir: Path | None, n_boot: int = 1000) -> pd.DataFrame:
    """One claim row per (dataset, claim row) where at least two trained variants have the
    row; ``outputs_root/<dataset>/seed<seed>`` is each dataset's outputs layout."""
    rows, nets = [], {}
    trained = table[~table["variant"].map(is_reference) & (table["seed"] == seed)]
    for dataset in datasets:
        layout = OutputsLayout(Path(outputs_root) / dataset / f"seed{seed}")
        sub = trained[trained["dataset"] == dataset]
        for metric in registry.claim_rows():
            hib = R.higher_is_better(metric)
            m = sub[sub["metric"] == metric].sort_values("value", ascending=not hib)
            if len(m) < 2:
                continue
            a, b = m["variant"].iloc[0], m["variant"].iloc[1]
            per = {v: per_item(load_inputs(layout.images(v), layout.real), metric, options, nets, cache_dir)
                   for v in (a, b)}
            if per[a].statistic is not None:
                res = B.paired_bootstrap(per[a].values, per[b].values, higher_is_better=hib,
                                         reference=per[a].reference, statistic=per[a].statistic, n_boot=n_boot,
                                         seed=seed)
            else:
                res = B.paired_bootstrap(np.asarray(per[a].values), np.asarray(per[b].values), higher_is_better=hib,
                                         n_boot=n_boot, seed=seed)
            rows.append(B.claim_row(dataset, seed, metric, a, b, res))
    return pd.DataFrame(rows, columns=B.CLAIM_COLUMNS)
