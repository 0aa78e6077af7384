"""`evalkit report ...`: leaderboards, paper tables and regression gates from results tables."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import typer

from evalkit.commands._checks import out_folder, reading
from evalkit.errors import EvalkitError, RegressionFound

app = typer.Typer(help="Reports from a long results table: leaderboard, paper tables, compare (regression gate).",
                  no_args_is_help=True)

DEFAULT_DB = Path("runs/history.sqlite")


@app.command()
def compare(
    base: str = typer.Argument(..., help="Base run: run id in the history, a results.csv, or a run folder."),
    head: str = typer.Argument(..., help="Head run: run id in the history, a results.csv, or a run folder."),
    policy: Path = typer.Option(None, "--policy", help="TOML policy: per-metric direction and tolerance."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="History database (for run ids)."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON on stdout."),
) -> None:
    """Compare two runs metric by metric; exit 1 on a regression beyond tolerance."""
    from evalkit.reports import history

    if policy is not None:
        with reading(policy, "a TOML policy"):
            policy = history.Policy.load(policy)
    try:
        verdict = history.gate(base, head, policy=policy, db=db)
    except sqlite3.DatabaseError as err:
        raise EvalkitError(f"{db}: not an evalkit history database ({err}); pass --db of a run's history",
                           path=db) from err
    if json_out:
        print(json.dumps({"base": verdict.base, "head": verdict.head, "same_machine": verdict.same_machine,
                          "regressions": verdict.regressions,
                          "rows": json.loads(verdict.table.to_json(orient="records"))}, indent=1))
    else:
        print(f"base: {verdict.base}\nhead: {verdict.head}\nsame machine: {verdict.same_machine}")
        print(history.format_table(verdict.table))
    if verdict.regressions:
        raise RegressionFound(verdict.summary())


@app.command()
def runs(
    db: Path = typer.Option(DEFAULT_DB, "--db", help="History database."),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as JSON on stdout."),
) -> None:
    """List the runs recorded in the history (ids to pass to `compare`)."""
    from evalkit.reports import history

    if not db.is_file():
        raise EvalkitError(f"history database not found: {db} (runs record into it when they finish)", path=db)
    with reading(db, "an evalkit history database"):
        table = history.runs(db)
    if json_out:
        print(table.to_json(orient="records"))
    elif table.empty:
        print(f"no runs recorded in {db}")
    else:
        print(table.to_string(index=False))


def _parse_map(items: list[str]) -> dict[str, str]:
    from evalkit.reports.paper_tables import DATASETS

    out = {}
    for item in items:
        k, _, v = (t.strip() for t in item.partition("="))
        if not k or not v:
            raise EvalkitError(f"--as expects OURS=PAPER_DATASET (e.g. shapes=ADE20K), got {item!r}")
        if v not in DATASETS:
            raise EvalkitError(f"--as {item}: unknown paper dataset {v!r}; choose one of {', '.join(DATASETS)}")
        out[k] = v
    return out


def _check_metrics(metrics: list[str], df, source: Path) -> None:
    """Every ``--metric`` must be a ranked (quality) metric of the table's test rows."""
    import difflib

    from evalkit.metrics.registry import row_spec
    from evalkit.reports import results as R

    rows = df[df["split"] == "test"]["metric"]
    present = list(dict.fromkeys(m for m in rows if R.metric_kind(m) == "quality"))
    for name in metrics:
        if name in present:
            continue
        close = difflib.get_close_matches(name, present, n=1, cutoff=0.5) or [
            m for m in present if m.lower() == name.lower()]
        why = (f"{source} has no {name} rows" if row_spec(name) is not None else f"unknown metric {name!r}")
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise EvalkitError(f"--metric {name}: {why}{hint}; metrics in {source}: {', '.join(present) or 'none'}",
                           path=source)


@app.command()
def leaderboard(
    results: Path = typer.Argument(..., help="results.csv (long table) or a run folder."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for leaderboard.md/.html/.tex/.csv."),
    outputs: Path = typer.Option(None, "--outputs", help="Outputs folder (inputs/, <variant>/images) for the example grid."),
    metric: list[str] = typer.Option(None, "--metric", help="Metrics to show, in order (repeatable)."),
) -> None:
    """Write the leaderboard (Markdown, HTML with example grid, LaTeX booktabs, CSV)."""
    from evalkit.reports import leaderboard as lb
    from evalkit.reports import results as R

    out_folder(out)
    if outputs is not None and not outputs.is_dir():
        raise EvalkitError(f"--outputs {outputs}: not a folder; give an outputs folder (inputs/, <variant>/images)",
                           path=outputs)
    source = results / "results.csv" if results.is_dir() else results
    df = R.read(source)
    if metric:
        _check_metrics(metric, df, source)
    paths = lb.write(df, out, outputs_dir=outputs, metrics=metric or None)
    print(Path(paths["md"]).read_text(encoding="utf-8"))


@app.command("paper-tables")
def paper_tables(
    results: Path = typer.Argument(..., help="results.csv (long table) or a run folder."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for paper_tables.md/.html/.csv."),
    as_: list[str] = typer.Option(None, "--as", help="Compare our dataset with a paper's: OURS=PAPER (e.g. shapes=ADE20K)."),
    all_rows: bool = typer.Option(False, "--all", help="Also list published numbers without an evalkit number."),
) -> None:
    """Published numbers beside ours: paper | ours | Δ, with protocol-difference marks."""
    from evalkit.reports import paper_tables as pt
    from evalkit.reports import results as R

    out_folder(out)
    df = R.read(results / "results.csv" if results.is_dir() else results)
    paths = pt.write(df, out, dataset_map=_parse_map(as_ or []), only_ours=not all_rows)
    print(Path(paths["md"]).read_text(encoding="utf-8"))
