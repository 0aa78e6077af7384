"""Published numbers of RABIT (ECCV 2022) and UNITE (CVPR 2021) beside evalkit's own.

``reports/data/paper_tables.csv`` is a transcription of every number in the papers'
results tables (RABIT Tables 1-2, UNITE Tables 1-3): ``paper, table, task, dataset,
method, metric, value, higher_is_better``. :func:`compare` joins it with a long results
table and gives, per published number: paper | ours, the protocol ours was computed under,
and a mark for every way that protocol differs from the paper's (a substitute dataset such as
the built-in shapes, fewer test images, another evaluation preset, a random backbone, another
resolution). Δ = ours − paper, and whether ours is better by the metric's direction, is given
only on a row without marks: a marked row says ``not comparable: data shapes≠ADE20K,
n 48≠2000, protocol clean≠rabit2022, ...`` instead. What does transfer to any run is the
ordering each table asserts between methods (:mod:`evalkit.reports.claims_papers`).
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.errors import EvalkitError
from evalkit.files import write_atomic
from evalkit.reports import results as R

# Paper metric name → evalkit metric name. LPIPS is diversity in translation tables and
# a distance to the ground truth in RABIT Table 2 (manipulation).
_METRICS = {
    "FID": "FID", "SWD": "SWD", "PSNR": "PSNR", "SSIM": "SSIM",
    "VGG42 semantic": "semantic-relu4_2", "VGG52 semantic": "semantic-relu5_2",
    "VGG_M style": "style-mean", "VGG_V style": "style-std",
}
# Paper method name → evalkit variant (the methods evalkit implements). In UNITE's
# ablation (Table 3) the rows are UNITE's own building blocks on a SPADE generator. The
# papers' SPADE injects the exemplar's style (RABIT Table 1 reports its LPIPS diversity; UNITE
# §4.2: "supports style injection from an exemplar image"), so it is the exemplar-encoding
# SPADE-VAE (and Table 3's SPADE the exemplar-encoding unite/spade), never the labels-only
# `spade`, whose diversity is 0 by construction.
METHODS = {"RABIT": "rabit", "UNITE": "unite", "CoCosNet": "cocosnet", "SPADE": "spade-vae"}
ABLATION_METHODS = {"SPADE": "unite/spade", "SPADE+COS": "unite/spade+cos", "SPADE+OT": "unite/spade+ot",
                    "SPADE+UOT": "unite/spade+uot", "SEACE+UOT": "unite/seace+uot", "SEACE+UOT+MS": "unite/seace+uot+ms"}
# Paper dataset name → evalkit dataset name.
DATASETS = {
    "ADE20K": "ade20k", "CelebA-HQ (semantic)": "celebahq", "CelebA-HQ": "celebahq",
    "CelebA-HQ (edge)": "celebahq-edge", "DeepFashion": "deepfashion", "COCO-Stuff (layout)": "cocostuff",
}
COLUMNS = ["paper", "table", "task", "dataset", "method", "metric", "value", "higher_is_better"]
# Output side the papers evaluate at (RABIT and UNITE: 256x256; UNITE's COCO-Stuff layouts: 128x128).
PAPER_RESOLUTION = {"COCO-Stuff (layout)": 128}
DEFAULT_PAPER_RESOLUTION = 256
FULL_TEST_SET = 2000  # the papers' test split size where PAPER_TEST_N does not say otherwise
# Test images behind a paper's numbers, per paper dataset (ADE20K: its 2000 validation images).
PAPER_TEST_N = {"ADE20K": 2000}
# The evaluation preset (evalkit.protocols) each paper's numbers belong to: its released scripts.
PAPER_PROTOCOL = {"RABIT": "rabit2022", "UNITE": "unite2021"}


def paper_n(dataset: str) -> int:
    """How many test images a paper's number on ``dataset`` (a paper dataset name) is over."""
    return PAPER_TEST_N.get(dataset, FULL_TEST_SET)


def paper_protocol(paper: str) -> str | None:
    """The evaluation preset of ``paper``'s numbers (None for a paper without one)."""
    return PAPER_PROTOCOL.get(paper)


def table_label(paper: str, table: str) -> str:
    """``RABIT Tab. 1`` for paper ``RABIT``, table ``Table 1``."""
    return f"{paper} {table.replace('Table', 'Tab.')}"


def evalkit_metric(metric: str, task: str) -> str | None:
    """evalkit's name for a paper metric (None for numbers evalkit does not compute)."""
    if metric == "LPIPS":
        return "LPIPS-gt" if task == "manipulation" else "LPIPS-diversity"
    return _METRICS.get(metric)


def load(path: str | Path | None = None) -> pd.DataFrame:
    """The transcribed paper numbers, with ``ek_metric``, ``ek_variant``, ``ek_dataset`` added."""
    if path is None:
        with resources.files("evalkit.reports").joinpath("data/paper_tables.csv").open("r", encoding="utf-8") as f:
            df = pd.read_csv(f)
    else:
        df = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise EvalkitError(f"paper table {path}: missing column(s) {', '.join(missing)}", path=path)
    df["ek_metric"] = [evalkit_metric(m, t) for m, t in zip(df["metric"], df["task"])]
    df["ek_variant"] = [(ABLATION_METHODS if t == "ablation" else METHODS).get(m)
                        for m, t in zip(df["method"], df["task"])]
    df["ek_dataset"] = df["dataset"].map(DATASETS)
    return df


def _image_size(results: pd.DataFrame, variant: str, dataset: str) -> int | None:
    """The generated images' side for (variant, dataset): the resolution of its rows that
    see images at their own size (pixel metrics, SWD, LPIPS), None when none was computed."""
    own = results[(results["variant"] == variant) & (results["dataset"] == dataset) & ~results["backbone"].str.startswith("inception")]
    return int(own["resolution"].iloc[0]) if len(own) else None


def _protocol_text(rows: pd.DataFrame) -> str:
    r = rows.iloc[0]
    how = "pixels" if r["backbone"] == "none" else f"{r['backbone']} ({r['weights_sha256'][:20]}), {r['resize']}"
    return f"{how} @ {r['resolution']} px, {r['image_format']}, n={int(rows['n_images'].min())}, seeds={rows['seed'].nunique()}"


def protocol_marks(results: pd.DataFrame, sel: pd.DataFrame, p) -> list[str]:
    """Every way the protocol of our rows ``sel`` differs from that of the paper row ``p``:
    ``data shapes≠ADE20K``, ``n 48≠2000``, ``protocol clean≠rabit2022``, ``random backbone``,
    ``res 64≠256 px`` (empty: the numbers are comparable)."""
    marks = []
    ours_ds = sel["dataset"].iloc[0]
    if ours_ds != p["ek_dataset"]:
        marks.append(f"data {ours_ds}≠{p['dataset']}")
    n, want = int(sel["n_images"].min()), paper_n(p["dataset"])
    if n != want:
        marks.append(f"n {n}≠{want}")
    ours_protocol = "/".join(dict.fromkeys(sel["protocol"])) if "protocol" in sel else "clean"
    want_protocol = paper_protocol(p["paper"])
    if want_protocol is not None and ours_protocol != want_protocol:
        marks.append(f"protocol {ours_protocol}≠{want_protocol}")
    if not bool(sel["comparable"].all()):
        marks.append("random backbone")
    side = _image_size(results, p["ek_variant"], ours_ds)
    paper_side = PAPER_RESOLUTION.get(p["dataset"], DEFAULT_PAPER_RESOLUTION)
    if side is not None and side != paper_side:
        marks.append(f"res {side}≠{paper_side} px")
    return marks


def compare(results: pd.DataFrame, *, dataset_map: dict[str, str] | None = None, paper: pd.DataFrame | None = None,
            only_ours: bool = True, tasks: tuple[str, ...] = ("translation", "ablation")) -> pd.DataFrame:
    """Published numbers next to ours.

    dataset_map: ours → paper dataset name, for comparing a run on a substitute dataset
        (e.g. ``{"shapes": "ADE20K"}``); such rows carry the mark ``data shapes≠ADE20K``.
        Without it, datasets match by evalkit name.
    only_ours: keep only published numbers that have an evalkit number beside them.
    tasks: which paper tables to use; ``manipulation`` (RABIT Table 2) is evaluated on
        edited layouts, so a translation run is never set beside it unless asked.

    Returns columns ``paper, table, dataset, method, metric, paper_value, ours, ours_std,
    seeds, delta, ours_better, higher_is_better, protocol, marks``; ``delta`` and
    ``ours_better`` are empty on a row with marks (:func:`protocol_marks`): not comparable.
    """
    paper = load() if paper is None else paper
    paper = paper[paper["task"].isin(tasks)]
    results = R.validate(results)
    results = results[results["split"] == "test"]
    dataset_map = dataset_map or {}
    rows = []
    for _, p in paper.iterrows():
        ours_ds = [d for d, pd_name in dataset_map.items() if pd_name == p["dataset"]]
        if not ours_ds and isinstance(p["ek_dataset"], str):
            ours_ds = [p["ek_dataset"]]
        sel = results[(results["variant"] == p["ek_variant"]) & (results["metric"] == p["ek_metric"])
                      & results["dataset"].isin(ours_ds)] if isinstance(p["ek_metric"], str) else results.iloc[:0]
        rec = {"paper": p["paper"], "table": p["table"], "dataset": p["dataset"], "method": p["method"],
               "metric": p["metric"], "paper_value": float(p["value"]), "higher_is_better": bool(p["higher_is_better"]),
               "ours": np.nan, "ours_std": np.nan, "seeds": 0, "delta": np.nan, "ours_better": None,
               "protocol": "", "marks": ""}
        if len(sel):
            ours = float(sel["value"].mean())
            marks = protocol_marks(results, sel, p)
            rec.update(ours=ours, ours_std=float(sel["value"].std(ddof=1)) if len(sel) > 1 else 0.0,
                       seeds=int(sel["seed"].nunique()), protocol=_protocol_text(sel), marks=", ".join(marks))
            if not marks:  # dataset, n, preset, weights and resolution all the paper's: Δ is a verdict
                delta = ours - rec["paper_value"]
                rec.update(delta=delta, ours_better=bool(delta > 0) if rec["higher_is_better"] else bool(delta < 0))
        elif only_ours:
            continue
        rows.append(rec)
    return pd.DataFrame(rows, columns=["paper", "table", "dataset", "method", "metric", "paper_value", "ours",
                                       "ours_std", "seeds", "delta", "ours_better", "higher_is_better",
                                       "protocol", "marks"])


def _digits(metric: str) -> int:
    return {"LPIPS": 3, "SSIM": 3, "VGG42 semantic": 3, "VGG52 semantic": 3, "VGG_M style": 3,
            "VGG_V style": 3}.get(metric, 2)


def _cell(v: float, metric: str) -> str:
    return "—" if pd.isna(v) else (f"{v:.3e}" if abs(v) >= 1e6 else f"{v:.{_digits(metric)}f}")


def _delta_text(row) -> str:
    """Δ with ▲/▼ by the metric's direction; a row whose protocol differs from the paper's
    (any ⚠ mark) has no Δ: ``n/c``, not comparable."""
    if row["marks"]:
        return "n/c"
    if pd.isna(row["delta"]):
        return "—"
    sign = "▲" if row["ours_better"] else "▼"
    d = row["delta"]
    return (f"{d:+.3e}" if abs(d) >= 1e6 else f"{d:+.{_digits(row['metric'])}f}") + f" {sign}"


def _marks_text(row) -> str:
    return f"⚠ not comparable: {row['marks']}" if row["marks"] else ""


def check_selection(results: pd.DataFrame, dataset_map: dict[str, str], *, source) -> None:
    """An empty paper-table selection is an error naming what would match."""
    table = compare(results, dataset_map=dataset_map)
    if len(table):
        return
    results = results[results["split"] == "test"]
    ours = ", ".join(sorted(set(results["dataset"]))) or "none"
    variants = ", ".join(sorted(set(results["variant"]))) or "none"
    known = ", ".join(sorted({v for v in (*METHODS.values(), *ABLATION_METHODS.values())}))
    mapped = f" (mapped: {', '.join(f'{k}={v}' for k, v in dataset_map.items())})" if dataset_map else ""
    raise EvalkitError(f"{source}: no published number matches these results (datasets: {ours}{mapped}; variants: "
                       f"{variants}); paper datasets: {', '.join(DATASETS)}; map ours with --as OURS=PAPER (e.g. --as "
                       f"{ours.split(', ')[0]}=ADE20K) or set --dataset; the papers' methods are {known} "
                       "(set --method for an `evaluate` CSV)", path=source)


def to_markdown(table: pd.DataFrame, card: list[tuple[str, str]] | None = None) -> str:
    from evalkit.reports.card import card_markdown

    lines = ([card_markdown(card)] if card else []) + [
             "| paper | table | dataset | method | metric | paper | ours | Δ | protocol (ours) | marks |",
             "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for _, r in table.iterrows():
        arrow = "↑" if r["higher_is_better"] else "↓"
        lines.append(f"| {r['paper']} | {r['table']} | {r['dataset']} | {r['method']} | {r['metric']} {arrow} | "
                     f"{_cell(r['paper_value'], r['metric'])} | {_cell(r['ours'], r['metric'])} | {_delta_text(r)} | "
                     f"{r['protocol']} | {_marks_text(r)} |")
    lines += ["", "Δ = ours − paper; ▲ ours better, ▼ ours worse (by the metric's direction), given only where "
              "dataset, n, evaluation preset, weights and resolution are the paper's. ⚠ names every difference "
              "from the paper's protocol: those numbers are not comparable (n/c) and get no Δ. The orderings "
              "the tables assert do transfer: claims_vs_papers.md."]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame, *, title: str = "evalkit vs published numbers",
            card: list[tuple[str, str]] | None = None) -> str:
    from evalkit.reports.card import card_html

    head = "".join(f"<th>{h}</th>" for h in ("paper", "table", "dataset", "method", "metric", "paper", "ours", "Δ",
                                             "protocol (ours)", "marks"))
    body = []
    for _, r in table.iterrows():
        colour = "#777" if r["marks"] else "" if pd.isna(r["delta"]) else ("#1a7f37" if r["ours_better"] else "#cf222e")
        arrow = "↑" if r["higher_is_better"] else "↓"
        cells = [r["paper"], r["table"], r["dataset"], r["method"], f"{r['metric']} {arrow}",
                 _cell(r["paper_value"], r["metric"]), _cell(r["ours"], r["metric"])]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        tds += f'<td style="color:{colour}">{html.escape(_delta_text(r))}</td>' if colour else "<td>—</td>"
        tds += f"<td>{html.escape(r['protocol'])}</td>"
        tds += f'<td style="color:#a40">{html.escape(_marks_text(r))}</td>'
        body.append(f"<tr>{tds}</tr>")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "th,td{border-bottom:1px solid #ccc;padding:4px 8px}td:nth-child(-n+8){white-space:nowrap}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{card_html(card) if card else ''}<table>\n<tr>{head}</tr>\n"
            + "\n".join(body) + "\n</table>\n"
            "<p>Δ = ours − paper, green when ours is better and red when worse (by the metric's direction), given "
            "only where dataset, n, evaluation preset, weights and resolution are the paper's. ⚠ names every "
            "difference from the paper's protocol: those numbers are not comparable (grey n/c, no Δ).</p>\n"
            "</body></html>\n")


def write(results: pd.DataFrame, out_dir: str | Path, *, dataset_map: dict[str, str] | None = None,
          stem: str = "paper_tables", only_ours: bool = True, run_info: dict | list[dict] | None = None) -> dict[str, Path]:
    """Write ``<stem>.md/.html/.csv`` (atomically), each opening with the protocol card of
    ``results``; returns the paths."""
    from evalkit.reports.card import protocol_card

    results = R.validate(results)
    table = compare(results, dataset_map=dataset_map, only_ours=only_ours)
    card = protocol_card(results[results["split"] == "test"], run_info) if len(results) else None
    out_dir = Path(out_dir)
    return {
        "md": write_atomic(out_dir / f"{stem}.md", to_markdown(table, card)),
        "html": write_atomic(out_dir / f"{stem}.html", to_html(table, card=card)),
        "csv": write_atomic(out_dir / f"{stem}.csv", table.to_csv(index=False, float_format="%.10g")),
    }
