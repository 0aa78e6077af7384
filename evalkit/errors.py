"""The one error type that reaches the user as a single line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class EvalkitError(Exception):
    """Bad input, a missing file or missing weights.

    The CLI prints ``error: <message>`` on one line to stderr and exits with code 2.
    The message says what is wrong, which file, and how to fix it when a fix is known.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        text = message if path is None or str(path) in message else f"{path}: {message}"
        super().__init__(" ".join(text.split("\n")))


class RegressionFound(Exception):
    """A comparison found a regression beyond tolerance (exit code 1)."""

    exit_code = 1
