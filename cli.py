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


def main() -> None:
    """The ``evalkit`` console script and ``python -m evalkit``: the app, then :func:`exit_now`."""
    try:
        app(prog_name="evalkit")
        code = 0
    except SystemExit as stop:  # click ends every standalone run this way
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    exit_now(code)


def exit_now(code: int) -> None:
    """End the process with ``code``, everything an exit owes done, without Python's teardown of
    its modules: with torch and torchvision imported that teardown alone takes about 1 s on
    this machine (``python -c "import torch, torchvision"`` exits 1.0-1.2 s after its last line,
    0.08 s this way), paid by every command. What an exit owes is done first, in the
    interpreter's own order: other non-daemon threads joined, the ``atexit`` handlers run
    (``weakref.finalize``, ``logging.shutdown``, temporary directories), stdout and stderr
    flushed (a reader that has gone away, as with ``| head``, exits 120 as Python would).
    Every file evalkit writes is closed where it is written (:mod:`evalkit.files`)."""
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # noqa: SLF001 - the interpreter's own exit step, run now
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader closed the pipe; a closed stream
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    main()
