"""Top-level commands `evalkit run CONFIG` and `evalkit demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from evalkit.errors import RegressionFound


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        config: Path = typer.Argument(..., help="Run config (.toml, .yaml or .yml)."),
        json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    ) -> None:
        """Run a benchmark config: train → infer → evaluate → report into <out>/<name>/ (resumes a killed run)."""
        from evalkit import distributed, pipeline
        from evalkit.config import ConfigError, load_config

        try:
            cfg = load_config(config)
        except ConfigError as err:
            for line in err.problems:
                print(f"error: {line}", file=sys.stderr)
            raise typer.Exit(2) from None
        try:
            summary = pipeline.run(cfg, progress=progress)
        except BaseException:
            distributed.shutdown(wait=False)
            raise
        distributed.shutdown()
        if not distributed.env().is_main:  # under torchrun, rank 0 speaks for the run
            return
        pipeline.print_summary(summary)
        if json_out:
            print(json.dumps(summary.as_json(), indent=1))
        if summary.comparison and summary.comparison["regressions"]:
            raise RegressionFound(f"{summary.comparison['regressions']} measurement(s) regress against "
                                  f"{summary.comparison['baseline']}; see {summary.comparison['table']}")

    @app.command("demo")
    def demo_command(
        out: Path = typer.Option(Path("evalkit-demo"), "--out", help="Folder the demo writes (run, report, profile)."),
        json_out: bool = typer.Option(False, "--json", help="Print the demo summary as JSON on stdout."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    ) -> None:
        """The whole benchmark on the built-in dataset: train, evaluate, profile, report (minutes on a CPU)."""
        from evalkit import demo

        summary = demo.run_demo(out, progress=progress)
        print(demo.format_summary(summary), file=sys.stderr)
        if json_out:
            print(json.dumps(summary, indent=1))
        else:  # the results table (the report's leaderboard) on stdout
            print(Path(summary["files"]["report.md"]).read_text())
