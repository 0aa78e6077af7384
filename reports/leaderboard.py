"""Leaderboards: methods × (dataset, metric) views of the long results table.

Each cell is the mean over seeds / exemplar pairings, shown as ``mean ± std`` (sample
standard deviation, ``ddof=1``) when there is more than one, and, when per-item values
were available, the 95 % bootstrap interval over the test items ``[low, high]``
(:func:`evalkit.reports.claims.item_intervals`). Headers carry ``↑``/``↓``. Rows of
different runs stay apart (a ``run`` column; never averaged as if they were seeds). Ranks
are decided on the *displayed* rounding (``results.decimals``), so ties on screen are ties
in the ranking; the best value in a column is bold and the second underlined. Reference
outputs are shown in italics and never ranked. Every format opens with the protocol card
(:mod:`evalkit.reports.card`). Written as Markdown, HTML (with a grid of example outputs),
LaTeX (booktabs, scaled to the column width) and CSV (full precision, real ranks).
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
from evalkit.reports import card as C
from evalkit.reports import results as R

_ROW_KEYS = ["run_id", "method", "variant"]
R_NOTE = "not comparable with published numbers"


@dataclass(frozen=True)
class Leaderboard:
    """Aggregated cells: one row per (method, variant, dataset, metric)."""

    cells: pd.DataFrame  # method, variant, run_id, dataset, metric, mean, std, count, n, comparable, rank, mark, text
    variants: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (dataset, metric), display order
    rows: tuple[tuple[str, str], ...] = ()  # (run_id, variant), display order
    card: tuple[tuple[str, str], ...] = ()  # the protocol card

    @property
    def any_random_backbone(self) -> bool:
        return not bool(self.cells["comparable"].all())

    @property
    def multi_run(self) -> bool:
        return len({r for r, _ in self.rows}) > 1


def _fmt(value: float, metric: str) -> str:
    if np.isinf(value):
        return "∞" if value > 0 else "−∞"
    return R.format_value(value, metric)


def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (NaN at one seed) and count over seeds for each (run, method,
    variant, dataset, split, metric): rows of different runs are never pooled."""
    g = results.groupby(_ROW_KEYS + ["dataset", "split", "metric"], sort=False)
    out = g.agg(mean=("value", "mean"), std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan),
                count=("value", "size"), n=("n", "min"), comparable=("comparable", "all")).reset_index()
    return out


def _shown(value: float, metric: str) -> float:
    """The value as displayed (rounded to the metric's decimals): what ranks compare."""
    return float(value) if not np.isfinite(value) else round(float(value), R.decimals(metric))


def _ranks(col: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """``(rank, mark)``: rank 1 for the best displayed value, 2 for the next, ... (values
    that display the same share a rank); mark 1 (bold) for the best and 2 (underlined) for
    the second with three methods or more, 0 otherwise (a lone method is not "best")."""
    shown = col["mean"].map(lambda v: _shown(v, metric))
    distinct = sorted(shown.dropna().unique(), reverse=R.higher_is_better(metric))
    rank = shown.map(lambda v: float(distinct.index(v) + 1) if v in distinct else np.nan)
    mark = rank.where(rank <= (2 if len(col) >= 3 else 1), 0).fillna(0).astype(int)
    if len(col) < 2:
        mark[:] = 0
    return rank, mark


def _interval_text(lo: float, hi: float, metric: str) -> str:
    return "" if pd.isna(lo) or pd.isna(hi) else f" [{_fmt(lo, metric)}, {_fmt(hi, metric)}]"


def build(results: pd.DataFrame, *, metrics: list[str] | None = None, datasets: list[str] | None = None,
          split: str = "test", intervals: pd.DataFrame | None = None,
          run_info: dict | list[dict] | None = None) -> Leaderboard:
    """Aggregate the long table into a leaderboard (``metrics``/``datasets`` select and order
    columns). ``intervals``: rows ``variant, dataset, metric, ci_low, ci_high`` (and
    ``run_id``) of 95 % bootstrap intervals over items, shown beside the means.
    ``run_info``: ``run.json`` of the run(s), for the protocol card."""
    results = R.validate(results)
    results = results[results["split"] == split]
    if metrics is not None:
        results = results[results["metric"].isin(metrics)]
    if datasets is not None:
        results = results[results["dataset"].isin(datasets)]
    results = results[results["metric"].map(R.metric_kind) == "quality"]
    card = tuple(C.protocol_card(results, run_info)) if len(results) else ()
    cells = aggregate(results)
    cells["ci_low"], cells["ci_high"] = np.nan, np.nan
    if intervals is not None and len(intervals) and len(cells):
        on = [k for k in ("run_id", "variant", "dataset", "metric") if k in intervals.columns]
        merged = cells.drop(columns=["ci_low", "ci_high"]).merge(
            intervals[on + ["ci_low", "ci_high"]].drop_duplicates(on), on=on, how="left")
        cells = merged.set_axis(cells.index)
    metric_order = metrics or list(dict.fromkeys(cells["metric"]))
    dataset_order = datasets or list(dict.fromkeys(cells["dataset"]))
    columns = tuple((d, m) for d in dataset_order for m in metric_order
                    if ((cells["dataset"] == d) & (cells["metric"] == m)).any())
    cells["rank"], cells["mark"] = np.nan, 0
    ranked = cells[~cells["variant"].map(is_reference)]
    for (d, m), col in ranked.groupby(["dataset", "metric"], sort=False):
        cells.loc[col.index, "rank"], cells.loc[col.index, "mark"] = _ranks(col, m)
    cells["mark"] = cells["mark"].astype(int)
    cells["text"] = [
        _fmt(mu, m) + (f" ± {_fmt(sd, m)}" if c > 1 else "") + _interval_text(lo, hi, m)
        for mu, sd, c, m, lo, hi in zip(cells["mean"], cells["std"], cells["count"], cells["metric"],
                                        cells["ci_low"], cells["ci_high"])
    ]
    rows = tuple(dict.fromkeys(zip(cells["run_id"], cells["variant"])))
    return Leaderboard(cells=cells, variants=tuple(dict.fromkeys(cells["variant"])), columns=columns, rows=rows,
                       card=card)


def _notes(lb: Leaderboard, fmt: str) -> str:
    """The legend under a table: what a cell is, what the marks mean."""
    ci = " [95 % bootstrap interval over the test items]" if lb.cells["ci_low"].notna().any() else ""
    runs = "; rows of different runs are kept apart (run column)" if lb.multi_run else ""
    best = {"md": "**best**, <u>second</u>", "html": "<b>best</b>, <u>second</u>"}[fmt]
    refs = {"md": "*reference outputs*", "html": "<i>reference outputs</i>"}[fmt]
    return (f"Mean over seeds/exemplar pairings (± sample std when more than one){ci}; {best} decided on the "
            f"displayed rounding; {refs} are anchors, not ranked{runs}.")


def _label(variant: str, fmt: str) -> str:
    if not is_reference(variant):
        return {"md": variant, "html": html.escape(variant), "tex": _latex_escape(variant)}[fmt]
    return {"md": f"*{variant}*", "html": f"<i>{html.escape(variant)}</i>",
            "tex": rf"\textit{{{_latex_escape(variant)}}}"}[fmt]


def _grid(lb: Leaderboard) -> pd.Series:
    """(run_id, variant, dataset, metric) → cell row (index into ``lb.cells``)."""
    idx = lb.cells.set_index(["run_id", "variant", "dataset", "metric"]).index
    return pd.Series(lb.cells.index, index=idx)


def _rows(lb: Leaderboard):
    return lb.rows or tuple((r, v) for r in dict.fromkeys(lb.cells["run_id"]) for v in lb.variants)


def _header(metric: str) -> str:
    return f"{metric} {R.arrow(metric)}"


def _links_markdown(links: dict[str, str]) -> list[str]:
    return ["", "Files: " + " · ".join(f"[{name}]({target})" for name, target in links.items())] if links else []


def to_markdown(lb: Leaderboard, *, links: dict[str, str] | None = None) -> str:
    grid = _grid(lb)
    run_col = ["run"] if lb.multi_run else []
    head = run_col + ["method"] + [f"{d} {_header(m)}".strip() for d, m in lb.columns]
    lines = ([C.card_markdown(list(lb.card))] if lb.card else []) + [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([" --- "] * (1 + len(run_col)) + [" ---: "] * len(lb.columns)) + "|"]
    for run, v in _rows(lb):
        row = ([run] if run_col else []) + [_label(v, "md")]
        for d, m in lb.columns:
            if (run, v, d, m) not in grid.index:
                row.append("—")
                continue
            cell = lb.cells.loc[grid[(run, v, d, m)]]
            row.append({1: f"**{cell.text}**", 2: f"<u>{cell.text}</u>"}.get(cell["mark"], cell.text))
        lines.append("| " + " | ".join(row) + " |")
    notes = ["", _notes(lb, "md")]
    if lb.any_random_backbone:
        notes.append(f"Warning: some numbers use random-initialised metric backbones: {R_NOTE}.")
    return "\n".join(lines + notes + _links_markdown(links or {})) + "\n"


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def to_latex(lb: Leaderboard) -> str:
    """booktabs table: datasets as column groups, metrics with arrows under them, scaled to
    ``\\columnwidth`` (needs ``graphicx``; pick columns with ``--metrics``); the protocol
    card rides along as comments. Intervals print small under the mean."""
    grid = _grid(lb)
    datasets = list(dict.fromkeys(d for d, _ in lb.columns))
    spans = [(d, sum(1 for dd, _ in lb.columns if dd == d)) for d in datasets]
    lead = "ll" if lb.multi_run else "l"
    lines = [C.card_latex(list(lb.card)).rstrip("\n")] if lb.card else []
    lines += [r"\resizebox{\columnwidth}{!}{%", r"\begin{tabular}{" + lead + "c" * len(lb.columns) + "}", r"\toprule"]
    skip = " & " * len(lead)
    lines.append(skip + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_latex_escape(d)}}}" for d, k in spans) + r" \\")
    start = 1 + len(lead)
    rules = []
    for _, k in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    lines.append(" ".join(rules))
    arrows = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}
    lines.append(("Run & " if lb.multi_run else "") + "Method & "
                 + " & ".join(f"{_latex_escape(m)} {arrows[R.arrow(m)]}" for _, m in lb.columns) + r" \\")
    lines.append(r"\midrule")
    for run, v in _rows(lb):
        row = ([_latex_escape(run)] if lb.multi_run else []) + [_label(v, "tex")]
        for d, m in lb.columns:
            if (run, v, d, m) not in grid.index:
                row.append("--")
                continue
            cell = lb.cells.loc[grid[(run, v, d, m)]]
            main, _, ci = cell.text.partition(" [")
            text = _latex_number(main)
            text = {1: rf"\textbf{{{text}}}", 2: rf"\underline{{{text}}}"}.get(cell["mark"], text)
            row.append(text + (rf" {{\scriptsize[{_latex_number(ci.rstrip(']'))}]}}" if ci else ""))
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    return "\n".join(lines) + "\n"


def _latex_number(text: str) -> str:
    return (text.replace(" ± ", r" $\pm$ ").replace("−∞", r"$-\infty$").replace("∞", r"$\infty$"))


def to_csv(lb: Leaderboard) -> str:
    """Machine-readable cells (full precision): ``rank`` 1, 2, 3, ... on the displayed
    rounding (empty for reference outputs), ``std`` empty at one seed, the item interval
    when known."""
    cols = ["run_id", "method", "variant", "dataset", "split", "metric", "mean", "std", "ci_low", "ci_high", "count",
            "n", "comparable", "rank"]
    out = lb.cells[cols].copy()
    out["rank"] = out["rank"].astype("Int64")
    return out.to_csv(index=False, float_format="%.10g")


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
.grid img{width:96px;height:96px;image-rendering:pixelated}.warn{color:#a40;font-weight:bold}
.card th,.card td{text-align:left;border:none;padding:1px 10px 1px 0;font-size:90%}"""


def to_html(lb: Leaderboard, *, title: str = "evalkit leaderboard", grid_html: str = "", notes: list[str] = (),
            links: dict[str, str] | None = None) -> str:
    grid = _grid(lb)
    datasets = list(dict.fromkeys(d for d, _ in lb.columns))
    lead = 2 if lb.multi_run else 1
    head1 = "<tr>" + "<th></th>" * lead + "".join(
        f'<th colspan="{sum(1 for dd, _ in lb.columns if dd == d)}" style="text-align:center">{html.escape(d)}</th>'
        for d in datasets) + "</tr>"
    head2 = ("<tr>" + ("<th>run</th>" if lb.multi_run else "") + "<th>method</th>"
             + "".join(f"<th>{html.escape(_header(m))}</th>" for _, m in lb.columns) + "</tr>")
    body = []
    for run, v in _rows(lb):
        tds = ([f"<td>{html.escape(run)}</td>"] if lb.multi_run else []) + [f"<td>{_label(v, 'html')}</td>"]
        for d, m in lb.columns:
            if (run, v, d, m) not in grid.index:
                tds.append("<td>—</td>")
                continue
            cell = lb.cells.loc[grid[(run, v, d, m)]]
            t = html.escape(cell.text)
            tds.append(f"<td>{ {1: f'<b>{t}</b>', 2: f'<u>{t}</u>'}.get(cell['mark'], t) }</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    warn = (f'<p class="warn">Warning: some numbers use random-initialised metric backbones '
            f"({R_NOTE}).</p>") if lb.any_random_backbone else ""
    extra = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    card = C.card_html(list(lb.card)) if lb.card else ""
    files = ("<p>Files: " + " · ".join(f'<a href="{html.escape(t)}">{html.escape(n)}</a>' for n, t in links.items())
             + "</p>\n") if links else ""
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{card}{warn}{extra}"
            f"<table>\n{head1}\n{head2}\n" + "\n".join(body) + "\n</table>\n"
            f"<p>{_notes(lb, 'html')}</p>\n{files}"
            + (f"<h2>Examples</h2>\n{grid_html}" if grid_html else "") + "</body></html>\n")


def relative_links(out_dir: str | Path, files: dict[str, str | Path]) -> dict[str, str]:
    """``name → path`` made relative to ``out_dir`` (where the report is opened from)."""
    import os

    return {name: Path(os.path.relpath(Path(p).resolve(), Path(out_dir).resolve())).as_posix()
            for name, p in files.items()}


def write(results: pd.DataFrame, out_dir: str | Path, *, outputs_dir: str | Path | None = None,
          metrics: list[str] | None = None, n_examples: int = 4, stem: str = "leaderboard",
          notes: list[str] = (), intervals: pd.DataFrame | None = None, run_info: dict | list[dict] | None = None,
          links: dict[str, str | Path] | None = None) -> dict[str, Path]:
    """Write ``<stem>.md/.html/.tex/.csv`` into ``out_dir`` (atomically); returns the paths.
    ``links``: other report files (name → path), linked relative to ``out_dir``."""
    lb = build(results, metrics=metrics, intervals=intervals, run_info=run_info)
    out_dir = Path(out_dir)
    rel = relative_links(out_dir, links or {})
    grid_html = example_grid(Path(outputs_dir), list(lb.variants), n=n_examples) if outputs_dir else ""
    texts = {"md": to_markdown(lb, links=rel), "html": to_html(lb, grid_html=grid_html, notes=notes, links=rel),
             "tex": to_latex(lb), "csv": to_csv(lb)}
    return {k: write_atomic(out_dir / f"{stem}.{k}", t) for k, t in texts.items()}
