"""Builders of small long results tables for report tests."""

from __future__ import annotations

import pandas as pd

from evalkit.protocol import Protocol, random_init_tag
from evalkit.reports.results import COLUMNS


def rows(values: list[tuple], *, run_id: str = "r1", weights: str | None = None, n: int = 8,
         metric_variant: str = "clean", protocol: str = "clean") -> pd.DataFrame:
    """``values``: (variant, dataset, metric, value, seed) tuples → a valid long table
    (``protocol``: the evaluation preset of every row)."""
    proto = Protocol(resolution=299, resize="clean-pil-bicubic", image_format="png", backbone="inception-v3-cleanfid",
                     weights_sha256=weights or random_init_tag(0), n_images=n, protocol=protocol).as_columns()
    out = [{"run_id": run_id, "method": v.split("/")[0], "variant": v, "dataset": d, "split": "test", "metric": m,
            "value": x, "n": n, "seed": s, "metric_variant": metric_variant, **proto} for v, d, m, x, s in values]
    return pd.DataFrame(out)[COLUMNS]
