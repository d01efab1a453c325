"""The exact readers: CSV/TSV rows and JSONL records as Python values, each with the line it
starts on. Python per row, so slow, but every error names its line (and the byte of a bad
UTF-8 sequence). They read training-sized tables, name the line that the columnar readers
(`newsclf.io.tables`) could not parse, and take over from them where those cannot go on: stdin,
which cannot be read twice, and the rest of a file after a row that pyarrow rejects.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from newsclf.errors import InputError

csv.field_size_limit(64 * 1024 * 1024)


@dataclass
class SkippedLine:
    line: int
    reason: str


class LineReader:
    """Rows of one delimited or JSON Lines stream, with their line numbers.

    `on_error="raise"` stops at the first malformed row with an `InputError` naming its line;
    `"skip"` records it in `skipped` and goes on.
    """

    def __init__(
        self, name: str, stream: BinaryIO, fmt: str, on_error: str, skipped: list[SkippedLine]
    ) -> None:
        self.name = name
        self.stream = stream
        self.format = fmt
        self.on_error = on_error
        self.skipped = skipped
        self.bytes_read = 0

    def fail(self, line: int, reason: str) -> None:
        if self.on_error == "skip":
            self.skipped.append(SkippedLine(line, reason))
            return
        raise InputError(f"{self.name}, line {line}: {reason}")

    def decoded_lines(self, first: int = 1) -> Iterator[str]:
        """Decode line by line so that a bad byte is reported where it is; `first` is the
        number of the stream's first line."""
        for number, raw in enumerate(self.stream, start=first):
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.name}, line {number}, byte {exc.start + 1} of that line: "
                    f"cannot decode {raw[exc.start : exc.start + 4]!r} as UTF-8. "
                    "Re-encode the file as UTF-8."
                ) from None
            yield text

    # -- CSV / TSV -------------------------------------------------------------------------

    def delimited(self, delimiter: str) -> tuple[list[str], list[str], Iterator[tuple[int, list]]]:
        """(header as written, header stripped, the rows after it as (line, values)). The
        header is ([], []) for a stream without any line."""
        reader = csv.reader(self.decoded_lines(), delimiter=delimiter, strict=True)
        raw = None
        for values in reader:
            if values:
                raw = values
                break
        if raw is None:
            return [], [], iter(())
        header = [v.strip() for v in raw]
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if duplicated:
            raise InputError(
                f"{self.name}, line {reader.line_num}: duplicate column names in the header: "
                f"{', '.join(duplicated)}."
            )
        return raw, header, self._delimited_rows(reader, len(header))

    def _delimited_rows(self, reader: Any, width: int) -> Iterator[tuple[int, list[str]]]:
        last_line = reader.line_num
        while True:
            start = last_line + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last_line = reader.line_num
                self.fail(start, f"malformed {self.format.upper()} row ({exc}).")
                continue
            last_line = reader.line_num
            if not values:  # blank line
                continue
            if len(values) != width:
                self.fail(
                    start,
                    f"expected {width} field{'s' * (width != 1)} (as in the header), "
                    f"found {len(values)}.",
                )
                continue
            yield start, values

    # -- JSON Lines ------------------------------------------------------------------------

    def parse_json(self, number: int, line: str, *, report: bool = True) -> dict[str, Any] | None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if report:
                self.fail(number, f"not valid JSON ({exc.msg} at column {exc.colno}).")
            return None
        if not isinstance(record, dict):
            if report:
                self.fail(number, f"expected a JSON object, found {type(record).__name__}.")
            return None
        return record

    def records(
        self, first_line: int = 1, *, report: bool = True
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line, record) of each non-blank line; a bad line is reported (or skipped)."""
        for number, line in enumerate(self.decoded_lines(first_line), start=first_line):
            if not line.strip():
                continue
            record = self.parse_json(number, line, report=report)
            if record is not None:
                yield number, record


def batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` consecutive items (the last one shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def skip(items: Iterator[Any], count: int, what: Callable[[], str]) -> Iterator[Any]:
    """`items` without its first `count`; an error if there are fewer (the file changed)."""
    for _ in range(count):
        if next(items, None) is None:
            raise InputError(f"{what()}: fewer rows on a second read; did the file change?")
    return items
