"""Progress on stderr (rich bars); a disabled ``Progress`` does nothing, so callers never branch."""

from __future__ import annotations


class Progress:
    """Rich progress bars on stderr: ``task(description, total)`` returns ``advance(n=1)``;
    ``describe(advance_fn, text)`` renames a task (the run's current stage)."""

    def __init__(self, enabled: bool = True):
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=False)

    def __enter__(self):
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()

    def task(self, description: str, total: int):
        """A new bar of ``total`` steps; returns ``advance(n=1)`` (a no-op when disabled).
        ``advance.describe(text)`` renames the bar."""
        if self._bar is None:
            def advance(n=1):
                return None

            advance.describe = lambda text: None
            return advance
        tid = self._bar.add_task(description, total=total)

        def advance(n=1):
            self._bar.advance(tid, n)

        advance.describe = lambda text: self._bar.update(tid, description=text)
        return advance
