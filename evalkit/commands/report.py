"""`evalkit report ...`: leaderboards, paper tables, the papers' orderings checked on a run and
regression gates from results tables."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import typer

from evalkit.commands._checks import out_folder, reading
from evalkit.errors import EvalkitError, RegressionFound

app = typer.Typer(help="Reports from a long results table: leaderboard, paper tables, the papers' orderings on a run "
                       "(claims), compare (regression gate).",
                  no_args_is_help=True)

DEFAULT_DB = Path("runs/history.sqlite")


@app.command()
def compare(
    base: str = typer.Argument(..., help="Base run: run id in the history, a results.csv, or a run folder."),
    head: str = typer.Argument(..., help="Head run: run id in the history, a results.csv, or a run folder."),
    policy: Path = typer.Option(None, "--policy", help="TOML policy: per-metric direction and tolerance "
                                                       "(default: the shipped noise-aware policy, as configs/policy.toml)."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="History database (for run ids)."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON on stdout."),
) -> None:
    """Compare two runs metric by metric; exit 1 on a regression beyond tolerance.

    A row whose protocol differs (n, resolution, resize, weights, backbone, image format,
    metric variant) is listed as skipped, never called a regression; a head value that is
    NaN or empty fails; a base value that is NaN or empty is an error."""
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
                          "regressions": verdict.regressions, "compared": verdict.compared,
                          "skipped": verdict.skipped, "configs_differ": verdict.configs_differ,
                          "rows": json.loads(verdict.table.to_json(orient="records"))}, indent=1))
    else:
        print(f"base: {verdict.base}\nhead: {verdict.head}\nsame machine: {verdict.same_machine}")
        print(history.format_table(verdict.table))
        print("\n".join(verdict.lines()))
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


def _sources(results: list[Path], method: str | None, dataset: str | None):
    """Read each results operand (a run folder or a results table); returns the combined
    table (rows of different operands under distinct run labels), the run.json of each run
    and the item intervals the run reports saved."""
    import pandas as pd

    from evalkit.reports import card
    from evalkit.reports import results as R

    tables, infos = [], []
    for src in results:
        path = src / "results.csv" if src.is_dir() else src
        if src.is_dir() and not path.is_file():
            raise EvalkitError(f"{src}: no results.csv in this folder; pass a run folder or a results table", path=src)
        df = R.read(path, method=method, dataset=dataset)
        info = card.read_run_info(path.parent)
        if info:
            infos.append(info)
        saved = path.parent / "report" / "intervals.csv"
        iv = None
        if saved.is_file():
            with reading(saved, "an intervals table"):
                iv = pd.read_csv(saved)
        tables.append([src, df, iv])
    ids = [tuple(dict.fromkeys(df["run_id"])) for _, df, _ in tables]
    if len({i for group in ids for i in group}) < sum(len(g) for g in ids):  # run ids collide: label by operand
        seen: dict[str, int] = {}
        for entry in tables:
            src = str(entry[0])
            seen[src] = seen.get(src, 0) + 1
            tag = src if seen[src] == 1 else f"{src} #{seen[src]}"
            entry[1] = entry[1].assign(run_id=[f"{r} ({tag})" for r in entry[1]["run_id"]])
            if entry[2] is not None and "run_id" in entry[2]:
                entry[2] = entry[2].assign(run_id=[f"{r} ({tag})" for r in entry[2]["run_id"]])
    table = pd.concat([df for _, df, _ in tables], ignore_index=True)
    intervals = [iv for _, _, iv in tables if iv is not None]
    return table, infos, (pd.concat(intervals, ignore_index=True) if intervals else None)


METRICS = typer.Option(None, "--metrics", "--metric", help="Metrics to show, in order (repeat or comma-separate).")
METHOD = typer.Option(None, "--method", help="Method of a one-method table (an `evaluate --out` CSV): fills the "
                                            "method and variant columns.")
DATASET = typer.Option(None, "--dataset", help="Dataset of the rows (fills the dataset column).")


@app.command()
def leaderboard(
    results: list[Path] = typer.Argument(..., help="Run folders or results tables (a run's results.csv, an "
                                                   "`evaluate --out` CSV); several go on one board, run by run."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for leaderboard.md/.html/.tex/.csv."),
    outputs: Path = typer.Option(None, "--outputs", help="Outputs folder (inputs/, <variant>/images) for the example grid."),
    metrics: list[str] = METRICS,
    method: str = METHOD,
    dataset: str = DATASET,
) -> None:
    """Write the leaderboard (Markdown, HTML with example grid, LaTeX booktabs, CSV)."""
    from evalkit.reports import leaderboard as lb

    out_folder(out)
    if outputs is not None and not outputs.is_dir():
        raise EvalkitError(f"--outputs {outputs}: not a folder; give an outputs folder (inputs/, <variant>/images)",
                           path=outputs)
    table, infos, intervals = _sources(results, method, dataset)
    chosen = [m.strip() for item in metrics or [] for m in item.split(",") if m.strip()]
    if chosen:
        _check_metrics(chosen, table, results[0] if len(results) == 1 else Path(", ".join(map(str, results))))
    paths = lb.write(table, out, outputs_dir=outputs, metrics=chosen or None, intervals=intervals, run_info=infos)
    print(Path(paths["md"]).read_text(encoding="utf-8"))


@app.command("paper-tables")
def paper_tables(
    results: Path = typer.Argument(..., help="A run folder or a results table (a run's results.csv, an "
                                             "`evaluate --out` CSV)."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for paper_tables.md/.html/.csv."),
    as_: list[str] = typer.Option(None, "--as", help="Compare our dataset with a paper's: OURS=PAPER (e.g. shapes=ADE20K)."),
    all_rows: bool = typer.Option(False, "--all", help="Also list published numbers without an evalkit number."),
    method: str = METHOD,
    dataset: str = DATASET,
) -> None:
    """Published numbers beside ours: paper | ours | Δ, with protocol-difference marks."""
    from evalkit.reports import paper_tables as pt

    out_folder(out)
    table, infos, _ = _sources([results], method, dataset)
    dataset_map = _parse_map(as_ or [])
    if not all_rows:  # nothing of ours beside any published number: say what would match
        pt.check_selection(table, dataset_map, source=results)
    paths = pt.write(table, out, dataset_map=dataset_map, only_ours=not all_rows, run_info=infos)
    print(Path(paths["md"]).read_text(encoding="utf-8"))


def _run_config(run_dir: Path):
    """The config a run folder recorded (its ``config.json``), type-checked; not re-checked
    against the file system (dataset roots and output folders may have moved since)."""
    from evalkit.config import RunConfig, ConfigError, _BAD, _parse

    path = run_dir / "config.json"
    if not path.is_file():
        raise EvalkitError(f"{run_dir}: no config.json in this folder; pass a run folder (`evalkit run CONFIG` "
                           "writes one)", path=run_dir)
    with reading(path, "a run's config.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))["config"]
        except (ValueError, KeyError, TypeError) as err:
            raise EvalkitError(f"{path}: not a run's config.json ({err}); restore it from the run", path=path) from err
    problems: list[str] = []
    cfg = _parse(RunConfig, data, "", problems)
    if problems or cfg is _BAD:
        raise ConfigError(path, problems or ["not a run config"])
    return cfg


@app.command()
def claims(
    run: Path = typer.Argument(..., help="A run folder (results.csv, config.json, outputs/)."),
    out: Path = typer.Option(None, "--out", help="Folder for claims_vs_papers.md/.csv (default: RUN/report)."),
    as_: list[str] = typer.Option(None, "--as", help="Hold our dataset to a paper's orderings: OURS=PAPER (e.g. "
                                                     "shapes=ADE20K; default: the run config's report.paper_datasets)."),
    json_out: bool = typer.Option(False, "--json", help="Print the claims as JSON on stdout."),
) -> None:
    """The orderings the paper tables assert (e.g. "RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)"),
    checked on a run: holds / reversed / not resolved by the paired bootstrap over its test items.

    For each paper table, dataset and metric, each pair of methods the run has variants for is
    ordered by the paper's numbers; the run's variants are compared on the same metric (95 %,
    1000 resamples, the run's seed), per dataset and seed of the run. A metric without per-item
    values is listed as "not resolved (no per-item values)"."""
    from evalkit import protocols
    from evalkit.devices import resolve_device
    from evalkit.reports import card
    from evalkit.reports import claims_papers as CP
    from evalkit.reports import results as R

    if not run.is_dir():
        raise EvalkitError(f"{run}: not a run folder; pass the folder `evalkit run CONFIG` wrote (results.csv, "
                           "config.json, outputs/)", path=run)
    results_path = run / "results.csv"
    if not results_path.is_file():
        raise EvalkitError(f"{run}: no results.csv in this folder; pass a finished run folder", path=run)
    out = out_folder(out if out is not None else run / "report")
    cfg = _run_config(run)
    table = R.read(results_path)
    test = table[(table["split"] == "test") & (table["metric"].map(R.metric_kind) == "quality")]
    for (dataset, seed), _ in test.groupby(["dataset", "seed"]):
        layout = run / "outputs" / dataset / f"seed{int(seed)}"
        if not layout.is_dir():
            raise EvalkitError(f"{run}: no outputs/{dataset}/seed{int(seed)} in this run folder; the claims need the "
                               "run's outputs (re-run `evalkit run CONFIG` to restore them)", path=run)
    dataset_map = _parse_map(as_) if as_ else dict(cfg.report.paper_datasets)
    ev = cfg.evaluation
    options = protocols.resolve(ev.replace(cache_dir=ev.cache_dir or run / "features",
                                           device=str(resolve_device(cfg.device)) if ev.device == "auto" else ev.device))
    result, paths = CP.report(table, out, outputs_root=run / "outputs", options=options, cache_dir=options.cache_root,
                              dataset_map=dataset_map, run_info=card.read_run_info(run))
    if json_out:
        print(json.dumps({"run": str(run), "files": {k: str(p) for k, p in paths.items()},
                          "summary": CP.summary_line(result) if len(result) else "no orderings",
                          "claims": json.loads(CP.to_json(result))}, indent=1))
    else:
        print(Path(paths["md"]).read_text(encoding="utf-8"))


@app.command("reproduce")
def reproduce(
    results: list[Path] = typer.Argument(..., help="Run folders or results tables holding the stages' rows."),
    method: str = typer.Option(..., "--paper-method", help="The method as the paper table names it (e.g. UNITE)."),
    dataset: str = typer.Option(..., "--paper-dataset", help="The paper's dataset name (e.g. ADE20K)."),
    metric: str = typer.Option(..., "--paper-metric", help="The paper's metric name (e.g. FID, SWD)."),
    paper: str = typer.Option(None, "--paper", help="RABIT or UNITE, when both tables report the number."),
    released_checkpoint: str = typer.Option(None, "--released-checkpoint", help="Variant label of the rows computed "
                                            "from the released checkpoint (`infer --official`)."),
    released_images: str = typer.Option(None, "--released-images", help="Variant label of the rows computed from the "
                                        "official script's saved images (`infer --variant outputs`)."),
    clean: str = typer.Option(None, "--clean", help="Variant label of the rows under the clean protocol."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for reproduction_<method>_<dataset>_<metric>.md/.csv."),
    json_out: bool = typer.Option(False, "--json", help="Print the card as JSON on stdout."),
) -> None:
    """A reproduction card: published → released checkpoint → released images → clean, each Δ
    attributed to the protocol fields that differ."""
    from evalkit.reports import reproduction as RP

    stages = [RP.Stage(name, v) for name, v in (("released checkpoint", released_checkpoint),
                                                 ("released images", released_images), ("clean", clean)) if v]
    if not stages:
        raise EvalkitError("give at least one of --released-checkpoint, --released-images, --clean (variant labels)")
    out_folder(out)
    table, _, _ = _sources(results, None, None)
    card = RP.card(table, method=method, dataset=dataset, metric=metric, stages=stages, paper_name=paper)
    paths = RP.write(card, out)
    print(RP.to_json(card) if json_out else Path(paths["md"]).read_text(encoding="utf-8"))
