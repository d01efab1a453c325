"""`newsclf classify`: stream a file of any size through an export and evaluate when labelled.

Memory stays bounded: rows are read, cleaned, tokenized, classified and written one chunk at a
time, and only integers per row (true and predicted label) are kept for the metrics. Where it
helps (a GPU, or CPU cores that inference leaves free) the next chunk is read and tokenized in a
background thread while the current one runs. The output goes to a temporary file renamed into
place at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.classifier import BatchStats, Classifier, ClassifierInfo, Encoded
from newsclf.config import ClassifyConfig
from newsclf.data import label_key
from newsclf.errors import InputError
from newsclf.metrics import ClassificationMetrics, Confusion, classification_metrics
from newsclf.tables import STDIN, AtomicTableWriter, Chunk, SkippedLine, TableReader, detect_format
from newsclf.text import choose_text_columns, texts_from_rows

PREDICTED_COLUMN = "predicted_label"
CONFIDENCE_COLUMN = "confidence"
# Called after each chunk: (rows done, units done, units total or None). Units are bytes for
# CSV/JSONL, rows for Parquet.
ProgressCallback = Callable[[int, int, "int | None"], None]


@dataclass
class StageTimes:
    """Seconds spent in each stage. When `overlapped`, reading and tokenizing ran in another
    thread beside inference, so the stages add up to more than the wall time."""

    read_s: float = 0.0
    tokenize_s: float = 0.0
    inference_s: float = 0.0
    write_s: float = 0.0
    overlapped: bool = False


@dataclass
class ClassifyResult:
    """What `classify_file` did: rows, speed, where time went and, with labels, the metrics."""

    input: str
    output: str
    rows: int
    tokens: int
    padded_tokens: int
    wall_s: float
    stages: StageTimes
    classifier: ClassifierInfo
    empty_text_rows: int
    skipped_lines: list[SkippedLine]
    labelled_rows: int = 0
    unlabelled_rows: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)
    metrics: ClassificationMetrics | None = None
    confusions: list[Confusion] = field(default_factory=list)
    peak_rss_mb: float | None = None
    batch_latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def padding_overhead(self) -> float:
        """Padded tokens run per real token, less one."""
        return self.padded_tokens / self.tokens - 1 if self.tokens else 0.0

    def to_report(self) -> dict[str, Any]:
        """The JSON report (`--report`)."""
        info = self.classifier
        report = {
            "input": self.input,
            "output": self.output,
            "rows": self.rows,
            "model": info.model,
            "variant": info.variant,
            "provider": info.provider,
            "device": info.device,
            "batch_size": info.batch_size,
            "max_batch_tokens": info.max_batch_tokens,
            "threads": info.threads,
            "fallback_reason": info.fallback_reason,
            "throughput_rows_per_s": round(self.rows_per_s, 2),
            "throughput_tokens_per_s": round(self.tokens_per_s, 1),
            "tokens": self.tokens,
            "padding_overhead": round(self.padding_overhead, 4),
            "wall_time_s": round(self.wall_s, 3),
            "stage_seconds": {
                "read_s": round(self.stages.read_s, 3),
                "tokenize_s": round(self.stages.tokenize_s, 3),
                "inference_s": round(self.stages.inference_s, 3),
                "write_s": round(self.stages.write_s, 3),
            },
            "stages_overlapped": self.stages.overlapped,
            "batch_latency_ms": _percentiles(self.batch_latencies_ms),
            "empty_text_rows": self.empty_text_rows,
            "skipped_lines": [{"line": s.line, "reason": s.reason} for s in self.skipped_lines],
            "peak_rss_mb": self.peak_rss_mb,
        }
        if self.metrics is not None:
            report |= {
                "labelled_rows": self.labelled_rows,
                "unlabelled_rows": self.unlabelled_rows,
                "unknown_labels": self.unknown_labels,
                **{k: v for k, v in self.metrics.to_dict().items() if k != "rows"},
                "top_confusions": [c.__dict__ for c in self.confusions],
            }
        return report


def _output_target(
    input_path: str | Path, requested: str | Path | None, input_format: str
) -> tuple[str, str]:
    """(path, format) of the output: --output (format by extension, `-` for stdout) or
    `<input>.predictions.<ext>` beside the input, never the input itself."""
    if requested is None:
        output, fmt = default_output_path(input_path, input_format), input_format
    elif str(requested) == STDIN:
        output, fmt = STDIN, input_format
    else:
        output, fmt = str(requested), detect_format(requested, None)
    if (
        STDIN not in (output, str(input_path))
        and Path(output).resolve() == Path(input_path).resolve()
    ):
        raise InputError(f"--output {output} is the input file; choose another path.")
    return output, fmt


def default_output_path(input_path: str | Path, fmt: str) -> str:
    if str(input_path) == STDIN:
        return STDIN
    path = Path(input_path)
    extension = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}[fmt]
    return str(path.with_name(f"{path.stem}.predictions{extension}"))


class LabelMatcher:
    """Maps a file's label values to the model's classes: by name, or by class index when
    the model's classes are not themselves integers."""

    def __init__(self, label_names: list[str]) -> None:
        self.index = {name: i for i, name in enumerate(label_names)}
        self.by_position = not all(name.lstrip("-").isdigit() for name in label_names)
        self.count = len(label_names)

    def __call__(self, value: Any) -> int | str | None:
        """Class index; None for an empty cell; the raw text for a label the model lacks."""
        key = label_key(value)
        if key is None:
            return None
        if str(key) in self.index:
            return self.index[str(key)]
        if isinstance(key, int) and self.by_position and 0 <= key < self.count:
            return key
        return str(key)

    def truth(self, values: list[Any]) -> tuple[np.ndarray, int, Counter[str]]:
        """Class index per value (-1 where there is none), the count of empty labels, and the
        labels the model lacks with their counts."""
        truth = np.full(len(values), -1, dtype=np.int16)
        unlabelled = 0
        unknown: Counter[str] = Counter()
        for i, value in enumerate(values):
            matched = self(value)
            if matched is None:
                unlabelled += 1
            elif isinstance(matched, str):
                unknown[matched] += 1
            else:
                truth[i] = matched
        return truth, unlabelled, unknown


@dataclass
class _Prepared:
    chunk: Chunk
    texts: list[str]
    encoded: Encoded
    read_s: float
    tokenize_s: float


class _Evaluation:
    """Running evaluation state: two small integers per labelled row, and one example text per
    kind of mistake."""

    def __init__(self, label_names: list[str]) -> None:
        self.match = LabelMatcher(label_names)
        self.label_names = label_names
        self.y_true: list[np.ndarray] = []
        self.y_pred: list[np.ndarray] = []
        self.unknown: Counter[str] = Counter()
        self.unlabelled = 0
        self.examples: dict[tuple[int, int], str] = {}

    def add(self, values: list[Any], predicted: np.ndarray, texts: list[str]) -> None:
        truth, unlabelled, unknown = self.match.truth(values)
        self.unlabelled += unlabelled
        self.unknown.update(unknown)
        known = truth >= 0
        self.y_true.append(truth[known])
        self.y_pred.append(predicted[known].astype(np.int16))
        for i in np.flatnonzero(known & (truth != predicted)):
            self.examples.setdefault((int(truth[i]), int(predicted[i])), texts[i])

    def finish(self) -> tuple[ClassificationMetrics | None, list[Confusion], int]:
        y_true = np.concatenate(self.y_true) if self.y_true else np.array([], dtype=np.int16)
        y_pred = np.concatenate(self.y_pred) if self.y_pred else np.array([], dtype=np.int16)
        if len(y_true) == 0:
            return None, [], 0
        metrics = classification_metrics(y_true, y_pred, self.label_names)
        index = {n: i for i, n in enumerate(self.label_names)}
        confusions = [
            Confusion(
                c.true,
                c.predicted,
                c.count,
                self.examples.get((index[c.true], index[c.predicted]), ""),
            )
            for c in metrics.top_confusions()
        ]
        return metrics, confusions, len(y_true)


def classify_file(
    input_path: str | Path,
    classifier: Classifier,
    config: ClassifyConfig | None = None,
    *,
    output: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> ClassifyResult:
    """Classify every row of a table; write the rows with predictions; evaluate if labelled.

    Args:
        input_path: CSV, TSV, JSONL or Parquet file, or `-` for stdin (format sniffed).
        classifier: the `Classifier` to run.
        config: how to read and write (text/label columns, probabilities, malformed rows).
        output: output file (format by extension) or `-`; default `<input>.predictions.<ext>`.
        progress: called after each chunk with (rows done, units done, units total or None).

    Returns:
        `ClassifyResult`; `metrics` is set when the table has the label column.

    Raises:
        InputError: the input is missing or malformed (its line is named), or the output
            would overwrite the input or its columns.
    """
    config = config or ClassifyConfig()
    started = time.perf_counter()
    reader = TableReader(input_path, config.format, on_error=config.on_error)
    pre = classifier.preprocessing
    text_columns = choose_text_columns(
        reader.columns, requested=config.text_columns, trained=pre.text_columns, where=reader.name
    )
    has_labels = config.label_column in reader.columns
    output, out_format = _output_target(input_path, output, reader.format)
    added = [PREDICTED_COLUMN, CONFIDENCE_COLUMN]
    if config.probabilities:
        added += [f"prob_{name}" for name in classifier.label_names]
    clash = [c for c in added if c in reader.columns]
    if clash:
        raise InputError(
            f"{reader.name} already has column(s) {', '.join(clash)}; rename them so that the "
            "predictions do not overwrite them."
        )

    stages = StageTimes(overlapped=classifier.overlaps_well)
    evaluation = _Evaluation(classifier.label_names) if has_labels else None
    rows = tokens = empty = 0
    batch_stats = BatchStats()
    label_names = np.asarray(classifier.label_names, dtype=object)

    def prepare(chunk: Chunk, read_s: float) -> _Prepared:
        t0 = time.perf_counter()
        texts = texts_from_rows(
            chunk.rows, text_columns, clean=pre.clean, separator=pre.text_separator
        )
        encoded = classifier.encode(texts)
        return _Prepared(chunk, texts, encoded, read_s, time.perf_counter() - t0)

    with (
        AtomicTableWriter(output, out_format, reader.columns + added) as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsclf-prefetch") as pool,
    ):
        chunks = reader.iter_chunks(config.chunk_rows)
        prepared_chunks = (
            _prefetched(chunks, prepare, pool)
            if classifier.overlaps_well
            else _in_turn(chunks, prepare)
        )
        for prepared in prepared_chunks:
            stages.read_s += prepared.read_s
            stages.tokenize_s += prepared.tokenize_s
            t0 = time.perf_counter()
            probabilities = classifier.probabilities(prepared.encoded, batch_stats)
            stages.inference_s += time.perf_counter() - t0

            t0 = time.perf_counter()
            predicted = probabilities.argmax(axis=1)
            _annotate(
                prepared.chunk.rows, probabilities, predicted, label_names, config.probabilities
            )
            writer.write_rows(prepared.chunk.rows)
            if evaluation is not None:
                values = [row.get(config.label_column) for row in prepared.chunk.rows]
                evaluation.add(values, predicted, prepared.texts)
            stages.write_s += time.perf_counter() - t0

            rows += len(prepared.texts)
            tokens += prepared.encoded.tokens
            empty += sum(1 for t in prepared.texts if not t)
            if progress is not None:
                progress(rows, *reader.progress())
        if rows == 0 and not reader.skipped:
            # Raised inside the writer's block, so no (empty) output is left behind.
            raise InputError(f"{reader.name}: the file has a header but no rows.")
    result = ClassifyResult(
        input=reader.name,
        output=output,
        rows=rows,
        tokens=tokens,
        padded_tokens=batch_stats.padded_tokens,
        wall_s=time.perf_counter() - started,
        stages=stages,
        classifier=classifier.info(),
        empty_text_rows=empty,
        skipped_lines=list(reader.skipped),
        peak_rss_mb=peak_rss_mb(),
        batch_latencies_ms=batch_stats.latencies_ms,
    )
    if evaluation is not None:
        result.metrics, result.confusions, result.labelled_rows = evaluation.finish()
        result.unlabelled_rows = evaluation.unlabelled
        result.unknown_labels = dict(evaluation.unknown.most_common())
    return result


def _annotate(
    rows: list[dict[str, Any]],
    probabilities: np.ndarray,
    predicted: np.ndarray,
    label_names: np.ndarray,
    with_probabilities: bool,
) -> None:
    """Add the prediction columns to each row, in place."""
    names = label_names[predicted]
    confidence = probabilities[np.arange(len(predicted)), predicted]
    for i, row in enumerate(rows):
        row[PREDICTED_COLUMN] = names[i]
        row[CONFIDENCE_COLUMN] = round(float(confidence[i]), 6)
        if with_probabilities:
            for j, name in enumerate(label_names):
                row[f"prob_{name}"] = round(float(probabilities[i, j]), 6)


def _in_turn(
    chunks: Iterator[Chunk], prepare: Callable[[Chunk, float], _Prepared]
) -> Iterator[_Prepared]:
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        if chunk is None:
            return
        yield prepare(chunk, time.perf_counter() - t0)


def _prefetched(
    chunks: Iterator[Chunk], prepare: Callable[[Chunk, float], _Prepared], pool: ThreadPoolExecutor
) -> Iterator[_Prepared]:
    """Read and tokenize chunk n+1 in the background while chunk n is classified."""

    def read_and_prepare() -> _Prepared | None:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        if chunk is None:
            return None
        return prepare(chunk, time.perf_counter() - t0)

    pending = pool.submit(read_and_prepare)
    while True:
        prepared = pending.result()
        if prepared is None:
            return
        pending = pool.submit(read_and_prepare)
        yield prepared


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (Linux/macOS)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except (ImportError, OSError):
        return None
