"""What runs on Ray's workers: `read_files` (newsclf's own reader, one file per task: record
batches with the rows' file and row numbers, errors that name file and line) and `Predictor`
(one `Classifier` per actor: the local engine's preparing, inference and prediction columns for
each batch; on the part-file path also the local engine's writer stage, into a part file).

What the driver needs besides rows travels in one hidden column, `__stats`: a JSON record on
the first row of each batch an actor returns (its worker, the seconds and counts of the batch,
the reader's skipped lines, and on the part-file path its evaluation). Nothing waits on a call
per batch."""

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
from newsclf.io import AtomicTableWriter, TableReader

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
        same = (set if reader.format == "jsonl" else list)(reader.columns)
        if same != (set if reader.format == "jsonl" else list)(schema.names):
            raise InputError(
                f"{reader.name}: its columns ({', '.join(reader.columns)}) differ from the first "
                f"file's ({', '.join(schema.names)}); one output needs one set of columns."
            )
        held, first_row = None, 0
        for batch in reader.batches(rows):
            try:
                batch = batch.select(schema.names).cast(schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(
                    f"{reader.name}: its column types differ from the first file's."
                ) from None
            if held is not None:
                yield _with_source(held, index, first_row - held.num_rows, None)
            held, first_row = batch, first_row + batch.num_rows
        # The last batch carries the file's record: all its skipped lines are known by then.
        skipped = [[s.line, f"{reader.name}: {s.reason}"] for s in reader.skipped]
        record = {"read_s": time.perf_counter() - started, "skipped": skipped}
        if held is None:
            if skipped:
                raise InputError(f"{reader.name}: every row was malformed and skipped.")
            continue
        yield _with_source(held, index, first_row - held.num_rows, record)


def _with_source(batch: Any, index: int, first_row: int, record: dict | None) -> Any:
    import numpy as np
    import pyarrow as pa

    rows = batch.num_rows
    read = [json.dumps(record)] + [None] * (rows - 1) if record else [None] * rows
    return (
        pa.Table.from_batches([batch])
        .append_column(FILE, pa.array(np.full(rows, index, dtype=np.int32)))
        .append_column(ROW, pa.array(np.arange(first_row, first_row + rows)))
        .append_column(READ, pa.array(read, pa.string()))
    )


class Predictor:
    """One Ray worker: a `Classifier` on its own threads (or GPU), called once per batch.
    `parts`: the folder to write part files into (the part-file path); None: the batch comes
    back with the prediction columns, for the driver to write in order."""

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
        self.schema = plan.output_schema(schema)
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
        figures = ChunkFigures(
            tokens=prepared.encoded.tokens,
            empty_rows=prepared.empty_rows,
            padded_tokens=stats.padded_tokens,
            latencies_ms=stats.latencies_ms,
            prepare_s=prepared.busy_s,
            inference_s=time.perf_counter() - started,
        )
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
        # A part file per batch, named by its first row's file and row: names sort in input
        # order.
        file, row = batch.column(FILE)[0].as_py(), batch.column(ROW)[0].as_py()
        name = f"part-{file:05d}-{row:012d}.{self.part_format}"
        evaluation = Evaluation(self.plan.label_names, self.plan.min_confidence)
        started = time.perf_counter()
        with AtomicTableWriter(str(Path(self.parts) / name), self.part_format, self.schema) as w:
            ResultWriter(self.plan, w, None, evaluation, RunCounts()).write(output, figures, row)
        record |= {"evaluation": evaluation.to_dict(), "write_s": time.perf_counter() - started}
        return pa.table({STATS: [json.dumps(record)]})
