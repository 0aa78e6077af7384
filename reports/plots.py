"""Figures for reports: metric bars and memory/time profiles (matplotlib, PNG + PDF).

Figures are byte-stable: the PNG carries no ``Software`` tag, the PDF no creation date
or producer, so re-running a report gives identical files (and clean diffs).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evalkit.files import write_atomic  # noqa: E402
from evalkit.reports import results as R  # noqa: E402
from evalkit.reports.leaderboard import aggregate  # noqa: E402

PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


def save(fig, stem: str | Path, *, dpi: int = 120) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` with stable metadata, atomically."""
    stem = Path(stem)
    paths = []
    for fmt, meta in (("png", PNG_METADATA), ("pdf", PDF_METADATA)):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta, bbox_inches="tight")
        paths.append(write_atomic(stem.with_suffix(f".{fmt}"), buf.getvalue()))
    plt.close(fig)
    return paths


def metric_bars(results: pd.DataFrame, stem: str | Path, *, metrics: list[str] | None = None) -> list[Path]:
    """One panel per (dataset, metric): a bar per variant, error bars = std over seeds."""
    results = R.validate(results)
    results = results[(results["split"] == "test") & (results["metric"].map(R.metric_kind) == "quality")]
    if metrics is not None:
        results = results[results["metric"].isin(metrics)]
    cells = aggregate(results)
    panels = list(dict.fromkeys(zip(cells["dataset"], cells["metric"])))
    if not panels:
        raise ValueError("no quality metrics to plot")
    ncols = min(4, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    variants = list(dict.fromkeys(cells["variant"]))
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    for ax, (d, m) in zip(axes.flat, panels):
        c = cells[(cells["dataset"] == d) & (cells["metric"] == m)]
        x = np.arange(len(c))
        means = c["mean"].to_numpy(dtype=float)
        finite = np.isfinite(means)
        # A non-finite cell (PSNR of an output identical to its target is +inf) has no bar:
        # it is labelled on the axis instead of breaking the panel's scale.
        ax.bar(x, c["mean"].where(finite), yerr=c["std"].where((c["count"] > 1) & finite),
               color=[colours[v] for v in c["variant"]], capsize=3)
        for xi, value in zip(x[~finite], means[~finite]):
            label = "nan" if np.isnan(value) else ("+∞" if value > 0 else "−∞")
            ax.annotate(label, (xi, 0.5), xycoords=("data", "axes fraction"), ha="center", fontsize=8)
        ax.set_xticks(x, c["variant"], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{d}: {m} {R.arrow(m)}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, stem)


def profile_lines(profile: pd.DataFrame, stem: str | Path, *, x: str, y: str, hue: str,
                  xlabel: str | None = None, ylabel: str | None = None, logy: bool = True,
                  logx: bool = True) -> list[Path]:
    """Line plot of a memory/time profile: ``y`` against ``x``, one line per ``hue``
    (log-log by default, so a slope reads as the scaling exponent)."""
    missing = [c for c in (x, y, hue) if c not in profile.columns]
    if missing:
        raise ValueError(f"profile table lacks column(s) {', '.join(missing)}")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, g in profile.groupby(hue, sort=False):
        g = g.sort_values(x)
        ax.plot(g[x], g[y], marker="o", label=str(name))
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, stem)
