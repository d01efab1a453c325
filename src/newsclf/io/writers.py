"""Writing record batches as CSV, TSV, JSON Lines or Parquet, column by column.

CSV and Parquet are Arrow's writers; JSON Lines is built column-wise here (Arrow has no JSON
writer): each column becomes its JSON texts, and the texts of a row are joined into its line,
as `json.dumps(row, ensure_ascii=False)` would write it. Only the values a vectorised check
finds in need (strings with quotes, backslashes or control characters, floats) are encoded by
Python's own `json`, one value at a time. A key a record lacked is written as null.

Everything goes to a hidden temporary file renamed into place on success (`atomic_file`), so an
interrupted run never leaves an output that looks complete; `-` writes to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import IO, Any

import numpy as np

from newsclf.errors import InputError
from newsclf.io.atomic import atomic_file
from newsclf.io.tables import STDIN, delimiter_for, is_json_field

# Characters a JSON string must escape (with the quote and the backslash).
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
# How json.dumps writes the floats that repr writes otherwise.
_NON_FINITE = (("nan", "NaN"), ("inf", "Infinity"), ("-inf", "-Infinity"))


class AtomicTableWriter:
    """Writes record batches of `schema` to `path` in `format`, atomically (see the module).
    Use as a context manager."""

    def __init__(self, path: str, format: str, schema: Any) -> None:
        self.path = path
        self.format = format
        self.schema = schema
        self.rows_written = 0
        self._to_stdout = str(path) == STDIN
        self._atomic: Any = None
        self._writer: Any = None
        self._keys: list[str] = []

    def __enter__(self) -> AtomicTableWriter:
        if self._to_stdout:
            self._binary: IO[bytes] = sys.stdout.buffer
        else:
            self._atomic = atomic_file(self.path)
            fd, _ = self._atomic.__enter__()
            self._binary = os.fdopen(fd, "wb")
        if self.format in ("csv", "tsv"):
            from pyarrow import csv

            self._writer = csv.CSVWriter(
                self._binary,
                plain_schema(self.schema),
                write_options=csv.WriteOptions(delimiter=delimiter_for(self.format)),
            )
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._binary, plain_schema(self.schema))
        else:
            # Each key's JSON text and what comes before it on the line.
            names = [json.dumps(name, ensure_ascii=False) for name in self.schema.names]
            self._keys = [("{" if i == 0 else ", ") + f"{n}: " for i, n in enumerate(names)]
        return self

    def write(self, batch: Any) -> None:
        """Write a record batch of the writer's schema (column names and order)."""
        if batch.num_rows == 0:
            return
        if self.format == "jsonl":
            self._binary.write(json_lines(batch, self._keys))
        else:
            plain = plain_batch(batch)
            try:
                self._writer.write_batch(plain)
            except Exception as exc:
                if isinstance(exc, OSError):
                    raise
                raise InputError(
                    f"Cannot write {self.path}: a value does not fit its column's type ({exc}). "
                    "Write CSV or JSONL instead."
                ) from None
        self.rows_written += batch.num_rows

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._writer is not None:
                with contextlib.suppress(Exception) if exc_type else contextlib.nullcontext():
                    self._writer.close()
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


# -- CSV and Parquet: JSON texts as plain values ---------------------------------------------


def _nested(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_nested(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
    )


def plain_schema(schema: Any) -> Any:
    """The schema CSV and Parquet are written with: JSON-text and nested columns as strings,
    no newsclf field metadata."""
    import pyarrow as pa

    fields = []
    for field in schema:
        if is_json_field(field) or _nested(field.type):
            fields.append(pa.field(field.name, pa.string()))
        else:
            fields.append(field.remove_metadata())
    return pa.schema(fields)


def plain_batch(batch: Any) -> Any:
    """The batch as CSV and Parquet take it: a JSON-text column's strings decoded (a string
    value is written as itself, anything else as its JSON), nested values as JSON."""
    import pyarrow as pa

    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if is_json_field(field):
            values = [None if v is None else _plain(v) for v in column.to_pylist()]
            column = pa.array(values, pa.string())
        elif _nested(field.type):
            values = [None if v is None else _json(v) for v in column.to_pylist()]
            column = pa.array(values, pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=plain_schema(batch.schema))


def _plain(text: str) -> str:
    return json.loads(text) if text.startswith('"') else text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# -- JSON Lines ------------------------------------------------------------------------------


def json_lines(batch: Any, keys: list[str]) -> memoryview:
    """The JSON Lines of a record batch, as bytes: `keys` are each column's `"name": ` with
    what comes before it on the line (`{` or `, `)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts: list[Any] = []
    for key, field, column in zip(keys, batch.schema, batch.columns, strict=True):
        parts += [pa.scalar(key), json_values(column, field)]
    parts.append(pa.scalar("}\n"))
    lines = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(lines.buffers()[1], np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[start:end]


def json_values(column: Any, field: Any) -> Any:
    """Each value's JSON text, as a string array without nulls (null is `null`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if is_json_field(field):
        texts = column
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = column.cast(pa.string())
        texts = pc.binary_join_element_wise('"', column, '"', "")
        escape = pc.fill_null(pc.match_substring_regex(column, _NEEDS_ESCAPE), False)
        if pc.any(escape).as_py():
            escaped = [_json(v) for v in column.filter(escape).to_pylist()]
            texts = pc.replace_with_mask(texts, escape, pa.array(escaped, pa.string()))
    elif pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        texts = column.cast(pa.string())
    elif pa.types.is_floating(kind):
        # Python's float repr, as json.dumps writes it (Arrow writes 1.0 as "1").
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False).tolist()
        texts = pa.array(list(map(repr, values)), pa.string())
        for python, javascript in _NON_FINITE:
            texts = pc.if_else(pc.equal(texts, python), javascript, texts)
        texts = pc.if_else(column.is_null(), pa.scalar(None, pa.string()), texts)
    elif pa.types.is_null(kind):
        texts = pa.nulls(len(column), pa.string())
    else:
        texts = pa.array([None if v is None else _json(v) for v in column.to_pylist()], pa.string())
    return pc.fill_null(texts, "null")
