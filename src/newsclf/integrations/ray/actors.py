"""What runs on Ray's workers: `read_files` (newsclf's reader, a file per task) and
`Predictor` (a `Classifier` per actor: the local engine's per-chunk steps). What the driver
needs besides rows travels in the hidden column `__stats`: a JSON record on the first row of
each chunk an actor returns (its worker, the chunk's seconds and counts, the reader's skipped
lines and, on the part-file path, the chunk's evaluation)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from newsclf.errors import InputError
from newsclf.inference import (
    BatchStats,
    ChunkFigures,
    Classifier,
    ClassifierConfig,
    Evaluation,
    OutputPlan,
    ResultWriter,
    RunCounts,
)
from newsclf.io import TableReader

# Hidden columns: each row's file (its index among the inputs) and row in it; the reader's
# record (seconds, skipped lines) on the last batch of a file; an actor's record.
FILE, ROW, READ, STATS = "__file", "__row", "__read", "__stats"


@dataclass(frozen=True)
class WorkerStats:
    """What one Ray actor did: its rows, and the seconds it spent on them (preparing and
    inference, not waiting)."""

    worker: str
    node: str
    pid: int
    batches: int
    rows: int
    tokens: int
    busy_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.busy_s if self.busy_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rows_per_s": round(self.rows_per_s, 2)}


def read_files(
    items: Any, *, format: str | None, on_error: str, rows: int, schema: Any
) -> Iterator[Any]:
    """The batches of each file in `items` (its `path` and `index`), with the hidden columns.
    Every file must have the columns of `schema` (the first file's)."""
    import pyarrow as pa

    for path, index in zip(items["path"].to_pylist(), items["index"].to_pylist(), strict=True):
        started = time.perf_counter()
        reader = TableReader(path, format, on_error=on_error)
        if set(reader.columns) != set(schema.names):
            raise InputError(
                f"{reader.name}: its columns ({', '.join(reader.columns)}) differ from the first "
                f"file's ({', '.join(schema.names)}); one output needs one set of columns."
            )
        held, first_row = None, 0
        for batch in reader.batches(rows):
            try:
                batch = batch.select(schema.names).cast(schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                message = f"{reader.name}: its column types differ from the first file's."
                raise InputError(message) from None
            if held is not None:
                yield _with_source(held, index, first_row - held.num_rows)
            held, first_row = batch, first_row + batch.num_rows
        # The last chunk carries the file's record: its skipped lines are all known by then.
        skipped = [[s.line, f"{reader.name}: {s.reason}"] for s in reader.skipped]
        if held is None and skipped:
            raise InputError(f"{reader.name}: every row was malformed and skipped.")
        if held is not None:
            record = {"read_s": time.perf_counter() - started, "skipped": skipped}
            yield _with_source(held, index, first_row - held.num_rows, record)


def _with_source(batch: Any, index: int, first_row: int, record: dict | None = None) -> Any:
    import numpy as np
    import pyarrow as pa

    rows = batch.num_rows
    read = [json.dumps(record) if record else None] + [None] * (rows - 1)
    columns = {
        FILE: np.full(rows, index, dtype=np.int32),
        ROW: np.arange(first_row, first_row + rows),
    }
    table = pa.Table.from_batches([batch])
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    return table.append_column(READ, pa.array(read, pa.string()))


class Predictor:
    """One Ray worker: a `Classifier` on its own threads (or GPU), called once per chunk.
    `parts`: the folder it writes part files into; None: the chunk goes back with its
    prediction columns, for the driver to write in order."""

    def __init__(
        self,
        export: str,
        config: ClassifierConfig,
        plan: OutputPlan,
        parts: str | None,
        part_format: str,
        schema: Any,
    ) -> None:
        import ray

        self.classifier = Classifier(Path(export), config)
        self.preparer = self.classifier.preparer(plan.text_columns)
        self.plan, self.parts, self.part_format = plan, parts, part_format
        self.schema = schema
        context = ray.get_runtime_context()
        self.worker = context.get_actor_id() or f"pid-{os.getpid()}"
        self.node = context.get_node_id()
        self.introduced = False

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        batch = table.combine_chunks().to_batches()[0]
        rows = batch.select(self.plan.input_columns)
        prepared = self.preparer(rows)
        stats, started = BatchStats(), time.perf_counter()
        probabilities = self.classifier.probabilities(prepared.encoded, stats)
        figures = ChunkFigures.of(prepared, stats, time.perf_counter() - started)
        output = self.plan.annotate(rows, probabilities)
        record: dict[str, Any] = {
            "worker": [self.worker, self.node, os.getpid()],
            "rows": batch.num_rows,
            "figures": asdict(figures),
            "read": [json.loads(r) for r in batch.column(READ).to_pylist() if r is not None],
        }
        if not self.introduced:
            record["info"], self.introduced = self.classifier.info().to_dict(), True
        if self.parts is None:
            stats_column = [json.dumps(record)] + [None] * (batch.num_rows - 1)
            return pa.Table.from_batches([output]).append_column(
                STATS, pa.array(stats_column, pa.string())
            )
        # A part file per chunk, named by its first row's file and row: in input order by name.
        file, row = batch.column(FILE)[0].as_py(), batch.column(ROW)[0].as_py()
        name = f"part-{file:05d}-{row:012d}.{self.part_format}"
        evaluation = Evaluation(self.plan.label_names, self.plan.min_confidence)
        started = time.perf_counter()
        part = (str(Path(self.parts) / name), self.part_format)
        with ResultWriter(self.plan, self.schema, part, None, evaluation, RunCounts()) as sink:
            sink.write(output, figures, row)
        record |= {"evaluation": evaluation.to_dict(), "write_s": time.perf_counter() - started}
        return pa.table({STATS: [json.dumps(record)]})
