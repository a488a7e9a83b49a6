"""Progress for long runs: a no-op by default, a rich progress bar on a terminal's stderr.

verify reports phases ("keras reference", "isolated + chained", ...) with a total of steps
(call nodes) or none (a spinner while one opaque call runs, like Keras's). The bar is
transient: it leaves nothing in the output once the run ends, and nothing at all when stderr
is not a terminal (CI logs, pipes).
Reference: rich.progress (https://rich.readthedocs.io/en/stable/progress.html).
"""
from __future__ import annotations


class Progress:
    """No progress shown. Subclasses draw; callers use ``phase`` / ``advance`` / ``close``."""

    def phase(self, description: str, total: int | None = None) -> None:
        """Start a new phase of ``total`` steps (None: a spinner, no count)."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current phase are done."""

    def close(self) -> None:
        """Remove the bar."""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RichProgress(Progress):
    """A rich progress bar on stderr, shown only when stderr is a terminal (``force`` for tests)."""

    def __init__(self, force: bool = False, file=None):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)
        console = Console(stderr=file is None, file=file, force_terminal=True if force else None)
        self.enabled = force or console.is_terminal
        self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True, disable=not self.enabled)
        self._task = None
        self._started = False

    def phase(self, description: str, total: int | None = None) -> None:
        if not self._started:
            self._bar.start()
            self._started = True
        if self._task is not None:
            self._bar.update(self._task, visible=False)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, steps)

    def close(self) -> None:
        if self._started:
            self._bar.stop()
            self._started = False
