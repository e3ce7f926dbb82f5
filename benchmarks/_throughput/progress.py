"""Progress bars and status lines on stderr."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .common import err


class Reporter:
    """A rich progress bar on a terminal; plain status lines every few seconds otherwise."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.tty = err.is_terminal
        self._last_line: dict[TaskID, float] = {}

    def __enter__(self) -> Reporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def task(self, description: str, total: int) -> TaskID:
        tid = self.progress.add_task(description, total=total, note="")
        self._last_line[tid] = 0.0
        self.log(f"{description}: started")
        return tid

    def update(self, tid: TaskID, completed: int, note: str = "") -> None:
        self.progress.update(tid, completed=completed, note=note)
        if not self.tty and time.monotonic() - self._last_line[tid] >= 5.0:
            self._last_line[tid] = time.monotonic()
            task = self.progress.tasks[[t.id for t in self.progress.tasks].index(tid)]
            self.log(f"{task.description}: {completed}/{task.total} {note}")

    def log(self, msg: str) -> None:
        self.progress.console.log(msg) if self.tty else err.print(
            f"[{time.strftime('%H:%M:%S')}] {msg}", highlight=False
        )
