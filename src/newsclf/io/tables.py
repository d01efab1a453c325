"""Reading and writing CSV, TSV, JSONL and Parquet in bounded chunks, with errors that name lines.

Rows are plain dicts keyed by column name, in the file's column order, so that classify can
write every input column back unchanged. CSV and JSONL are decoded line by line: a malformed
row or an undecodable byte is reported with its line number (and byte offset), and with
`on_error="skip"` the reader records the line and keeps going.

The columns are the whole input's before the first row is returned: a JSONL file is scanned
once for every key (a key that first appears on line 500 is still a column, and a bad line
fails before any work); on stdin, which cannot be read twice, a key that first appears after
line 1 is an error naming its line. `schema()` gives the column types the output keeps.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, get_args

from newsclf.errors import InputError
from newsclf.io.atomic import atomic_file

TableFormat = Literal["csv", "tsv", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = get_args(TableFormat)
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
STDIN = "-"
csv.field_size_limit(64 * 1024 * 1024)


def detect_format(path: str | Path, override: str | None = None) -> str:
    """The file's format: `override` when given, else from the extension (for stdin, from its
    first bytes)."""
    if override:
        fmt = override.lower()
        if fmt not in FORMATS:
            raise InputError(f"Unknown format {override!r}; expected one of {', '.join(FORMATS)}.")
        return fmt
    if str(path) == STDIN:
        return sniff_format(_peek_stdin())
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise InputError(
            f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(EXTENSIONS))} or pass --format."
        )
    return EXTENSIONS[suffix]


def is_url(path: str) -> bool:
    """Whether `path` is a URL (s3://, gs://, ...) rather than a local path."""
    return "://" in path and not path.startswith("file://")


def table_files(input: str, format: str | None = None) -> list[str]:
    """The input files, in the order their rows are read: one file, a folder's tables (sorted
    by name; hidden files left out), a glob's matches (sorted), or a URL as given.

    Raises:
        InputError: nothing there, or no table in the folder or glob.
    """
    if is_url(input):
        return [input]
    path = Path(input.removeprefix("file://"))
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file())
    elif glob.has_magic(input):
        candidates = sorted(Path(p) for p in glob.glob(input) if Path(p).is_file())
    else:
        raise InputError(f"{input}: no such file, folder or glob match.")
    files = [
        str(p)
        for p in candidates
        if not p.name.startswith((".", "_")) and (format or p.suffix.lower() in EXTENSIONS)
    ]
    if not files:
        raise InputError(f"{input}: holds no CSV, TSV, JSONL or Parquet file.")
    return files


def delimiter_for(fmt: str) -> str:
    """The field delimiter of a delimited format (csv or tsv)."""
    return "\t" if fmt == "tsv" else ","


def sniff_format(head: bytes) -> str:
    """The format of a stream from its first bytes: Parquet's magic number, a JSON object, a
    tab-separated header, else CSV."""
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    first_line = text.split(b"\n", 1)[0]
    if b"\t" in first_line and b"," not in first_line:
        return "tsv"
    return "csv"


def _peek_stdin(size: int = 65536) -> bytes:
    """The first bytes of stdin, left in place for the reader."""
    stream = sys.stdin.buffer
    if hasattr(stream, "peek"):
        return stream.peek(size)[:size]
    if stream.seekable():
        position = stream.tell()
        head = stream.read(size)
        stream.seek(position)
        return head
    return b""


@dataclass
class Chunk:
    """Consecutive rows of a table, with the source line (or Parquet row) each one came from."""

    rows: list[dict[str, Any]]
    line_numbers: list[int]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SkippedLine:
    line: int
    reason: str


@dataclass
class TableReader:
    """Streams a table in chunks. `columns` is known once the header (or first record) is read.

    `on_error="raise"` stops at the first malformed row with an `InputError` naming its line;
    `on_error="skip"` records it in `skipped` and goes on.
    """

    path: str | Path
    format: str | None = None
    on_error: str = "raise"
    columns: list[str] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"--on-error must be raise or skip, not {self.on_error!r}.")
        if str(self.path) != STDIN:
            if Path(self.path).is_dir():
                raise InputError(
                    f"{self.path} is a directory; give one file (CSV, TSV, JSONL or Parquet)."
                )
            if not Path(self.path).is_file():
                raise InputError(f"{self.path}: no such file.")
        self.format = detect_format(self.path, self.format)
        self._bytes_read = 0
        self._rows_read = 0
        self._total: int | None = None
        if str(self.path) != STDIN and self.format != "parquet":
            self._total = Path(self.path).stat().st_size
        self._types: dict[str, set[type]] = {}
        if self.format == "jsonl" and str(self.path) != STDIN:
            self._scan_jsonl()
        self._rows = self._iter_rows()
        self._first = next(self._rows, None)
        if self._first is None and not self.columns:
            raise InputError(f"{self.name}: the file is empty (no header and no rows).")

    @property
    def name(self) -> str:
        return "<stdin>" if str(self.path) == STDIN else str(self.path)

    def progress(self) -> tuple[int, int | None]:
        """(done, total) in bytes for CSV/JSONL, in rows for Parquet; total None for stdin."""
        if self.format == "parquet":
            return self._rows_read, self._total
        return self._bytes_read, self._total

    def schema(self) -> Any:
        """The input's columns as an Arrow schema: Parquet's own, strings for CSV and TSV, the
        types a JSONL file's values have (strings where they mix). Written Parquet keeps them,
        whatever the first chunk holds (a column empty there is not typed null)."""
        import pyarrow as pa

        if self.format == "parquet":
            return self._arrow_schema
        if self.format in ("csv", "tsv"):
            return pa.schema([(c, pa.string()) for c in self.columns])
        return pa.schema([(c, _arrow_type(self._types.get(c, set()))) for c in self.columns])

    def iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        chunk = Chunk([], [])
        rows = self._rows if self._first is None else _prepend(self._first, self._rows)
        self._first = None
        for line, row in rows:
            chunk.rows.append(row)
            chunk.line_numbers.append(line)
            if len(chunk.rows) >= chunk_rows:
                yield chunk
                chunk = Chunk([], [])
        if chunk.rows:
            yield chunk

    def read_all(self) -> Chunk:
        merged = Chunk([], [])
        for chunk in self.iter_chunks(65536):
            merged.rows.extend(chunk.rows)
            merged.line_numbers.extend(chunk.line_numbers)
        return merged

    # -- format readers -------------------------------------------------------------------

    def _iter_rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.format == "parquet":
            return self._parquet_rows()
        if self.format == "jsonl":
            return self._jsonl_rows()
        return self._delimited_rows(delimiter_for(self.format))

    def _fail(self, line: int, reason: str) -> None:
        if self.on_error == "skip":
            self.skipped.append(SkippedLine(line, reason))
            return
        raise InputError(f"{self.name}, line {line}: {reason}")

    def _open_binary(self) -> BinaryIO:
        if str(self.path) == STDIN:
            return sys.stdin.buffer
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read it ({exc.strerror}).") from None

    def _decoded_lines(self, stream: BinaryIO) -> Iterator[str]:
        """Decode line by line so that a bad byte is reported where it is."""
        for number, raw in enumerate(stream, start=1):
            self._bytes_read += len(raw)
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.name}, line {number}, byte {exc.start + 1} of that line: "
                    f"cannot decode {raw[exc.start : exc.start + 4]!r} as UTF-8. "
                    "Re-encode the file as UTF-8."
                ) from None
            yield text

    def _delimited_rows(self, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
        stream = self._open_binary()
        try:
            reader = csv.reader(self._decoded_lines(stream), delimiter=delimiter, strict=True)
            header = self._read_header(reader)
            if header is None:
                return
            self.columns = header
            width = len(header)
            last_line = reader.line_num
            while True:
                start = last_line + 1
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    last_line = reader.line_num
                    self._fail(start, f"malformed {self.format.upper()} row ({exc}).")
                    continue
                last_line = reader.line_num
                if not values:  # blank line
                    continue
                if len(values) != width:
                    self._fail(
                        start,
                        f"expected {width} field{'s' * (width != 1)} (as in the header), "
                        f"found {len(values)}.",
                    )
                    continue
                yield start, dict(zip(header, values, strict=True))
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    def _read_header(self, reader: Any) -> list[str] | None:
        for values in reader:
            if not values:
                continue
            header = [v.strip() for v in values]
            duplicated = sorted({c for c in header if header.count(c) > 1})
            if duplicated:
                raise InputError(
                    f"{self.name}, line {reader.line_num}: duplicate column names in the header: "
                    f"{', '.join(duplicated)}."
                )
            return header
        return None

    def _scan_jsonl(self) -> None:
        """Every key of the file, in order of first appearance, and its values' types; a bad
        line stops here, before any work (with `on_error="skip"` the reading pass records it)."""
        seen: dict[str, None] = {}
        with self._open_binary() as stream:
            for number, line in enumerate(self._decoded_lines(stream), start=1):
                if not line.strip():
                    continue
                record = self._parse_json(number, line, report=self.on_error == "raise")
                if record is None:
                    continue
                for key, value in record.items():
                    seen.setdefault(key, None)
                    self._types.setdefault(key, set()).add(type(value))
        self.columns = list(seen)
        self._bytes_read = 0

    def _parse_json(self, number: int, line: str, *, report: bool = True) -> dict[str, Any] | None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if report:
                self._fail(number, f"not valid JSON ({exc.msg} at column {exc.colno}).")
            return None
        if not isinstance(record, dict):
            if report:
                self._fail(number, f"expected a JSON object, found {type(record).__name__}.")
            return None
        return record

    def _jsonl_rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        stream = self._open_binary()
        scanned = bool(self.columns)
        seen = set(self.columns)
        try:
            for number, line in enumerate(self._decoded_lines(stream), start=1):
                if not line.strip():
                    continue
                record = self._parse_json(number, line)
                if record is None:
                    continue
                new = [key for key in record if key not in seen]
                if new and (scanned or len(seen)):
                    # Only stdin gets here: a file's keys were all scanned first.
                    raise InputError(
                        f"{self.name}, line {number}: key(s) {', '.join(map(repr, new))} first "
                        "appear here, after the output's columns were fixed; classify a file "
                        "(it is scanned first) or give every record the same keys."
                    )
                for key, value in record.items():
                    if key not in seen:
                        self.columns.append(key)
                        seen.add(key)
                    self._types.setdefault(key, set()).add(type(value))
                yield number, record
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    def _parquet_rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        import pyarrow.parquet as pq

        source: Any = self.path
        if str(self.path) == STDIN:
            source = io.BytesIO(sys.stdin.buffer.read())  # Parquet needs random access.
        try:
            parquet = pq.ParquetFile(source)
        except Exception as exc:
            raise InputError(f"{self.name}: not a readable Parquet file ({exc}).") from None
        self.columns = list(parquet.schema_arrow.names)
        self._arrow_schema = parquet.schema_arrow
        self._total = parquet.metadata.num_rows
        for batch in parquet.iter_batches(batch_size=8192):
            for record in batch.to_pylist():
                self._rows_read += 1
                yield self._rows_read, record


def _arrow_type(types: set[type]) -> Any:
    """The Arrow type of JSON values of `types` (None aside): strings where they mix."""
    import pyarrow as pa

    kinds = types - {type(None)}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def read_table(path: str | Path, format: str | None = None) -> tuple[list[str], Chunk]:
    """A whole (training-sized) table: its columns and rows. Malformed rows raise."""
    reader = TableReader(path, format)
    rows = reader.read_all()
    return reader.columns, rows


# -- writing -------------------------------------------------------------------------------


class AtomicTableWriter:
    """Writes a table to a hidden temporary file beside the target and renames it into place on
    success, so an interrupted run never leaves an output that looks complete.

    Use as a context manager; `-` writes to stdout (no rename possible there). `schema` (an
    Arrow schema of `columns`) types Parquet output; without it, the first chunk's types.
    """

    def __init__(
        self, path: str | Path, format: str, columns: list[str], schema: Any = None
    ) -> None:
        self.path = path
        self.format = format
        self.columns = columns
        self.schema = schema
        self._to_stdout = str(path) == STDIN
        self._atomic: Any = None
        self._parquet_writer: Any = None
        self._parquet_schema: Any = None
        self.rows_written = 0

    def __enter__(self) -> AtomicTableWriter:
        if self._to_stdout:
            self._binary: IO[bytes] = sys.stdout.buffer
        else:
            self._atomic = atomic_file(self.path)
            fd, _ = self._atomic.__enter__()
            self._binary = os.fdopen(fd, "wb")
        if self.format in ("csv", "tsv"):
            self._text = io.TextIOWrapper(
                self._binary, encoding="utf-8", newline="", write_through=False
            )
            self._csv = csv.writer(self._text, delimiter=delimiter_for(self.format))
            self._csv.writerow(self.columns)
        elif self.format == "jsonl":
            self._text = io.TextIOWrapper(self._binary, encoding="utf-8", newline="\n")
        return self

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        if self.format in ("csv", "tsv"):
            self._csv.writerows([[_csv_value(row.get(c)) for c in self.columns] for row in rows])
        elif self.format == "jsonl":
            self._text.write(
                "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
            )
        else:
            self._write_parquet(rows)
        self.rows_written += len(rows)

    def _write_parquet(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet_schema is None:
            schema = self.schema
            if schema is None:
                schema = pa.Table.from_pylist(rows).select(self.columns).schema
            self._parquet_schema = schema
            self._strings = {f.name for f in schema if pa.types.is_string(f.type)}
            self._parquet_writer = pq.ParquetWriter(self._binary, schema)
        strings = self._strings
        typed = [
            {c: _text_value(row.get(c)) if c in strings else row.get(c) for c in self.columns}
            for row in rows
        ]
        try:
            table = pa.Table.from_pylist(typed, schema=self._parquet_schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(
                f"Cannot write {self.path}: a value does not fit its column's type ({exc}). "
                "Write CSV or JSONL instead."
            ) from None
        self._parquet_writer.write_table(table)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.format == "parquet":
                if self._parquet_writer is None and exc_type is None:
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    schema = self.schema or pa.schema([(c, pa.string()) for c in self.columns])
                    self._parquet_writer = pq.ParquetWriter(self._binary, schema)
                if self._parquet_writer is not None:
                    self._parquet_writer.close()
            else:
                self._text.flush()
                # Detach, or the wrapper's finaliser would close stdout with it.
                self._text.detach()
            if self._to_stdout:
                self._binary.flush()
            else:
                self._binary.close()
        except BaseException:
            if exc_type is None:
                exc_type, exc, tb = sys.exc_info()
            raise
        finally:
            if self._atomic is not None:
                # Renames the finished file into place, or removes it after an error.
                self._atomic.__exit__(exc_type, exc, tb)


def _text_value(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):  # as JSON and Arrow's CSV writer (Ray's part files) spell it
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value
