"""The protocol card every report opens with: what the numbers below were computed under.

Built from the long results table (run ids, evalkit version, FID mode, resize and
resolution per backbone, real-image resize, n per set, weights, seeds) and, for a run,
its ``run.json`` (date, git commit and whether the checkout was dirty). A reader can
tell from the card alone whether two reports are comparable.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from evalkit.errors import EvalkitError


def read_run_info(run_dir: str | Path | None) -> dict | None:
    """``run.json`` of a run folder (None when there is none: a bare results table)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EvalkitError(f"{path}: unreadable run.json ({err}); restore it from the run", path=path) from err


def _join(values) -> str:
    values = [str(v) for v in dict.fromkeys(values) if str(v) != ""]
    return ", ".join(values) if values else "—"


def _weights(w: str) -> str:
    return f"sha256 {w[:12]}…" if len(w) == 64 else w


def protocol_card(results: pd.DataFrame, run_info: dict | list[dict] | None = None) -> list[tuple[str, str]]:
    """``(field, value)`` lines of the card for the rows of ``results`` (a validated long
    table); ``run_info``: the ``run.json`` of each run the rows come from, when known."""
    from evalkit.reports.results import metric_kind

    infos = [i for i in ([run_info] if isinstance(run_info, dict) else (run_info or [])) if i]
    q = results[results["metric"].map(metric_kind) != "speed"]
    q = q[q["metric"].map(metric_kind) != "memory"]  # machine figures have no image protocol
    card = [("run", _join(q["run_id"]))]
    if infos:
        card.append(("date", _join(i.get("time", "") for i in infos)))
        card.append(("git commit", _join(f"{str(i.get('git_commit', ''))[:12]}{' (dirty)' if i.get('dirty') else ''}"
                                         for i in infos)))
    card.append(("evalkit", _join(q["evalkit_version"])))
    if "protocol" in q.columns:  # the evaluation preset (evalkit.protocols); `evalkit protocols NAME` says what it pins
        card.append(("protocol", _join(q["protocol"])))
    fid = q[q["metric"].isin(["FID", "KID"])]
    if len(fid):
        card.append(("FID mode", _join(fid["metric_variant"])))
    per_backbone = []
    for backbone, g in q.groupby("backbone", sort=False):
        name = "pixels" if backbone == "none" else backbone
        per_backbone.append(f"{name}: {_join(g['resize'])} @ {_join(g['resolution'])} px")
    card.append(("resize @ resolution", "; ".join(per_backbone) or "—"))
    card.append(("real images resized", _join(q["real_resize"])))
    ns = [f"{d or '(no dataset)'} n={_join(sorted(set(g['n_images'])))}" for d, g in q.groupby("dataset", sort=False)]
    card.append(("n per set", "; ".join(ns) or "—"))
    card.append(("weights", _join(_weights(w) for w in q["weights_sha256"] if w != "none") if
                 (q["weights_sha256"] != "none").any() else "none (pixel metrics only)"))
    card.append(("seeds", _join(sorted(set(int(s) for s in q["seed"])))))
    return card


def card_markdown(card: list[tuple[str, str]]) -> str:
    return "**Protocol** — " + " · ".join(f"{k}: {v}" for k, v in card) + "\n"


def card_html(card: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in card)
    return f'<table class="card">{rows}</table>\n'


def card_latex(card: list[tuple[str, str]]) -> str:
    """As LaTeX comments: the card travels with the table but does not widen it."""
    return "".join(f"% {k}: {v}\n" for k, v in card)
