"""Reproduction cards: one published number traced to evalkit's clean protocol, step by step.

A card is for one (method, dataset, metric) of a paper table (``reports/data/paper_tables.csv``)
and up to four stages, in this order::

    published                 the paper's number (its preset, its test-set size, its resolution)
    released checkpoint       evalkit inference of the released checkpoint (baselines/official.py)
    released images           the official test script's saved images, read with ``outputs``
    clean                     evalkit's ``clean`` protocol

Each stage after the first gives its value, Δ to the previous stage and the protocol fields
that differ between the two (dataset, n, image format, evaluation preset expanded into the
preset settings that differ, backbone weights, ...), so every difference is attributed to named
fields, or said to have none ("same protocol: the model or its outputs"). Stages are rows of
evalkit results tables, picked by their variant label; a stage the user does not give is left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.errors import EvalkitError
from evalkit.files import write_atomic
from evalkit.reports import paper_tables as P
from evalkit.reports import results as R

__all__ = ["STAGES", "Stage", "card", "to_markdown", "write"]

STAGES = ("published", "released checkpoint", "released images", "clean")
# results column → how the card names it
FIELDS = (("dataset", "dataset"), ("n_images", "n"), ("resolution", "resolution"), ("protocol", "preset"),
          ("image_format", "image format"), ("resize", "resize"), ("real_resize", "real resize"),
          ("backbone", "backbone"), ("weights_sha256", "weights"), ("metric_variant", "metric variant"))


@dataclass(frozen=True)
class Stage:
    """One stage of a card: its name (a member of :data:`STAGES` after ``published``) and the
    variant label of its rows in the results the card is given."""

    name: str
    variant: str


def _preset_settings(name: str) -> dict | None:
    from evalkit import protocols

    try:
        return protocols.get(name).as_dict()["settings"]
    except EvalkitError:
        return None


def _short(v) -> str:
    s = str(v)
    return s[:12] if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


def differences(before: dict, after: dict) -> list[str]:
    """The protocol fields (named as the card names them) whose values differ between two stages'
    protocols (dicts of results columns; a field only one side knows is not compared). A different
    preset is expanded into the preset settings that differ (``fid_mode legacy→None``)."""
    out = []
    for col, label in FIELDS:
        a, b = before.get(col), after.get(col)
        if a is None or b is None or str(a) == str(b):
            continue
        text = f"{label} {_short(a)}→{_short(b)}"
        if col == "protocol":
            sa, sb = _preset_settings(str(a)), _preset_settings(str(b))
            if sa is not None and sb is not None:
                changed = [f"{k} {sa.get(k)}→{sb.get(k)}" for k in sa if sa.get(k) != sb.get(k)]
                if changed:
                    text += f" ({'; '.join(changed)})"
        out.append(text)
    return out


def _protocol_of(rows: pd.DataFrame) -> dict:
    r = rows.iloc[0]
    proto = {col: r[col] for col, _ in FIELDS if col in rows.columns}
    proto["n_images"] = int(rows["n_images"].min())
    return proto


def _paper_row(paper: pd.DataFrame, method: str, dataset: str, metric: str, paper_name: str | None) -> pd.Series:
    sel = paper[(paper["method"] == method) & (paper["dataset"] == dataset) & (paper["metric"] == metric)]
    if paper_name is not None:
        sel = sel[sel["paper"] == paper_name]
    if not len(sel):
        known = paper[(paper["method"] == method)]
        raise EvalkitError(
            f"no published {metric} of {method} on {dataset}{f' in {paper_name}' if paper_name else ''}; "
            f"published for {method}: "
            + (", ".join(sorted({f'{m} on {d}' for m, d in zip(known['metric'], known['dataset'])})) or "nothing"))
    return sel.iloc[0]


def card(results: pd.DataFrame, *, method: str, dataset: str, metric: str, stages: list[Stage],
         paper: pd.DataFrame | None = None, paper_name: str | None = None) -> pd.DataFrame:
    """The card of paper ``method`` (paper spelling, e.g. ``UNITE``) on paper ``dataset``
    (``ADE20K``) and paper ``metric`` (``FID``): one row per stage, ``stage, variant, value,
    delta, attributed_to, protocol``. ``results`` holds the stages' rows."""
    paper = P.load() if paper is None else paper
    p = _paper_row(paper, method, dataset, metric, paper_name)
    ek_metric = p["ek_metric"]
    if not isinstance(ek_metric, str):
        raise EvalkitError(f"evalkit does not compute the papers' {metric}")
    order = {s: i for i, s in enumerate(STAGES)}
    for s in stages:
        if s.name not in order or s.name == "published":
            raise EvalkitError(f"unknown stage {s.name!r}; choose from {', '.join(STAGES[1:])}")
    stages = sorted(stages, key=lambda s: order[s.name])
    results = R.validate(results)
    published = {"dataset": p["ek_dataset"], "n_images": P.paper_n(p["dataset"]),
                 "protocol": P.paper_protocol(p["paper"]) or "unknown"}
    rows = [{"stage": "published", "variant": f"{p['paper']} {p['table']}", "value": float(p["value"]), "delta": np.nan,
             "attributed_to": "", "protocol": ", ".join(f"{k} {v}" for k, v in published.items())}]
    before = published
    for s in stages:
        sel = results[(results["variant"] == s.variant) & (results["metric"] == ek_metric) & (results["split"] == "test")]
        if not len(sel):
            have = sorted(set(results["variant"]))
            raise EvalkitError(f"stage {s.name!r}: no {ek_metric} rows of variant {s.variant!r} in the results "
                               f"(variants there: {', '.join(have) or 'none'})")
        if sel["dataset"].nunique() > 1:
            raise EvalkitError(f"stage {s.name!r}: variant {s.variant!r} has {ek_metric} on several datasets "
                               f"({', '.join(sorted(set(sel['dataset'])))}); give one results table per dataset")
        proto = _protocol_of(sel)
        value = float(sel["value"].mean())
        diff = differences(before, proto)
        if not diff:
            diff = ["same protocol: the difference is the model or its outputs"]
        rows.append({"stage": s.name, "variant": s.variant, "value": value, "delta": value - rows[-1]["value"],
                     "attributed_to": "; ".join(diff),
                     "protocol": ", ".join(f"{label} {_short(proto[c])}" for c, label in FIELDS if c in proto)})
        before = proto
    out = pd.DataFrame(rows, columns=["stage", "variant", "value", "delta", "attributed_to", "protocol"])
    out.attrs.update(method=method, dataset=dataset, metric=metric, paper=p["paper"], table=p["table"])
    return out


def to_markdown(table: pd.DataFrame) -> str:
    a = table.attrs
    lines = [f"### {a.get('method')} · {a.get('dataset')} · {a.get('metric')} ({a.get('paper')} {a.get('table')})", "",
             "| stage | source | value | Δ to the stage before | attributed to |", "| --- | --- | ---: | ---: | --- |"]
    for r in table.itertuples():
        delta = "" if np.isnan(r.delta) else f"{r.delta:+.4g}"
        lines.append(f"| {r.stage} | {r.variant} | {r.value:.4g} | {delta} | {r.attributed_to} |")
    lines += ["", "Protocol of each stage: " + " · ".join(f"{r.stage}: {r.protocol}" for r in table.itertuples()), ""]
    return "\n".join(lines)


def to_json(table: pd.DataFrame) -> str:
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in table.to_dict("records")]
    return json.dumps({**table.attrs, "stages": rows}, indent=1)


def write(table: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    a = table.attrs
    stem = "reproduction_" + "_".join(str(a.get(k, "")).replace(" ", "-").replace("/", "-")
                                      for k in ("method", "dataset", "metric"))
    md = write_atomic(out_dir / f"{stem}.md", to_markdown(table))
    csv = write_atomic(out_dir / f"{stem}.csv", table.to_csv(index=False))
    return {"md": md, "csv": csv}
