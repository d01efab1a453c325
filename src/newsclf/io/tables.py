"""Users' tables read as Arrow record batches, in bounded chunks, with errors that name lines.

CSV and TSV go through pyarrow's CSV parser a block of whole rows at a time (every column a
string, quoted line breaks allowed); JSON Lines through pyarrow's JSON reader a block of lines
at a time, against the types of the whole file; Parquet by its own batches. pyarrow does not
number lines, so where it rejects a row (or would accept one that is not valid CSV, such as
`"x"y`), the exact reader (`LineReader`) reads the rest of the file from the first row not yet
returned: it names the bad line, or with `on_error="skip"` records it and goes on. Stdin,
which cannot be read twice, is read by the exact reader throughout.

The columns are the whole input's before the first batch: a JSON Lines file is scanned once
(a key that first appears on line 500 is a column, a bad line fails before any work); on stdin
a key that first appears after line 1 is an error naming its line. JSON values keep their
types where a key holds one kind of scalar; a key that mixes kinds, or holds objects or arrays,
becomes a string column of JSON texts (marked `JSON_FIELD`), written back to JSON Lines as the
values they were. Every batch has `schema()`, and every chunk but the last `rows` rows, so
that the chunks (and the batches sorted within them) are the same whichever reader read them.
"""

from __future__ import annotations

import glob
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from newsclf.errors import InputError
from newsclf.io.line_reader import LineReader, SkippedLine, batched, skip

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
# Field metadata of a string column that holds JSON texts (a JSON Lines key of mixed kinds).
JSON_FIELD = b"newsclf.json"
# Bytes pyarrow parses at a time; a CSV row longer than this goes to the exact reader.
BLOCK_BYTES = 8 << 20


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


class _Stream(io.RawIOBase):
    """A binary source (a file, stdin, a pyarrow stream) that counts the bytes read and, for
    pyarrow's CSV reader, stops at the first quote that strict CSV would reject there: one with
    neither a delimiter, a line end nor another quote on either side (`"x"y`), which pyarrow
    would silently read as `xy`."""

    def __init__(self, source: Any, quote_check: bytes | None = None) -> None:
        self.source = source
        self.bytes_read = 0
        self._structural = None if quote_check is None else np.frombuffer(quote_check, np.uint8)
        self._last = b"\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.bytes_read += size
        if self._structural is not None and size:
            self._check_quotes(self._last + bytes(data))
            self._last = bytes(data[-1:])
        return size

    def _check_quotes(self, data: bytes) -> None:
        values = np.frombuffer(data, np.uint8)
        quotes = np.flatnonzero(values == ord('"'))
        quotes = quotes[(quotes > 0) & (quotes < len(values) - 1)]
        if len(quotes) == 0:
            return
        odd = ~np.isin(values[quotes - 1], self._structural) & ~np.isin(
            values[quotes + 1], self._structural
        )
        if odd.any():
            raise _NotForArrow

    def close(self) -> None:
        if self.source is not sys.stdin.buffer:
            self.source.close()
        super().close()


class _NotForArrow(Exception):
    """The rest of the file goes to the exact reader."""


@dataclass
class TableReader:
    """Streams a table as Arrow record batches (`batches`). `columns` and `schema()` are known
    once the reader exists. `on_error="raise"` stops at the first malformed row with an
    `InputError` naming its line; `on_error="skip"` records it in `skipped` and goes on."""

    path: str | Path
    format: str | None = None
    on_error: str = "raise"

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"--on-error must be raise or skip, not {self.on_error!r}.")
        text = str(self.path)
        self.stdin = text == STDIN
        if not self.stdin and not is_url(text):
            if Path(text).is_dir():
                raise InputError(
                    f"{self.path} is a directory; give one file (CSV, TSV, JSONL or Parquet)."
                )
            if not Path(text).is_file():
                raise InputError(f"{self.path}: no such file.")
        self.format = detect_format(self.path, self.format)
        self.name = "<stdin>" if self.stdin else text
        self.skipped: list[SkippedLine] = []
        self._done = 0
        self._total: int | None = None
        source = {"csv": _Delimited, "tsv": _Delimited, "jsonl": _JsonLines}.get(
            self.format, _Parquet
        )
        self._source = source(self)
        self.columns: list[str] = self._source.schema.names
        if not self.columns:
            raise InputError(f"{self.name}: the file is empty (no header and no rows).")

    def schema(self) -> Any:
        """The columns as an Arrow schema: Parquet's own, strings for CSV and TSV, the types a
        JSON Lines file's values have. Written Parquet keeps them."""
        return self._source.schema

    def batches(self, rows: int) -> Iterator[Any]:
        """Record batches of `rows` rows (the last one shorter), in file order; read once."""
        return self._source.batches(rows)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line, row as a dict) of every row: the exact reader, for training-sized tables."""
        return self._source.records()

    def progress(self) -> tuple[int, int | None]:
        """(done, total) in bytes for CSV/JSONL, in rows for Parquet; total None for stdin."""
        return self._done, self._total

    def open(self, quote_check: bytes | None = None) -> _Stream:
        """A new binary stream of the input (stdin: the one stdin)."""
        text = str(self.path)
        try:
            if self.stdin:
                source: Any = sys.stdin.buffer
            elif is_url(text):
                from pyarrow import fs

                filesystem, where = fs.FileSystem.from_uri(text)
                source = filesystem.open_input_stream(where)
            else:
                source = open(text, "rb")  # noqa: SIM115 (the returned stream closes it)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"{self.name}: cannot read it ({reason}).") from None
        return _Stream(source, quote_check)

    def line_reader(self, stream: _Stream, on_error: str | None = None) -> LineReader:
        lines = io.BufferedReader(stream, buffer_size=1 << 20)
        return LineReader(
            self.name, lines, self.format or "", on_error or self.on_error, self.skipped
        )

    def total_bytes(self) -> int | None:
        if self.stdin or is_url(str(self.path)):
            return None
        return Path(self.path).stat().st_size


def _row_blocks(stream: _Stream) -> Iterator[bytes]:
    """About BLOCK_BYTES of a CSV stream at a time, cut after a line end outside quotes. (The
    stream stops at any quote that strict CSV would reject, so every quote opens, closes or is
    doubled: a line end is outside quotes where the quotes before it are even.)"""
    rest = b""
    while True:
        data = stream.read(BLOCK_BYTES)
        if not data:
            break
        data = rest + data
        values = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(values == ord("\n"))
        quotes_before = np.searchsorted(np.flatnonzero(values == ord('"')), ends)
        outside = ends[quotes_before % 2 == 0]
        if len(outside) == 0:  # a row longer than a block: read on
            rest = data
            continue
        cut = int(outside[-1]) + 1
        yield data[:cut]
        rest = data[cut:]
    if rest.strip():
        yield rest


def rechunk(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Record batches of exactly `rows` rows (the last one shorter) from batches of any size."""
    import pyarrow as pa

    pending: list[Any] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).combine_chunks().to_batches()[0]
            rest = table.slice(rows)
            pending = rest.combine_chunks().to_batches() if rest.num_rows else []
            held -= rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _batch_of(columns: list[list[Any]], schema: Any) -> Any:
    import pyarrow as pa

    arrays = [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Delimited:
    """CSV and TSV: pyarrow's parser by blocks of rows, the exact reader where it cannot go on."""

    def __init__(self, reader: TableReader) -> None:
        import pyarrow as pa

        self.reader = reader
        self.delimiter = delimiter_for(reader.format or "csv")
        reader._total = reader.total_bytes()
        if reader.stdin:
            # Read once: the rows follow the header on the same stream.
            self._stdin = reader.line_reader(reader.open())
            self.raw_header, header, self._stdin_rows = self._stdin.delimited(self.delimiter)
        else:
            with reader.open() as stream:
                self.raw_header, header, _ = reader.line_reader(stream, "raise").delimited(
                    self.delimiter
                )
        self.schema = pa.schema([(name, pa.string()) for name in header])

    def batches(self, rows: int) -> Iterator[Any]:
        returned = 0
        if not self.reader.stdin:
            try:
                for batch in rechunk(self._arrow_batches(), rows):
                    yield batch
                    returned += batch.num_rows
                return
            except _NotForArrow:
                pass
        yield from rechunk(self._exact_batches(rows, returned), rows)

    def _arrow_batches(self) -> Iterator[Any]:
        """Blocks of whole rows through pyarrow's CSV parser, one at a time. (Its streaming
        reader keeps memory that grows with the file: about 150 MB more for 450,000 rows.)"""
        import pyarrow as pa
        from pyarrow import csv

        structural = (self.delimiter + '"\r\n').encode()
        parse = csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)
        convert = csv.ConvertOptions(
            column_types={name: pa.string() for name in self.raw_header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        stream = self.reader.open(quote_check=structural)
        try:
            for number, block in enumerate(_row_blocks(stream)):
                self.reader._done = stream.bytes_read
                # The first block has the header; the others are rows only.
                names = None if number == 0 else self.raw_header
                read = csv.ReadOptions(column_names=names, block_size=len(block) + 1)
                table = csv.read_csv(pa.py_buffer(block), read, parse, convert)
                if table.schema.names != self.raw_header:
                    raise _NotForArrow
                yield from table.rename_columns(self.schema.names).to_batches()
        except pa.ArrowInvalid:
            raise _NotForArrow from None
        finally:
            stream.close()

    def _exact_batches(self, rows: int, returned: int) -> Iterator[Any]:
        if self.reader.stdin:
            for group in batched(self._stdin_rows, rows):
                self.reader._done = self._stdin.bytes_read
                columns = [list(c) for c in zip(*(values for _, values in group), strict=True)]
                yield _batch_of(columns, self.schema)
            return
        with self.reader.open() as stream:
            # The rows already returned were read by pyarrow: read past them strictly.
            lines = self.reader.line_reader(stream, "raise")
            _, _, items = lines.delimited(self.delimiter)
            items = skip(items, returned, lambda: self.reader.name)
            lines.on_error = self.reader.on_error
            for group in batched(items, rows):
                self.reader._done = stream.bytes_read
                columns = [list(c) for c in zip(*(values for _, values in group), strict=True)]
                yield _batch_of(columns, self.schema)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        header = self.schema.names
        if self.reader.stdin:
            for line, values in self._stdin_rows:
                yield line, dict(zip(header, values, strict=True))
            return
        with self.reader.open() as stream:
            _, _, items = self.reader.line_reader(stream).delimited(self.delimiter)
            for line, values in items:
                yield line, dict(zip(header, values, strict=True))


# The kind of a JSON value, and the Arrow type of a column of one kind.
_KIND_TYPES = {"bool": "bool_", "int": "int64", "float": "float64", "string": "string"}


def _python_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**63) <= value < 2**63 else "json"
    if isinstance(value, float):
        return "float"
    return "string" if isinstance(value, str) else "json"


def _arrow_kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_null(arrow_type):
        return "null"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    # pyarrow reads ISO dates in JSON strings as timestamps: they are strings in the file.
    if pa.types.is_string(arrow_type) or pa.types.is_temporal(arrow_type):
        return "string"
    return "json"


def _field_of(name: str, kinds: set[str]) -> Any:
    import pyarrow as pa

    kinds = kinds - {"null"}
    if kinds == {"int", "float"}:
        kinds = {"float"}
    if len(kinds) > 1 or "json" in kinds:
        return pa.field(name, pa.string(), metadata={JSON_FIELD: b"1"})
    kind = next(iter(kinds), "string")
    return pa.field(name, getattr(pa, _KIND_TYPES[kind])())


def is_json_field(field: Any) -> bool:
    """Whether a column holds JSON texts (a JSON Lines key of mixed kinds)."""
    return bool(field.metadata and field.metadata.get(JSON_FIELD))


class _JsonLines:
    """JSON Lines: blocks of whole lines through pyarrow's JSON reader against the whole
    file's schema; a block it rejects, or one with JSON-text columns, record by record."""

    def __init__(self, reader: TableReader) -> None:
        self.reader = reader
        reader._total = reader.total_bytes()
        if reader.stdin:
            self._start_stdin()
        else:
            self._scan()

    # -- the schema ------------------------------------------------------------------------

    def _scan(self) -> None:
        """Every key of the file, in order of first appearance, and its kinds of value; a bad
        line stops here, before any work (with `on_error="skip"` the reading pass records
        it)."""
        import pyarrow as pa
        from pyarrow import json as pajson

        kinds: dict[str, set[str]] = {}
        with self.reader.open() as stream:
            for block, first_line in self._blocks(stream):
                try:
                    table = pajson.read_json(io.BytesIO(block), _json_read_options(block))
                    for field in table.schema:
                        kinds.setdefault(field.name, set()).add(_arrow_kind(field.type))
                    continue
                except pa.ArrowInvalid:
                    pass
                lines = self._lines(block)
                report = self.reader.on_error == "raise"
                for _, record in lines.records(first_line, report=report):
                    for key, value in record.items():
                        kinds.setdefault(key, set()).add(_python_kind(value))
        self.schema = pa.schema([_field_of(name, kinds[name]) for name in kinds])
        self.json_columns = any(is_json_field(f) for f in self.schema)

    def _start_stdin(self) -> None:
        """On stdin the first record sets the columns and their types."""
        import pyarrow as pa

        self._stdin_lines = self.reader.line_reader(self.reader.open())
        self._stdin_records = self._stdin_lines.records()
        first = next(self._stdin_records, None)
        self._first = first
        record = first[1] if first else {}
        self.schema = pa.schema(
            [_field_of(key, {_python_kind(value)}) for key, value in record.items()]
        )
        self.json_columns = any(is_json_field(f) for f in self.schema)

    # -- reading ---------------------------------------------------------------------------

    def batches(self, rows: int) -> Iterator[Any]:
        if self.reader.stdin:
            yield from rechunk(self._stdin_batches(rows), rows)
            return
        yield from rechunk(self._block_batches(), rows)

    def _block_batches(self) -> Iterator[Any]:
        import pyarrow as pa
        from pyarrow import json as pajson

        options = pajson.ParseOptions(
            explicit_schema=self.schema, unexpected_field_behavior="error"
        )
        with self.reader.open() as stream:
            for block, first_line in self._blocks(stream):
                self.reader._done = stream.bytes_read
                if not self.json_columns:
                    try:
                        table = pajson.read_json(
                            io.BytesIO(block), _json_read_options(block), options
                        )
                        yield from table.select(self.schema.names).to_batches()
                        continue
                    except pa.ArrowInvalid:
                        pass
                found = list(self._lines(block).records(first_line))
                if found:
                    yield self._batch(found)

    def _stdin_batches(self, rows: int) -> Iterator[Any]:
        records = self._stdin_records
        if self._first is not None:
            records = _prepend(self._first, records)
        known = set(self.schema.names)
        for group in batched(records, rows):
            for number, record in group:
                new = [key for key in record if key not in known]
                if new:
                    raise InputError(
                        f"{self.reader.name}, line {number}: key(s) {', '.join(map(repr, new))} "
                        "first appear here, after the output's columns were fixed; classify a "
                        "file (it is scanned first) or give every record the same keys."
                    )
            self.reader._done = self._stdin_lines.bytes_read
            yield self._batch(group)

    def _batch(self, found: list[tuple[int, dict[str, Any]]]) -> Any:
        """A record batch of parsed records, or an error naming the line whose value does
        not fit its column (only on stdin, whose types come from line 1)."""
        import pyarrow as pa

        columns = []
        for field in self.schema:
            values = [record.get(field.name) for _, record in found]
            if is_json_field(field):
                values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
            try:
                columns.append(pa.array(values, field.type))
            except (pa.ArrowException, OverflowError, UnicodeEncodeError):
                raise self._misfit(field, found) from None
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def _misfit(self, field: Any, found: list[tuple[int, dict[str, Any]]]) -> InputError:
        import pyarrow as pa

        for number, record in found:
            value = record.get(field.name)
            if is_json_field(field) and value is not None:
                value = json.dumps(value, ensure_ascii=False)
            try:
                pa.array([value], field.type)
            except (pa.ArrowException, OverflowError, UnicodeEncodeError):
                return InputError(
                    f"{self.reader.name}, line {number}: key {field.name!r} holds {value!r}, "
                    f"which is not a {field.type} like the key's other values (on stdin, "
                    "line 1 sets the types: classify a file, which is scanned first)."
                )
        return InputError(f"{self.reader.name}: key {field.name!r} cannot be read.")

    def _lines(self, block: bytes) -> LineReader:
        return LineReader(
            self.reader.name,
            io.BytesIO(block),
            "jsonl",
            self.reader.on_error,
            self.reader.skipped,
        )

    @staticmethod
    def _blocks(stream: _Stream) -> Iterator[tuple[bytes, int]]:
        """(whole lines, the number of the first) of about BLOCK_BYTES each."""
        line, rest = 1, b""
        while True:
            data = stream.read(BLOCK_BYTES)
            if not data:
                break
            if line == 1 and not rest:
                data = data.removeprefix(b"\xef\xbb\xbf")
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield block, line
            line += block.count(b"\n")
        if rest:
            yield rest, line

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.reader.stdin:
            if self._first is not None:
                yield self._first
            yield from self._stdin_records
            return
        with self.reader.open() as stream:
            yield from self.reader.line_reader(stream).records()


def _json_read_options(block: bytes) -> Any:
    from pyarrow import json as pajson

    # One block per call: pyarrow's own blocks would cut a long line.
    return pajson.ReadOptions(block_size=max(len(block) + 1, 1 << 16))


class _Parquet:
    """Parquet: its own batches; rows are numbered instead of lines."""

    def __init__(self, reader: TableReader) -> None:
        import pyarrow.parquet as pq

        self.reader = reader
        source: Any = str(reader.path)
        if reader.stdin:
            source = io.BytesIO(sys.stdin.buffer.read())  # Parquet needs random access.
        elif is_url(source):
            from pyarrow import fs

            filesystem, where = fs.FileSystem.from_uri(source)
            source = filesystem.open_input_file(where)
        try:
            self.file = pq.ParquetFile(source)
        except Exception as exc:
            raise InputError(f"{reader.name}: not a readable Parquet file ({exc}).") from None
        self.schema = self.file.schema_arrow
        reader._total = self.file.metadata.num_rows

    def batches(self, rows: int) -> Iterator[Any]:
        for batch in rechunk(self.file.iter_batches(batch_size=rows), rows):
            self.reader._done += batch.num_rows
            yield batch

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        number = 0
        for batch in self.file.iter_batches(batch_size=8192):
            for record in batch.to_pylist():
                number += 1
                yield number, record


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


@dataclass
class Chunk:
    """Rows of a table as dicts, with the source line (or Parquet row) each one came from."""

    rows: list[dict[str, Any]]
    line_numbers: list[int]

    def __len__(self) -> int:
        return len(self.rows)


def read_table(path: str | Path, format: str | None = None) -> tuple[list[str], Chunk]:
    """A whole (training-sized) table: its columns and rows, read by the exact reader.
    Malformed rows raise."""
    reader = TableReader(path, format)
    chunk = Chunk([], [])
    for line, row in reader.records():
        chunk.rows.append(row)
        chunk.line_numbers.append(line)
    return reader.columns, chunk
