"""`evalkit report ...`: leaderboards, paper tables and regression gates from results tables."""

from __future__ import annotations

import json
from pathlib import Path

import typer

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

    pol = history.Policy.load(policy) if policy else history.Policy()
    base_label, base_machine, b = history.load_side(base, db)
    head_label, head_machine, h = history.load_side(head, db)
    same_machine = base_machine is not None and base_machine == head_machine
    table = history.compare(b, h, pol, same_machine=same_machine)
    bad = history.failures(table, pol)
    if json_out:
        print(json.dumps({"base": base_label, "head": head_label, "same_machine": same_machine,
                          "regressions": len(bad), "rows": json.loads(table.to_json(orient="records"))}, indent=1))
    else:
        print(f"base: {base_label}\nhead: {head_label}\nsame machine: {same_machine}")
        print(history.format_table(table))
    if len(bad):
        what = ", ".join(f"{r['variant']}/{r['dataset']}/{r['metric']} ({r['status']})" for r in bad.to_dict("records")[:5])
        raise RegressionFound(f"{len(bad)} measurement(s) fail the gate: {what}")


@app.command()
def runs(
    db: Path = typer.Option(DEFAULT_DB, "--db", help="History database."),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as JSON on stdout."),
) -> None:
    """List the runs recorded in the history (ids to pass to `compare`)."""
    from evalkit.reports import history

    if not db.is_file():
        raise EvalkitError(f"history database not found: {db} (runs record into it when they finish)", path=db)
    table = history.runs(db)
    if json_out:
        print(table.to_json(orient="records"))
    else:
        print(table.to_string(index=False))


def _parse_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise EvalkitError(f"--as expects OURS=PAPER_DATASET (e.g. shapes=ADE20K), got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


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

    df = R.read(results / "results.csv" if results.is_dir() else results)
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

    df = R.read(results / "results.csv" if results.is_dir() else results)
    paths = pt.write(df, out, dataset_map=_parse_map(as_ or []), only_ours=not all_rows)
    print(Path(paths["md"]).read_text(encoding="utf-8"))
