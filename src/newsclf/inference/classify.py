"""`newsclf classify`, the local engine: stream a file of any size through one `Classifier` and
evaluate when it is labelled.

Four stages run at once, each on its own: a reader thread reads chunks (Arrow record batches),
a pool prepares them (`PreparePool`: cleaning and tokenizing), this thread runs inference, and
a writer thread writes (`ResultWriter`). Bounded queues join them, so memory holds a few chunks
whatever the file's size, and rows leave in the order they came. The output goes to a
temporary file renamed into place at the end: an interrupted or failed run leaves nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.errors import InputError
from newsclf.inference.classifier import BatchStats, Classifier
from newsclf.inference.config import ClassifyConfig
from newsclf.inference.evaluation import Evaluation
from newsclf.inference.output import OutputPlan, ResultWriter, output_target, review_target
from newsclf.inference.prepare import PreparePool, pool_plan
from newsclf.inference.result import (
    ChunkFigures,
    ClassifyResult,
    ProgressCallback,
    RunCounts,
    StageTimes,
)
from newsclf.io import TableReader


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
            review threshold `min_confidence`, the preparing workers).
        output: output file (format by extension) or `-`; default `<input>.predictions.<ext>`.
        review_output: also write the rows under `config.min_confidence` to this file
            (format by extension, the output's columns); needs `min_confidence`.
        progress: called after each written chunk with (rows done, units done, units total
            or None), from the writer thread.

    Returns:
        `ClassifyResult`; `metrics`, `coverage` and `reliability` are set when the table has
        the label column; the predicted-class counts and the confidence histogram always.

    Raises:
        InputError: the input is missing or malformed (its line is named), the output would
            overwrite the input or its columns, or `review_output` is given without
            `min_confidence`.
        NewsclfError: a preparing worker process died.
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
    target, out_format = output_target(input_path, output, reader.format or "csv")
    review = review_target(review_output, config.min_confidence, [input_path], target)
    kind, workers = pool_plan(
        classifier.device,
        classifier.threads,
        plan.preprocessing.clean,
        config.prepare_workers,
        config.prepare_pool,
    )
    stages = StageTimes(prepare_pool=kind, prepare_workers=workers)
    counts = RunCounts()
    evaluation = Evaluation(classifier.label_names, config.min_confidence)
    with (
        ResultWriter(
            plan, reader.schema(), (target, out_format), review, evaluation, counts
        ) as sink,
        PreparePool(classifier.preparer(plan.text_columns), kind, workers) as pool,
        _WriterThread(plan, sink, stages) as writing,
    ):
        writing.on_chunk = (
            None if progress is None else lambda: progress(counts.rows, *reader.progress())
        )
        for batch, prepared in pool.run(reader.batches(config.chunk_rows)):
            stats, inferring = BatchStats(), time.perf_counter()
            probabilities = classifier.probabilities(prepared.encoded, stats)
            figures = ChunkFigures.of(prepared, stats, time.perf_counter() - inferring)
            stages.inference_s += figures.inference_s
            writing.put(batch, probabilities, figures)
        writing.finish()
        stages.read_s, stages.prepare_s = pool.read_s, pool.prepare_s
        if counts.rows == 0 and not reader.skipped:
            # Raised inside the writers' block, so no (empty) output is left behind.
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


class _WriterThread:
    """The writer stage in a thread of its own: the predictions added to each chunk, the chunk
    written and counted (`ResultWriter`), in order. An error there (a full disk, a closed
    pipe, a progress callback that raises) is raised again in the thread that puts."""

    def __init__(self, plan: OutputPlan, writer: ResultWriter, stages: StageTimes) -> None:
        self.plan, self.writer, self.stages = plan, writer, stages
        self.on_chunk: Any = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="newsclf-write", daemon=True)

    def __enter__(self) -> _WriterThread:
        self._thread.start()
        return self

    def put(self, batch: Any, probabilities: np.ndarray, figures: ChunkFigures) -> None:
        while True:
            self._raise_error()
            try:
                self._queue.put((batch, probabilities, figures), timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every chunk put is written."""
        self.put(None, None, None)  # type: ignore[arg-type]
        while self._thread.is_alive():
            self._thread.join(0.1)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                batch, probabilities, figures = item
                if batch is None:
                    return
                with self.stages.timing("write"):
                    self.writer.write(self.plan.annotate(batch, probabilities), figures)
                if self.on_chunk is not None:
                    self.on_chunk()
        except BaseException as exc:  # raised again in the thread that puts
            self._error = exc

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
