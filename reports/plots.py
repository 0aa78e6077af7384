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


def metric_bars(results: pd.DataFrame, stem: str | Path, *, metrics: list[str] | None = None,
                intervals: pd.DataFrame | None = None) -> list[Path]:
    """One panel per (dataset, metric): a bar per trained variant with error bars (the 95 %
    item interval from ``intervals`` when known, else the std over seeds), reference
    outputs as labelled dashed lines (anchors, not competitors), and a y-axis fitted to the
    values (0.88 vs 0.95 stays visible) instead of starting at 0."""
    from evalkit.methods.registry import is_reference

    results = R.validate(results)
    results = results[(results["split"] == "test") & (results["metric"].map(R.metric_kind) == "quality")]
    if metrics is not None:
        results = results[results["metric"].isin(metrics)]
    cells = aggregate(results)
    if intervals is not None and len(intervals):
        cells = cells.merge(intervals[["variant", "dataset", "metric", "ci_low", "ci_high"]].drop_duplicates(
            ["variant", "dataset", "metric"]), on=["variant", "dataset", "metric"], how="left")
    else:
        cells = cells.assign(ci_low=np.nan, ci_high=np.nan)
    panels = list(dict.fromkeys(zip(cells["dataset"], cells["metric"])))
    if not panels:
        raise ValueError("no quality metrics to plot")
    ncols = min(4, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    variants = list(dict.fromkeys(v for v in cells["variant"] if not is_reference(v)))
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    for ax, (d, m) in zip(axes.flat, panels):
        panel = cells[(cells["dataset"] == d) & (cells["metric"] == m)]
        refs = panel[panel["variant"].map(is_reference)]
        c = panel[~panel["variant"].map(is_reference)]
        x = np.arange(len(c))
        means = c["mean"].to_numpy(dtype=float)
        finite = np.isfinite(means)
        has_ci = c["ci_low"].notna().to_numpy() & finite
        err = np.zeros((2, len(c)))
        err[0] = np.where(has_ci, means - c["ci_low"].to_numpy(dtype=float), 0)
        err[1] = np.where(has_ci, c["ci_high"].to_numpy(dtype=float) - means, 0)
        std = c["std"].where((c["count"] > 1) & finite).to_numpy(dtype=float)  # NaN: no bar at one seed
        err = np.where(has_ci, err, std)
        err = np.where(np.isfinite(err), np.clip(err, 0, None), np.nan)
        # A non-finite cell (PSNR of an output identical to its target is +inf) has no bar:
        # it is labelled on the axis instead of breaking the panel's scale.
        ax.bar(x, np.where(finite, means, np.nan), yerr=np.where(finite, err, np.nan), color=[colours[v] for v in c["variant"]], capsize=3)
        for xi, value in zip(x[~finite], means[~finite]):
            label = "nan" if np.isnan(value) else ("+∞" if value > 0 else "−∞")
            ax.annotate(label, (xi, 0.5), xycoords=("data", "axes fraction"), ha="center", fontsize=8)
        spread = np.nan_to_num(err)
        shown = [means[finite] - spread[0][finite], means[finite] + spread[1][finite]]
        for _, r in refs.iterrows():
            if np.isfinite(r["mean"]):
                ax.axhline(r["mean"], color="0.35", linestyle="--", linewidth=1)
                ax.annotate(r["variant"].removeprefix("reference/"), (1.0, r["mean"]),
                            xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=6, color="0.35")
                shown.append(np.array([r["mean"]]))
        values = np.concatenate(shown) if shown else np.array([])
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            pad = 0.15 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-12)
            ax.set_ylim(lo - pad, hi + pad)
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


def training_losses(histories: dict[str, list[dict]], stem: str | Path, *, smooth: int = 10) -> list[Path]:
    """Training-loss curves, one panel per method: ``histories`` maps a method to the rows of its
    ``losses.json`` (:func:`evalkit.methods.training.train`: ``{"step", <term>: value, ...}``);
    every term is drawn as a moving average over ``smooth`` steps (``G_total`` and ``D`` in black
    and grey), on a symmetric-log axis (hinge terms go negative)."""
    if not histories:
        raise ValueError("training_losses: no histories to plot")
    n = len(histories)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (method, hist) in zip(axes.flat, histories.items()):
        steps = np.array([h["step"] for h in hist], dtype=float)
        terms = [k for k in hist[0] if k != "step"] if hist else []
        width = max(1, min(int(smooth), len(hist)))
        kernel = np.ones(width) / width
        for term in terms:
            values = np.array([h.get(term, np.nan) for h in hist], dtype=float)
            if len(values) >= width:
                values, xs = np.convolve(values, kernel, mode="valid"), steps[width - 1:]
            else:
                xs = steps
            style = {"G_total": dict(color="black", linewidth=1.6), "D": dict(color="0.55", linewidth=1.4)}.get(
                term, dict(linewidth=0.9))
            ax.plot(xs, values, label=term, marker="." if len(xs) < 3 else None, **style)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, stem)
