"""The classify pipeline that the local engine and the Ray engine share: where the output goes
(`output_target`), what it holds (`OutputPlan`: the input's columns and the added ones), the
evaluation that counts mistakes (`Evaluation`), the per-stage clock (`StageTimes`), the counts
(`RunCounts`) and the result (`ClassifyResult`)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.artifacts import PreprocessingConfig
from newsclf.errors import InputError
from newsclf.inference.classifier import BatchStats, ClassifierInfo
from newsclf.inference.config import DEFAULT_LABEL_COLUMN, ClassifyConfig
from newsclf.io import (
    STDIN,
    LabelMatcher,
    SkippedLine,
    choose_text_columns,
    detect_format,
    texts_from_rows,
)
from newsclf.metrics import ClassificationMetrics, Confusion, metrics_from_confusion

PREDICTED_COLUMN = "predicted_label"
CONFIDENCE_COLUMN = "confidence"
# Called after each chunk: (rows done, units done, units total or None). Units are bytes for
# CSV/JSONL, rows for Parquet.
ProgressCallback = Callable[[int, int, "int | None"], None]
_EXTENSION = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}


def default_output_path(input_path: str | Path, fmt: str) -> str:
    """`<input>.predictions.<ext>` beside the input (stdout for stdin)."""
    if str(input_path) == STDIN:
        return STDIN
    path = Path(input_path)
    return str(path.with_name(f"{path.stem}.predictions{_EXTENSION[fmt]}"))


def output_target(
    input_path: str | Path, requested: str | Path | None, input_format: str
) -> tuple[str, str]:
    """(path, format) of the output: `requested` (format by extension, `-` for stdout) or
    `<input>.predictions.<ext>` beside the input; never the input itself.

    Raises:
        InputError: the output would overwrite the input, or its format is unknown.
    """
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


@dataclass(frozen=True)
class OutputPlan:
    """What a classify run reads and writes: the text and label columns it uses, and the
    output's columns (the input's, in order, then the predictions)."""

    input_columns: list[str]
    text_columns: list[str]
    # None: no evaluation (the input has no label column).
    label_column: str | None
    label_names: list[str]
    probabilities: bool
    preprocessing: PreprocessingConfig

    @classmethod
    def for_input(
        cls,
        columns: Sequence[str],
        where: str,
        *,
        label_names: Sequence[str],
        preprocessing: PreprocessingConfig,
        config: ClassifyConfig,
    ) -> OutputPlan:
        """The plan for an input with `columns` (named `where` in errors).

        Raises:
            InputError: a text or label column asked for is missing, or a prediction column
                would overwrite one of the input's.
        """
        columns = list(columns)
        text_columns = choose_text_columns(
            columns,
            requested=config.text_columns,
            trained=preprocessing.text_columns,
            where=where,
        )
        label_column = config.label_column
        if label_column is not None and label_column not in columns:
            raise InputError(
                f"{where}: no label column {label_column!r} (--label-column); columns found: "
                f"{', '.join(columns) or '(none)'}."
            )
        if label_column is None and DEFAULT_LABEL_COLUMN in columns:
            label_column = DEFAULT_LABEL_COLUMN
        plan = cls(
            columns,
            text_columns,
            label_column,
            list(label_names),
            config.probabilities,
            preprocessing,
        )
        clash = [c for c in plan.added_columns if c in columns]
        if clash:
            raise InputError(
                f"{where} already has column(s) {', '.join(clash)}; rename them so that the "
                "predictions do not overwrite them."
            )
        return plan

    @property
    def added_columns(self) -> list[str]:
        added = [PREDICTED_COLUMN, CONFIDENCE_COLUMN]
        if self.probabilities:
            added += [f"prob_{name}" for name in self.label_names]
        return added

    @property
    def output_columns(self) -> list[str]:
        return self.input_columns + self.added_columns

    def texts(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """The model's texts of table rows: the text columns joined, cleaned if trained so."""
        pre = self.preprocessing
        return texts_from_rows(
            rows, self.text_columns, clean=pre.clean, separator=pre.text_separator
        )

    def label_values(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        return [row.get(self.label_column) for row in rows] if self.label_column else []

    def annotate(self, rows: list[dict[str, Any]], probabilities: np.ndarray) -> np.ndarray:
        """Add the prediction columns to each row, in place; returns the predicted classes."""
        predicted = probabilities.argmax(axis=1) if len(rows) else np.empty(0, dtype=np.int64)
        names = np.asarray(self.label_names, dtype=object)[predicted]
        confidence = probabilities[np.arange(len(predicted)), predicted]
        for i, row in enumerate(rows):
            row[PREDICTED_COLUMN] = names[i]
            row[CONFIDENCE_COLUMN] = round(float(confidence[i]), 6)
            if self.probabilities:
                for j, name in enumerate(self.label_names):
                    row[f"prob_{name}"] = round(float(probabilities[i, j]), 6)
        return predicted


class Evaluation:
    """Running evaluation: the confusion counts, the first example text of each kind of
    mistake (by row number), and the labels that could not be used. Partial evaluations
    (one per Ray worker) merge into the same figures as one pass over the file."""

    def __init__(self, label_names: Sequence[str]) -> None:
        self.label_names = list(label_names)
        self.matcher = LabelMatcher(self.label_names)
        k = len(self.label_names)
        self.matrix = np.zeros((k, k), dtype=np.int64)
        self.examples: dict[tuple[int, int], tuple[int, str]] = {}
        self.unknown: Counter[str] = Counter()
        self.unlabelled = 0

    def match(self, values: Sequence[Any]) -> np.ndarray:
        """Class index per label value (`NO_LABEL` where none); counts the unusable ones."""
        truth, unlabelled, unknown = self.matcher.truth(values)
        self.unlabelled += unlabelled
        self.unknown.update(unknown)
        return truth

    def add(
        self, truth: np.ndarray, predicted: np.ndarray, texts: Sequence[str], first_row: int
    ) -> None:
        """Count rows `first_row`, `first_row + 1`, ... with their class (or `NO_LABEL`)."""
        known = truth >= 0
        np.add.at(self.matrix, (truth[known], predicted[known]), 1)
        for i in np.flatnonzero(known & (truth != predicted)):
            key = (int(truth[i]), int(predicted[i]))
            if key not in self.examples:
                self.examples[key] = (first_row + int(i), texts[i])

    def merge(self, other: Evaluation) -> None:
        self.matrix += other.matrix
        for key, example in other.examples.items():
            if key not in self.examples or example[0] < self.examples[key][0]:
                self.examples[key] = example
        self.unknown.update(other.unknown)
        self.unlabelled += other.unlabelled

    @property
    def labelled_rows(self) -> int:
        return int(self.matrix.sum())

    def metrics(self) -> ClassificationMetrics | None:
        return metrics_from_confusion(self.matrix, self.label_names) if self.labelled_rows else None

    def confusions(self, metrics: ClassificationMetrics) -> list[Confusion]:
        """The most frequent mistakes, each with its first example."""
        index = {name: i for i, name in enumerate(self.label_names)}
        return [
            Confusion(
                c.true,
                c.predicted,
                c.count,
                self.examples.get((index[c.true], index[c.predicted]), (0, ""))[1],
            )
            for c in metrics.top_confusions()
        ]


@dataclass
class StageTimes:
    """Seconds spent in each stage. When `overlapped`, reading and tokenizing ran beside
    inference (another thread, or other workers), so the stages add up to more than the wall
    time."""

    read_s: float = 0.0
    tokenize_s: float = 0.0
    inference_s: float = 0.0
    write_s: float = 0.0
    overlapped: bool = False

    @contextlib.contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Add the block's seconds to `stage` ('read', 'tokenize', 'inference', 'write')."""
        started = time.perf_counter()
        try:
            yield
        finally:
            name = f"{stage}_s"
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)

    def timed_reads(self, items: Iterator[Any]) -> Iterator[Any]:
        """The items of `items`, the time to get each added to reading."""
        while True:
            with self.timing("read"):
                item = next(items, None)
            if item is None:
                return
            yield item


@dataclass
class RunCounts:
    """Rows, tokens, padding and batch latencies: summed over chunks, or over Ray workers."""

    rows: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    empty_text_rows: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, texts: Sequence[str], tokens: int, stats: BatchStats) -> None:
        self.rows += len(texts)
        self.tokens += tokens
        self.padded_tokens += stats.padded_tokens
        self.empty_text_rows += sum(1 for t in texts if not t)
        self.latencies_ms += stats.latencies_ms

    def merge(self, other: RunCounts) -> None:
        self.rows += other.rows
        self.tokens += other.tokens
        self.padded_tokens += other.padded_tokens
        self.empty_text_rows += other.empty_text_rows
        self.latencies_ms += other.latencies_ms


@dataclass
class ClassifyResult:
    """What a classify run did: rows, speed, where time went and, with labels, the metrics."""

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

    @classmethod
    def of(
        cls,
        input: str,
        output: str,
        counts: RunCounts,
        stages: StageTimes,
        classifier: ClassifierInfo,
        evaluation: Evaluation | None,
        *,
        skipped: Sequence[SkippedLine],
        wall_s: float,
        **extra: Any,
    ) -> Any:
        """The result of a run from what it gathered (`extra`: a subclass's fields)."""
        result = cls(
            input=input,
            output=output,
            rows=counts.rows,
            tokens=counts.tokens,
            padded_tokens=counts.padded_tokens,
            wall_s=wall_s,
            stages=stages,
            classifier=classifier,
            empty_text_rows=counts.empty_text_rows,
            skipped_lines=list(skipped),
            peak_rss_mb=peak_rss_mb(),
            batch_latencies_ms=counts.latencies_ms,
            **extra,
        )
        if evaluation is not None:
            result.metrics = evaluation.metrics()
            result.confusions = evaluation.confusions(result.metrics) if result.metrics else []
            result.labelled_rows = evaluation.labelled_rows
            result.unlabelled_rows = evaluation.unlabelled
            result.unknown_labels = dict(evaluation.unknown.most_common())
        return result

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
