"""The `evalkit` command line: thin wrappers that parse, call one function, print, exit.

Installed as ``evalkit.cli`` (console script ``evalkit``, and ``python -m evalkit``).
Every command group lives in ``evalkit/commands/<group>.py`` and is registered below.
Errors: :class:`evalkit.errors.EvalkitError` becomes one ``error: ...`` line on stderr
and exit code 2; :class:`evalkit.errors.RegressionFound` becomes exit code 1.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from evalkit.errors import EvalkitError, RegressionFound


class EvalkitGroup(TyperGroup):
    """Root command group that turns evalkit's exceptions into exit codes."""

    def invoke(self, ctx):  # noqa: D401 - click API
        try:
            return super().invoke(ctx)
        except EvalkitError as err:
            print(f"error: {err}", file=sys.stderr)
            ctx.exit(EvalkitError.exit_code)
        except RegressionFound as err:
            print(f"regression: {err}", file=sys.stderr)
            ctx.exit(RegressionFound.exit_code)


app = typer.Typer(
    cls=EvalkitGroup,
    help="evalkit: benchmark and evaluation suite for exemplar-based image translation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
)


def _warnings_once() -> None:
    """Python warnings as one ``warning: ...`` line on stderr, each text once per process
    (not once per variant, and without the source line)."""
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message).strip()
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)

    warnings.showwarning = show


def _version(value: bool) -> None:
    if value:
        from evalkit import __version__

        print(f"evalkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print evalkit's version and exit."),
) -> None:
    """evalkit: benchmark and evaluation suite for exemplar-based image translation."""
    _warnings_once()


def _register() -> None:
    """Attach every command group found in evalkit/commands (one module per group)."""
    import importlib

    for module_name, group in COMMAND_MODULES:
        module = importlib.import_module(f"evalkit.commands.{module_name}")
        if group is None:
            module.register(app)  # top-level commands such as `evaluate`, `demo`
        else:
            app.add_typer(module.app, name=group)


# (module in evalkit/commands, group name or None for top-level commands)
COMMAND_MODULES: list[tuple[str, str | None]] = [
    ("data", "data"),
    ("evaluate", None),
    ("fid", None),
    ("weights", "weights"),
    ("run", None),
    ("report", "report"),
    ("study", "study"),
    ("train", None),
    ("profile", "profile"),
    ("protocols", None),
    ("stats", "stats"),
    ("official", "official"),
]

_register()

if __name__ == "__main__":
    app()
