"""The report of a run: leaderboard (in the chosen formats), paper tables, metric plots, the
bootstrap claims and the papers' orderings checked on the run (``claims_vs_papers``), written
into ``<run>/report/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evalkit.files import write_atomic
from evalkit.metrics.options import EvaluationOptions


def write_report(table: pd.DataFrame, report_dir: Path, *, name: str, outputs_root: Path, datasets: list[str],
                 seeds: list[int], formats: tuple[str, ...], examples: int, paper_datasets: dict,
                 options: EvaluationOptions, cache_dir: Path | None) -> dict[str, str]:
    """Every report file of a run; returns name → path. ``outputs_root/<dataset>/seed<S>``
    are the outputs layouts (the example grid shows the first dataset at the first seed).
    Each report opens with the protocol card (the run's ``run.json`` beside ``report_dir``);
    the leaderboard and the plot carry 95 % item intervals (saved as ``intervals.csv``) and
    link to the other files by paths relative to ``report_dir``."""
    from evalkit.reports import bootstrap, claims_papers, leaderboard, paper_tables, plots
    from evalkit.reports.card import card_markdown, protocol_card, read_run_info
    from evalkit.reports.claims import _PerItem, bootstrap_claims, item_intervals

    files = {}
    first, seed = datasets[0], seeds[0]
    grid_dir = outputs_root / first / f"seed{seed}"
    info = read_run_info(Path(report_dir).parent)
    notes = [f"run {name}; seeds {list(seeds)}; datasets {', '.join(datasets)}; "
             f"example outputs: {first}, seed {seed}."]
    per = _PerItem(outputs_root, seed, options, cache_dir)
    intervals = item_intervals(table, per, datasets=datasets)
    files["intervals.csv"] = str(write_atomic(report_dir / "intervals.csv",
                                              intervals.to_csv(index=False, float_format="%.10g")))
    others = {"paper tables": report_dir / "paper_tables.md", "metrics plot": report_dir / "metrics.png",
              "claims": report_dir / "claims.md", "claims vs papers": report_dir / "claims_vs_papers.md",
              "intervals": report_dir / "intervals.csv"}
    for k, p in leaderboard.write(table, report_dir, outputs_dir=grid_dir if examples else None,
                                  n_examples=examples, notes=notes, intervals=intervals, run_info=info,
                                  links=others).items():
        if k in formats:
            files[f"leaderboard.{k}"] = str(p)
        else:
            p.unlink()
    for k, p in paper_tables.write(table, report_dir, dataset_map=paper_datasets, run_info=info).items():
        files[f"paper_tables.{k}"] = str(p)
    for p in plots.metric_bars(table, report_dir / "metrics", intervals=intervals):
        files[p.name] = str(p)
    claims = bootstrap_claims(table, outputs_root, datasets=datasets, seed=seed, options=options, cache_dir=cache_dir,
                              per=per)
    card = card_markdown(protocol_card(table[table["split"] == "test"], info))
    files["claims.md"] = str(write_atomic(report_dir / "claims.md", card + "\n" + bootstrap.claims_markdown(claims)))
    files["claims.csv"] = str(write_atomic(report_dir / "claims.csv", claims.to_csv(index=False, float_format="%.10g")))
    _, written = claims_papers.report(table, report_dir, outputs_root=outputs_root, options=options,
                                      cache_dir=cache_dir, dataset_map=paper_datasets, run_info=info, per=per)
    files.update({f"claims_vs_papers.{k}": str(p) for k, p in written.items()})
    return files
