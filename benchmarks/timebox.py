"""Time-boxed runs: a slow baseline classifies slices of the rows until its time box is spent,
and its rate is the rows it finished over the time they took, so that it cannot hold up a GPU
run (a pipeline at 1,000 rows/s would need 100 s for 100,000 rows).

No heavy imports: the worker uses it, and so do the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Sliceable(Protocol):
    def __len__(self) -> int: ...

    def slice(self, start: int, stop: int) -> Sliceable: ...


R = TypeVar("R", bound=Sliceable)


@dataclass(frozen=True)
class Timed:
    """What a (time-boxed) run did: rows finished, their seconds and predictions, and why it
    stopped: `rows` (all of them ran) or `time` (the box was spent first)."""

    rows: int
    seconds: float
    predicted: list[str]
    stopped_by: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def run_timeboxed(
    classify: Callable[[R], Sequence[str]],
    rows: R,
    box_s: float | None,
    slice_rows: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Timed:
    """Classify `rows` in slices of `slice_rows` until all are done or, when `box_s` is set,
    until the slice that crosses `box_s` seconds has finished (a slice is never cut). With no
    box, the rows go in one call, as a user would run them."""
    if slice_rows <= 0:
        raise ValueError("slice_rows must be positive")
    started = clock()
    if box_s is None:
        everything = list(classify(rows))
        return Timed(len(everything), clock() - started, everything, "rows")
    predicted: list[str] = []
    done = 0
    while done < len(rows):
        part = rows.slice(done, min(done + slice_rows, len(rows)))
        predicted.extend(classify(part))
        done += len(part)
        if clock() - started >= box_s:
            break
    return Timed(done, clock() - started, predicted, "rows" if done >= len(rows) else "time")
