"""`evalkit study create|serve|export-amt|import-amt|analyze`: blinded user studies."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from evalkit.commands._checks import out_folder
from evalkit.errors import EvalkitError

app = typer.Typer(help="Blinded user studies: create, serve in a browser, AMT in/out, analyze.",
                  no_args_is_help=True)
err = Console(stderr=True)

STUDY = typer.Option(Path("study.sqlite"), "--study", "-s", help="Study database (SQLite).")


@app.command()
def create(
    outputs: list[str] = typer.Option(..., "--outputs", help="An outputs folder, a run folder, or method=DIR "
                                                             "(repeat)."),
    questions: str = typer.Option("quality,style", help="Comma list: quality, style, semantic, or name=Prompt."),
    trials: int = typer.Option(..., help="Number of main trials (distinct items)."),
    catch_rate: float = typer.Option(0.1, help="Catch trials, as a fraction of --trials."),
    repeat_rate: float = typer.Option(0.1, help="Repeated trials, as a fraction of --trials."),
    seed: int = typer.Option(0, min=0, help="Seed for items, candidate orders and participant orders."),
    inputs: Path = typer.Option(None, help="Folder with cond/ and exemplar/ (default OUT/inputs)."),
    methods: list[str] = typer.Option(None, "--methods", help="Methods to study (repeat or comma-separate; "
                                                              "default: every method but the reference outputs)."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Methods to leave out (repeat or comma-separate)."),
    study: Path = STUDY,
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Create a study database from method outputs (lists the methods it took)."""
    from evalkit.study import store

    def names(items):
        return [m.strip() for item in items or [] for m in item.split(",") if m.strip()]

    source = store.read_outputs(outputs, inputs, methods_only=names(methods) or None, exclude=names(exclude))
    for note in source.notes:
        err.print(f"note: {note}")
    config = store.StudyConfig(tuple(store.parse_questions(questions)), trials, catch_rate, repeat_rate, seed)
    store.validate_study(study, source, config)
    with Progress(TextColumn("encoding items"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("items", total=None)
        summary = store.create_study(study, source, config,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_out:
        print(json.dumps(summary))
    else:
        t = summary["trials"]
        print(f"study {study}: {len(summary['methods'])} methods ({', '.join(summary['methods'])}), {t['main']} "
              f"trials + {t['catch']} catch + {t['repeat']} repeated, seed {seed}")


@app.command()
def serve(
    study: Path = STUDY,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (default: this machine only)."),
    port: int = typer.Option(8765, min=0, max=65535, help="Port (0: any free port)."),
    admin_token: str = typer.Option(None, envvar="EVALKIT_STUDY_ADMIN_TOKEN",
                                    help="Admin token for /admin/results (default: a fresh random one)."),
    server_kind: str = typer.Option("werkzeug", "--server",
                                    help="werkzeug (threaded development server, local studies) or waitress "
                                         "(production WSGI server: use it for a public study)."),
    threads: int = typer.Option(8, "--threads", min=1, max=256, help="Worker threads of the waitress server."),
) -> None:
    """Serve the study page to participants until Ctrl-C."""
    from evalkit.study.server import make_server

    server = make_server(study, host, port, admin_token=admin_token, server=server_kind, threads=threads)
    token = server.app.config["ADMIN_TOKEN"]
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach it can take part")
        if server_kind != "waitress":
            err.print("[yellow]warning:[/] werkzeug is a development server; use --server waitress for a "
                      "public study (and HTTPS in front of it)")
    err.print(f"study page:     http://{host}:{server.port}/", soft_wrap=True)
    err.print(f"admin token:    {token}", soft_wrap=True)
    err.print(f"results export: curl -H 'Authorization: Bearer {token}' http://{host}:{server.port}/admin/results",
              soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("export-amt")
def export_amt(
    out: Path = typer.Option(..., "--out", help="New folder for hit_template.html, input.csv, images/."),
    image_base_url: str = typer.Option(..., help="https URL where the images/ folder will be uploaded."),
    study: Path = STUDY,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Write an MTurk HIT template, its input CSV and token-named images."""
    from evalkit.study import amt

    summary = amt.export_amt(study, out, image_base_url)
    print(json.dumps(summary) if json_out else
          f"{summary['hits']} HITs -> {out}/input.csv; upload {out}/images to {image_base_url}")


@app.command("import-amt")
def import_amt(
    results: Path = typer.Argument(..., help="MTurk batch results CSV."),
    skip_imported: bool = typer.Option(False, help="Skip assignments already imported (re-import a grown batch)."),
    study: Path = STUDY,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Import MTurk batch results (all rows or none)."""
    from evalkit.study import amt

    summary = amt.import_amt(study, results, skip_imported=skip_imported)
    print(json.dumps(summary) if json_out else
          f"imported {summary['imported']} assignments from {summary['workers']} workers "
          f"({summary['skipped_rejected']} rejected, {summary['skipped_imported']} already imported: skipped)")


@app.command()
def analyze(
    study: Path = STUDY,
    exclude_failed_catch: bool = typer.Option(False, help="Drop participants below --min-catch-pass."),
    min_catch_pass: float = typer.Option(1.0, help="Catch pass rate a participant needs to be kept."),
    bootstrap: int = typer.Option(2000, help="Cluster-bootstrap replicates."),
    seed: int = typer.Option(0, min=0, help="Bootstrap seed."),
    out: Path = typer.Option(None, help="Report folder; default: the run's report/ when the study was made "
                                        "from a run, else <study>_report/ beside the database."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout only."),
) -> None:
    """Selection rates, intervals, tests, Luce strengths, kappa, catch trials; table + plot."""
    from evalkit.study import analysis

    if bootstrap < 100:
        raise EvalkitError(f"--bootstrap {bootstrap} is too few replicates; use 100 or more")
    if out is not None:
        out_folder(out)  # fail before the bootstrap, not after
    result = analysis.analyze(study, exclude_failed_catch=exclude_failed_catch, min_catch_pass=min_catch_pass,
                              n_boot=bootstrap, seed=seed)
    out = out or analysis.default_report_dir(study)
    files = analysis.write_report(result, out)
    if json_out:
        print(json.dumps(result.summary))
        return
    table = Table(title=f"user study: {result.summary['participants']} participants, "
                        f"{len(result.summary['excluded'])} excluded")
    for col in ("question", "method", "chosen/n", "rate", "Wilson 95%", "bootstrap 95%", "Luce p"):
        table.add_column(col)
    for r in result.table.itertuples():
        table.add_row(r.question, r.method, f"{r.chosen}/{r.n}", f"{r.rate:.3f}",
                      f"[{r.wilson_low:.3f}, {r.wilson_high:.3f}]", f"[{r.boot_low:.3f}, {r.boot_high:.3f}]",
                      f"{r.luce_prob:.3f}")
    Console().print(table)
    for q in result.questions.itertuples():
        print(f"{q.question}: chi2={q.chi2:.2f} (df {q.df}) p={q.p_value:.3g}  position p={q.position_p:.3g}  "
              f"Fleiss kappa={q.fleiss_kappa:.3f}  consistency={q.consistency:.3f} ({q.repeat_pairs} pairs)")
    err.print(f"report: {', '.join(str(f) for f in files)}")
