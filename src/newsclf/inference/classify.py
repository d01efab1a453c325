"""`newsclf classify`, the local engine: stream a file of any size through one `Classifier` and
evaluate when it is labelled.

Memory stays bounded: rows are read, cleaned, tokenized, classified and written one chunk at a
time, and only counts are kept for the metrics. Where it helps (a GPU, or CPU cores that
inference leaves free) the next chunk is read and tokenized in a background thread while the
current one runs. The output goes to a temporary file renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsclf.errors import InputError
from newsclf.inference.classifier import BatchStats, Classifier, Encoded
from newsclf.inference.config import ClassifyConfig
from newsclf.inference.pipeline import (
    ClassifyResult,
    Evaluation,
    OutputPlan,
    ProgressCallback,
    RunCounts,
    StageTimes,
    output_target,
    review_target,
)
from newsclf.io import NO_LABEL, AtomicTableWriter, Chunk, TableReader


@dataclass
class _Prepared:
    chunk: Chunk
    texts: list[str]
    encoded: Encoded
    first_row: int


def classify_file(
    input_path: str | Path,
    classifier: Classifier,
    config: ClassifyConfig | None = None,
    *,
    output: str | Path | None = None,
    review_output: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> ClassifyResult:
    """Classify every row of a table; write the rows with predictions; evaluate if labelled.

    Args:
        input_path: CSV, TSV, JSONL or Parquet file, or `-` for stdin (format sniffed).
        classifier: the `Classifier` to run.
        config: how to read and write (text/label columns, probabilities, malformed rows, the
            review threshold `min_confidence`).
        output: output file (format by extension) or `-`; default `<input>.predictions.<ext>`.
        review_output: also write the rows under `config.min_confidence` to this file
            (format by extension, the output's columns); needs `min_confidence`.
        progress: called after each chunk with (rows done, units done, units total or None).

    Returns:
        `ClassifyResult`; `metrics`, `coverage` and `reliability` are set when the table has
        the label column; the predicted-class counts and the confidence histogram always.

    Raises:
        InputError: the input is missing or malformed (its line is named), the output would
            overwrite the input or its columns, or `review_output` is given without
            `min_confidence`.
    """
    config = config or ClassifyConfig()
    started = time.perf_counter()
    reader = TableReader(input_path, config.format, on_error=config.on_error)
    plan = OutputPlan.for_input(
        reader.columns,
        reader.name,
        label_names=classifier.label_names,
        preprocessing=classifier.preprocessing,
        config=config,
    )
    target, out_format = output_target(input_path, output, reader.format)
    review = review_target(review_output, config.min_confidence, [input_path], target)
    stages = StageTimes(overlapped=classifier.overlaps_well)
    counts = RunCounts()
    # Counts of every row (confidences, predicted classes); metrics when labelled.
    evaluation = Evaluation(classifier.label_names, config.min_confidence)
    rows_read = 0

    def prepare(chunk: Chunk) -> _Prepared:
        nonlocal rows_read
        with stages.timing("tokenize"):
            texts = plan.texts(chunk.rows)
            prepared = _Prepared(chunk, texts, classifier.encode(texts), rows_read)
        rows_read += len(chunk)
        return prepared

    schema = plan.output_schema(reader.schema())
    with (
        AtomicTableWriter(target, out_format, plan.output_columns, schema) as writer,
        (
            AtomicTableWriter(review[0], review[1], plan.output_columns, schema)
            if review is not None
            else contextlib.nullcontext()
        ) as review_writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsclf-prefetch") as pool,
    ):
        chunks = stages.timed_reads(reader.iter_chunks(config.chunk_rows))
        prepared_chunks = (
            _prefetched(chunks, prepare, pool)
            if classifier.overlaps_well
            else (prepare(chunk) for chunk in chunks)
        )
        for prepared in prepared_chunks:
            stats = BatchStats()
            with stages.timing("inference"):
                probabilities = classifier.probabilities(prepared.encoded, stats)
            with stages.timing("write"):
                rows = prepared.chunk.rows
                annotated = plan.annotate(rows, probabilities)
                writer.write_rows(rows)
                if review_writer is not None:
                    flags = annotated.needs_review
                    review_writer.write_rows([row for row, f in zip(rows, flags, strict=True) if f])
                truth = (
                    evaluation.match(plan.label_values(rows))
                    if plan.label_column
                    else np.full(len(rows), NO_LABEL, dtype=np.int64)
                )
                evaluation.add(
                    truth,
                    annotated.predicted,
                    annotated.confidence,
                    prepared.texts,
                    prepared.first_row,
                )
            counts.add(prepared.texts, prepared.encoded.tokens, stats)
            if progress is not None:
                progress(counts.rows, *reader.progress())
        if counts.rows == 0 and not reader.skipped:
            # Raised inside the writer's block, so no (empty) output is left behind.
            raise InputError(f"{reader.name}: the file has a header but no rows.")
    return ClassifyResult.of(
        reader.name,
        target,
        counts,
        stages,
        classifier.info(),
        evaluation,
        skipped=reader.skipped,
        wall_s=time.perf_counter() - started,
        review_output=review[0] if review is not None else None,
    )


def _prefetched(
    chunks: Iterator[Chunk], prepare: Callable[[Chunk], _Prepared], pool: ThreadPoolExecutor
) -> Iterator[_Prepared]:
    """Read and tokenize chunk n+1 in the background while chunk n is classified."""

    def read_and_prepare() -> _Prepared | None:
        chunk = next(chunks, None)
        return None if chunk is None else prepare(chunk)

    pending = pool.submit(read_and_prepare)
    while True:
        prepared = pending.result()
        if prepared is None:
            return
        pending = pool.submit(read_and_prepare)
        yield prepared
