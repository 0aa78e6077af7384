"""Helpers of the journey tests: drive the CLI as a user would."""

from __future__ import annotations

from typer.testing import CliRunner

from evalkit.cli import app


def cli(*args, code: int | tuple[int, ...] = 0):
    """Run ``evalkit ARGS`` in-process; assert the exit code; return the result (stdout/stderr apart)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    codes = (code,) if isinstance(code, int) else code
    if result.exit_code not in codes:
        import traceback

        crash = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info and not isinstance(
            result.exception, SystemExit) else ""
        raise AssertionError(f"evalkit {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}\n{crash}")
    return result


def one_error_line(result) -> str:
    """The single ``error:`` line of a failed command (and nothing else of the kind)."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]
