"""The report of a run: leaderboard (in the chosen formats), paper tables, metric plots and
the bootstrap claims, written into ``<run>/report/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evalkit.files import write_atomic
from evalkit.metrics.options import EvaluationOptions


def write_report(table: pd.DataFrame, report_dir: Path, *, name: str, outputs_root: Path, datasets: list[str],
                 seeds: list[int], formats: tuple[str, ...], examples: int, paper_datasets: dict,
                 options: EvaluationOptions, cache_dir: Path | None) -> dict[str, str]:
    """Every report file of a run; returns name → path. ``outputs_root/<dataset>/seed<S>``
    are the outputs layouts (the example grid shows the first dataset at the first seed)."""
    from evalkit.reports import bootstrap, leaderboard, paper_tables, plots
    from evalkit.reports.claims import bootstrap_claims

    files = {}
    first, seed = datasets[0], seeds[0]
    grid_dir = outputs_root / first / f"seed{seed}"
    notes = [f"run {name}; seeds {list(seeds)}; datasets {', '.join(datasets)}; "
             f"example outputs: {first}, seed {seed}."]
    for k, p in leaderboard.write(table, report_dir, outputs_dir=grid_dir if examples else None,
                                  n_examples=examples, notes=notes).items():
        if k in formats:
            files[f"leaderboard.{k}"] = str(p)
        else:
            p.unlink()
    for k, p in paper_tables.write(table, report_dir, dataset_map=paper_datasets).items():
        files[f"paper_tables.{k}"] = str(p)
    for p in plots.metric_bars(table, report_dir / "metrics"):
        files[p.name] = str(p)
    claims = bootstrap_claims(table, outputs_root, datasets=datasets, seed=seed, options=options, cache_dir=cache_dir)
    files["claims.md"] = str(write_atomic(report_dir / "claims.md", bootstrap.claims_markdown(claims)))
    files["claims.csv"] = str(write_atomic(report_dir / "claims.csv", claims.to_csv(index=False, float_format="%.10g")))
    return files
