"""A progress bar for classify: rows, rows/s and ETA while a file streams through."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


class RowProgress:
    """Context manager; `update(rows, done, total)` after each chunk. With an unknown total
    (stdin) the bar pulses and the ETA stays empty."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]classify"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TextColumn("{task.fields[speed]} rows/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None
        self._started = 0.0

    def __enter__(self) -> RowProgress:
        self._progress.start()
        self._task = self._progress.add_task("classify", total=None, rows="0", speed="-")
        self._started = time.perf_counter()
        return self

    def update(self, rows: int, done: int, total: int | None) -> None:
        elapsed = time.perf_counter() - self._started
        self._progress.update(
            self._task,
            completed=done,
            total=total,
            rows=f"{rows:,}",
            speed=f"{rows / elapsed:,.0f}" if elapsed > 0 else "-",
        )

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
