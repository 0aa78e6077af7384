"""Leaderboards: methods × (dataset, metric) views of the long results table.

Each cell is the mean over seeds / exemplar pairings, shown as ``mean ± std`` (sample
standard deviation, ``ddof=1``) when there is more than one. Headers carry ``↑``/``↓``.
The best value in a column is bold and the second underlined, both decided on the
*displayed* rounding (:data:`evalkit.reports.results.DECIMALS`), so ties on screen are ties in the
ranking. Written as Markdown, HTML (with a grid of example outputs), LaTeX (booktabs) and CSV.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.files import write_atomic
from evalkit.layout import OutputsLayout
from evalkit.methods.registry import is_reference
from evalkit.reports import results as R

_ROW_KEYS = ["method", "variant"]
R_NOTE = "not comparable with published numbers"


@dataclass(frozen=True)
class Leaderboard:
    """Aggregated cells: one row per (method, variant, dataset, metric)."""

    cells: pd.DataFrame  # columns: method, variant, dataset, metric, mean, std, count, n, comparable, rank, text
    variants: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (dataset, metric), display order

    @property
    def any_random_backbone(self) -> bool:
        return not bool(self.cells["comparable"].all())


def _fmt(value: float, metric: str) -> str:
    return R.format_value(value, metric)


def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and count over seeds for each (method, variant, dataset, split, metric)."""
    g = results.groupby(_ROW_KEYS + ["dataset", "split", "metric"], sort=False)
    out = g.agg(mean=("value", "mean"), std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0),
                count=("value", "size"), n=("n", "min"), comparable=("comparable", "all")).reset_index()
    return out


def _ranks(col: pd.DataFrame, metric: str) -> pd.Series:
    """1 for the best displayed value, 2 for the second (with three methods or more), 0
    otherwise; values that display the same share the rank."""
    shown = col["mean"].map(lambda v: float(R.format_value(v, metric)))
    distinct = sorted(shown.unique(), reverse=R.higher_is_better(metric))
    rank = pd.Series(0, index=col.index)
    for r, v in enumerate(distinct[:2] if len(col) >= 3 else distinct[:1], start=1):  # "second" of two is "last"
        rank[shown == v] = r
    if len(col) < 2:  # a lone method is not "best"
        rank[:] = 0
    return rank


def build(results: pd.DataFrame, *, metrics: list[str] | None = None, datasets: list[str] | None = None,
          split: str = "test") -> Leaderboard:
    """Aggregate the long table into a leaderboard (``metrics``/``datasets`` select and order columns)."""
    results = R.validate(results)
    results = results[results["split"] == split]
    if metrics is not None:
        results = results[results["metric"].isin(metrics)]
    if datasets is not None:
        results = results[results["dataset"].isin(datasets)]
    results = results[results["metric"].map(R.metric_kind) == "quality"]
    cells = aggregate(results)
    metric_order = metrics or list(dict.fromkeys(cells["metric"]))
    dataset_order = datasets or list(dict.fromkeys(cells["dataset"]))
    columns = tuple((d, m) for d in dataset_order for m in metric_order
                    if ((cells["dataset"] == d) & (cells["metric"] == m)).any())
    cells["rank"] = 0
    ranked = cells[~cells["variant"].map(is_reference)]
    for (d, m), col in ranked.groupby(["dataset", "metric"], sort=False):
        cells.loc[col.index, "rank"] = _ranks(col, m)
    cells["text"] = [
        _fmt(mu, m) + (f" ± {_fmt(sd, m)}" if c > 1 else "")
        for mu, sd, c, m in zip(cells["mean"], cells["std"], cells["count"], cells["metric"])
    ]
    return Leaderboard(cells=cells, variants=tuple(dict.fromkeys(cells["variant"])), columns=columns)


def _label(variant: str, fmt: str) -> str:
    if not is_reference(variant):
        return {"md": variant, "html": html.escape(variant), "tex": _latex_escape(variant)}[fmt]
    return {"md": f"*{variant}*", "html": f"<i>{html.escape(variant)}</i>",
            "tex": rf"\textit{{{_latex_escape(variant)}}}"}[fmt]


def _grid(lb: Leaderboard) -> pd.DataFrame:
    """variant × (dataset, metric) table of cell rows (index into ``lb.cells``)."""
    idx = lb.cells.set_index(["variant", "dataset", "metric"]).index
    return pd.Series(lb.cells.index, index=idx)


def _header(metric: str) -> str:
    return f"{metric} {R.arrow(metric)}"


def to_markdown(lb: Leaderboard) -> str:
    grid = _grid(lb)
    head = ["method"] + [f"{d} {_header(m)}" for d, m in lb.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([" --- "] + [" ---: "] * len(lb.columns)) + "|"]
    for v in lb.variants:
        row = [_label(v, "md")]
        for d, m in lb.columns:
            if (v, d, m) not in grid.index:
                row.append("—")
                continue
            cell = lb.cells.loc[grid[(v, d, m)]]
            row.append({1: f"**{cell.text}**", 2: f"<u>{cell.text}</u>"}.get(cell["rank"], cell.text))
        lines.append("| " + " | ".join(row) + " |")
    notes = ["", "Mean over seeds/exemplar pairings (± sample std when more than one); "
             "**best**, <u>second</u> decided on the displayed rounding; *reference outputs* are anchors, not ranked."]
    if lb.any_random_backbone:
        notes.append(f"Warning: some numbers use random-initialised metric backbones: {R_NOTE}.")
    return "\n".join(lines + notes) + "\n"


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def to_latex(lb: Leaderboard) -> str:
    """booktabs table: datasets as column groups, metrics with arrows under them."""
    grid = _grid(lb)
    datasets = list(dict.fromkeys(d for d, _ in lb.columns))
    spans = [(d, sum(1 for dd, _ in lb.columns if dd == d)) for d in datasets]
    lines = [r"\begin{tabular}{l" + "c" * len(lb.columns) + "}", r"\toprule"]
    lines.append(" & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_latex_escape(d)}}}" for d, k in spans) + r" \\")
    start = 2
    rules = []
    for _, k in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    lines.append(" ".join(rules))
    arrows = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}
    lines.append("Method & " + " & ".join(f"{_latex_escape(m)} {arrows[R.arrow(m)]}" for _, m in lb.columns) + r" \\")
    lines.append(r"\midrule")
    for v in lb.variants:
        row = [_label(v, "tex")]
        for d, m in lb.columns:
            if (v, d, m) not in grid.index:
                row.append("--")
                continue
            cell = lb.cells.loc[grid[(v, d, m)]]
            text = cell.text.replace(" ± ", r" $\pm$ ")
            row.append({1: rf"\textbf{{{text}}}", 2: rf"\underline{{{text}}}"}.get(cell["rank"], text))
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(lb: Leaderboard) -> str:
    """Machine-readable cells (full precision)."""
    cols = ["method", "variant", "dataset", "split", "metric", "mean", "std", "count", "n", "comparable", "rank"]
    return lb.cells[cols].to_csv(index=False, float_format="%.10g")


def _img_tag(path: Path, alt: str) -> str:
    if not path.is_file():
        return "<td>—</td>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<td><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></td>'


def example_grid(outputs_dir: Path, variants: list[str], *, n: int = 4) -> str:
    """HTML grid: conditional input | exemplar | warped exemplar | each variant's output.

    ``outputs_dir`` is an outputs layout (:class:`evalkit.layout.OutputsLayout`). The warped
    exemplar column shows the first variant that writes one (its name is in the header).
    Images are embedded.
    """
    layout = OutputsLayout(outputs_dir)
    names = layout.names("cond")[:n]
    warped_from = next((v for v in variants if layout.warped(v).is_dir()), None)
    head = ["input", "exemplar"] + ([f"warped ({warped_from})"] if warped_from else []) + list(variants)
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for name in names:
        cells = [_img_tag(layout.input_image("cond", name), f"{name} input"),
                 _img_tag(layout.input_image("exemplar", name), f"{name} exemplar")]
        if warped_from:
            cells.append(_img_tag(layout.warped_image(warped_from, name), f"{name} warped"))
        cells += [_img_tag(layout.output_image(v, name), f"{name} {v}") for v in variants]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="grid">\n' + "\n".join(rows) + "\n</table>\n"


_CSS = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border-bottom:1px solid #ccc;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}
.grid img{width:96px;height:96px;image-rendering:pixelated}.warn{color:#a40;font-weight:bold}"""


def to_html(lb: Leaderboard, *, title: str = "evalkit leaderboard", grid_html: str = "", notes: list[str] = ()) -> str:
    grid = _grid(lb)
    datasets = list(dict.fromkeys(d for d, _ in lb.columns))
    head1 = "<tr><th></th>" + "".join(
        f'<th colspan="{sum(1 for dd, _ in lb.columns if dd == d)}" style="text-align:center">{html.escape(d)}</th>'
        for d in datasets) + "</tr>"
    head2 = "<tr><th>method</th>" + "".join(f"<th>{html.escape(_header(m))}</th>" for _, m in lb.columns) + "</tr>"
    body = []
    for v in lb.variants:
        tds = [f"<td>{_label(v, 'html')}</td>"]
        for d, m in lb.columns:
            if (v, d, m) not in grid.index:
                tds.append("<td>—</td>")
                continue
            cell = lb.cells.loc[grid[(v, d, m)]]
            t = html.escape(cell.text)
            tds.append(f"<td>{ {1: f'<b>{t}</b>', 2: f'<u>{t}</u>'}.get(cell['rank'], t) }</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    warn = (f'<p class="warn">Warning: some numbers use random-initialised metric backbones '
            f"({R_NOTE}).</p>") if lb.any_random_backbone else ""
    extra = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{warn}{extra}"
            f"<table>\n{head1}\n{head2}\n" + "\n".join(body) + "\n</table>\n"
            "<p>Mean over seeds/exemplar pairings (± sample std when more than one); <b>best</b>, <u>second</u> "
            "decided on the displayed rounding; <i>reference outputs</i> are anchors, not ranked.</p>\n"
            + (f"<h2>Examples</h2>\n{grid_html}" if grid_html else "") + "</body></html>\n")


def write(results: pd.DataFrame, out_dir: str | Path, *, outputs_dir: str | Path | None = None,
          metrics: list[str] | None = None, n_examples: int = 4, stem: str = "leaderboard",
          notes: list[str] = ()) -> dict[str, Path]:
    """Write ``<stem>.md/.html/.tex/.csv`` into ``out_dir`` (atomically); returns the paths."""
    lb = build(results, metrics=metrics)
    out_dir = Path(out_dir)
    grid_html = example_grid(Path(outputs_dir), list(lb.variants), n=n_examples) if outputs_dir else ""
    texts = {"md": to_markdown(lb), "html": to_html(lb, grid_html=grid_html, notes=notes),
             "tex": to_latex(lb), "csv": to_csv(lb)}
    return {k: write_atomic(out_dir / f"{stem}.{k}", t) for k, t in texts.items()}
