"""The classify pipeline that the local engine and the Ray engine share: where the output goes
(`output_target`, `review_target`), what it holds (`OutputPlan`: the input's columns and the
added ones, the review flag among them), the evaluation that counts mistakes, confidences and
the coverage a review threshold buys (`Evaluation`), the per-stage clock (`StageTimes`), the
counts (`RunCounts`) and the result (`ClassifyResult`)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
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
from newsclf.metrics import (
    CALIBRATION_BINS,
    ClassificationMetrics,
    Confusion,
    ConfusionExample,
    binned_calibration_error,
    calibration_bins,
    metrics_from_confusion,
)

PREDICTED_COLUMN = "predicted_label"
CONFIDENCE_COLUMN = "confidence"
# With --min-confidence P: true where the row's confidence is under P.
NEEDS_REVIEW_COLUMN = "needs_review"
# Decimals of the confidence and probability columns. Review flags, coverage and histograms
# are computed from the confidence as written, so they can be recomputed from the output.
DECIMALS = 6
# Confidence thresholds of the coverage / accuracy table (the user's --min-confidence joins).
COVERAGE_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
# Equal-width bins over [0, 1] of the confidence histogram (every row, labelled or not).
HISTOGRAM_BINS = 20
# Example texts kept per kind of mistake (the first ones by row number).
EXAMPLES_PER_PAIR = 3
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
    elif Path(requested).is_dir():
        raise InputError(f"--output {requested} is a folder; give a file path to write to.")
    else:
        output, fmt = str(requested), detect_format(requested, None)
    if (
        STDIN not in (output, str(input_path))
        and Path(output).resolve() == Path(input_path).resolve()
    ):
        raise InputError(f"--output {output} is the input file; choose another path.")
    return output, fmt


def review_target(
    review_output: str | Path | None,
    min_confidence: float | None,
    inputs: Sequence[str | Path],
    output: str,
) -> tuple[str, str] | None:
    """(path, format) of the review file (the rows under --min-confidence), or None.

    Raises:
        InputError: it is asked for without --min-confidence, it is stdout, a folder, an input
            or the output, or its format is unknown.
    """
    if review_output is None:
        return None
    if min_confidence is None:
        raise InputError(
            "--review-output holds the rows under --min-confidence; give --min-confidence P too."
        )
    if str(review_output) == STDIN:
        raise InputError("--review-output needs a file path (stdout is for --output).")
    if Path(review_output).is_dir():
        raise InputError(f"--review-output {review_output} is a folder; give a file path.")
    path = Path(review_output).resolve()
    for other in [*inputs, output]:
        if str(other) != STDIN and path == Path(other).resolve():
            raise InputError(
                f"--review-output {review_output} is also {other}; choose another path."
            )
    return str(review_output), detect_format(review_output, None)


def coverage_thresholds(min_confidence: float | None) -> tuple[float, ...]:
    """The coverage table's thresholds: `COVERAGE_THRESHOLDS` and the user's, ascending."""
    chosen = () if min_confidence is None else (float(min_confidence),)
    return tuple(sorted(set(COVERAGE_THRESHOLDS) | set(chosen)))


@dataclass(frozen=True)
class RowPredictions:
    """What the prediction columns of a batch of rows hold: the class index, the confidence as
    written (`DECIMALS` decimals) and whether the row needs review (all False without a
    threshold)."""

    predicted: np.ndarray
    confidence: np.ndarray
    needs_review: np.ndarray


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
    # --min-confidence: rows under it get needs_review = true; None: no such column.
    min_confidence: float | None = None

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
            config.min_confidence,
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
        if self.min_confidence is not None:
            added.append(NEEDS_REVIEW_COLUMN)
        if self.probabilities:
            added += [f"prob_{name}" for name in self.label_names]
        return added

    @property
    def output_columns(self) -> list[str]:
        return self.input_columns + self.added_columns

    def output_schema(self, input_schema: Any) -> Any:
        """The output's Arrow schema: the input's (`TableReader.schema()`), then the
        predictions' (class name as string, confidence and probabilities as float64, the
        review flag as bool)."""
        import pyarrow as pa

        types = {PREDICTED_COLUMN: pa.string(), NEEDS_REVIEW_COLUMN: pa.bool_()}
        added = [pa.field(name, types.get(name, pa.float64())) for name in self.added_columns]
        return pa.schema([*input_schema, *added])

    def texts(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """The model's texts of table rows: the text columns joined, cleaned if trained so."""
        pre = self.preprocessing
        return texts_from_rows(
            rows, self.text_columns, clean=pre.clean, separator=pre.text_separator
        )

    def label_values(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        return [row.get(self.label_column) for row in rows] if self.label_column else []

    def predictions(self, probabilities: np.ndarray) -> RowPredictions:
        """The predicted class, the confidence as written and the review flag of each row."""
        rows = len(probabilities)
        predicted = probabilities.argmax(axis=1) if rows else np.empty(0, dtype=np.int64)
        top = probabilities[np.arange(rows), predicted]
        confidence = np.fromiter(
            (round(float(c), DECIMALS) for c in top), dtype=np.float64, count=rows
        )
        if self.min_confidence is None:
            review = np.zeros(rows, dtype=bool)
        else:
            review = confidence < self.min_confidence
        return RowPredictions(predicted, confidence, review)

    def annotate(self, rows: list[dict[str, Any]], probabilities: np.ndarray) -> RowPredictions:
        """Add the prediction columns to each row, in place; returns what they hold."""
        result = self.predictions(probabilities)
        names = np.asarray(self.label_names, dtype=object)[result.predicted]
        review = self.min_confidence is not None
        for i, row in enumerate(rows):
            row[PREDICTED_COLUMN] = names[i]
            row[CONFIDENCE_COLUMN] = float(result.confidence[i])
            if review:
                row[NEEDS_REVIEW_COLUMN] = bool(result.needs_review[i])
            if self.probabilities:
                for j, name in enumerate(self.label_names):
                    row[f"prob_{name}"] = round(float(probabilities[i, j]), DECIMALS)
        return result


@dataclass(frozen=True)
class CoveragePoint:
    """At confidence >= `threshold`: the labelled rows accepted, their share and accuracy."""

    threshold: float
    rows: int
    coverage: float
    accuracy: float | None
    # The user's --min-confidence.
    chosen: bool = False


@dataclass(frozen=True)
class ReliabilityBin:
    """Labelled rows whose confidence is in (low, high]: how many, their mean confidence and
    their accuracy (a calibrated model has the two equal)."""

    low: float
    high: float
    rows: int
    confidence: float | None
    accuracy: float | None


class Evaluation:
    """Running figures of a classify run, from counts only (memory does not grow with rows).

    Over every row: the predicted-class counts, the confidence histogram and the rows under
    the review threshold. Over the labelled rows: the confusion counts, the first few example
    texts of each kind of mistake (by row number), the accepted and correct rows at each
    coverage threshold and the reliability bins; and the labels that could not be used.
    Partial evaluations (one per Ray worker) merge into the same figures as one pass over the
    file.
    """

    def __init__(self, label_names: Sequence[str], min_confidence: float | None = None) -> None:
        self.label_names = list(label_names)
        self.matcher = LabelMatcher(self.label_names)
        k = len(self.label_names)
        self.matrix = np.zeros((k, k), dtype=np.int64)
        self.examples: dict[tuple[int, int], list[tuple[int, str]]] = {}
        self.unknown: Counter[str] = Counter()
        self.unlabelled = 0
        self.min_confidence = min_confidence
        self.thresholds = coverage_thresholds(min_confidence)
        self.predicted_counts = np.zeros(k, dtype=np.int64)
        self.histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.review_rows = 0
        self.accepted = np.zeros(len(self.thresholds), dtype=np.int64)
        self.accepted_correct = np.zeros(len(self.thresholds), dtype=np.int64)
        self.bin_rows = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        self.bin_confidence = np.zeros(CALIBRATION_BINS, dtype=np.float64)
        self.bin_correct = np.zeros(CALIBRATION_BINS, dtype=np.float64)

    def match(self, values: Sequence[Any]) -> np.ndarray:
        """Class index per label value (`NO_LABEL` where none); counts the unusable ones."""
        truth, unlabelled, unknown = self.matcher.truth(values)
        self.unlabelled += unlabelled
        self.unknown.update(unknown)
        return truth

    def add(
        self,
        truth: np.ndarray,
        predicted: np.ndarray,
        confidence: np.ndarray,
        texts: Sequence[str],
        first_row: int,
    ) -> None:
        """Count rows `first_row`, `first_row + 1`, ... with their class (or `NO_LABEL`), the
        predicted class and its confidence (as written: `RowPredictions.confidence`)."""
        confidence = np.asarray(confidence, dtype=np.float64)
        k = len(self.label_names)
        self.predicted_counts += np.bincount(predicted, minlength=k)[:k].astype(np.int64)
        bins = np.minimum(np.floor(confidence * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)
        self.histogram += np.bincount(bins.astype(np.int64), minlength=HISTOGRAM_BINS)
        if self.min_confidence is not None:
            self.review_rows += int(np.sum(confidence < self.min_confidence))
        known = truth >= 0
        np.add.at(self.matrix, (truth[known], predicted[known]), 1)
        right = (truth == predicted)[known]
        known_confidence = confidence[known]
        for j, threshold in enumerate(self.thresholds):
            accepted = known_confidence >= threshold
            self.accepted[j] += int(accepted.sum())
            self.accepted_correct[j] += int((accepted & right).sum())
        rows, confidence_sum, correct_sum = calibration_bins(known_confidence, right)
        self.bin_rows += rows
        self.bin_confidence += confidence_sum
        self.bin_correct += correct_sum
        for i in np.flatnonzero(known & (truth != predicted)):
            kept = self.examples.setdefault((int(truth[i]), int(predicted[i])), [])
            if len(kept) < EXAMPLES_PER_PAIR:
                kept.append((first_row + int(i), texts[i]))

    def merge(self, other: Evaluation) -> None:
        """Add another part's figures (the same classes and thresholds)."""
        if (other.label_names, other.min_confidence) != (self.label_names, self.min_confidence):
            raise ValueError("Evaluations of different classes or review thresholds do not merge.")
        self.matrix += other.matrix
        for key, examples in other.examples.items():
            merged = sorted([*self.examples.get(key, []), *examples], key=lambda e: e[0])
            self.examples[key] = merged[:EXAMPLES_PER_PAIR]
        self.unknown.update(other.unknown)
        self.unlabelled += other.unlabelled
        self.predicted_counts += other.predicted_counts
        self.histogram += other.histogram
        self.review_rows += other.review_rows
        self.accepted += other.accepted
        self.accepted_correct += other.accepted_correct
        self.bin_rows += other.bin_rows
        self.bin_confidence += other.bin_confidence
        self.bin_correct += other.bin_correct

    @property
    def labelled_rows(self) -> int:
        return int(self.matrix.sum())

    def metrics(self) -> ClassificationMetrics | None:
        return metrics_from_confusion(self.matrix, self.label_names) if self.labelled_rows else None

    def confusions(self, metrics: ClassificationMetrics) -> list[Confusion]:
        """The most frequent mistakes, each with its first examples (by row number)."""
        index = {name: i for i, name in enumerate(self.label_names)}
        confusions = []
        for c in metrics.top_confusions():
            kept = sorted(self.examples.get((index[c.true], index[c.predicted]), []))
            examples = tuple(ConfusionExample(row + 1, text) for row, text in kept)
            first = examples[0].text if examples else ""
            confusions.append(Confusion(c.true, c.predicted, c.count, first, examples))
        return confusions

    def coverage(self) -> list[CoveragePoint]:
        """For each threshold: the labelled rows with confidence >= it, their share of the
        labelled rows and their accuracy."""
        total = self.labelled_rows
        return [
            CoveragePoint(
                threshold=threshold,
                rows=int(accepted),
                coverage=float(accepted / total) if total else 0.0,
                accuracy=float(correct / accepted) if accepted else None,
                chosen=threshold == self.min_confidence,
            )
            for threshold, accepted, correct in zip(
                self.thresholds, self.accepted, self.accepted_correct, strict=True
            )
        ]

    def reliability(self) -> list[ReliabilityBin]:
        """The reliability diagram's bins (`CALIBRATION_BINS` equal-width, labelled rows)."""
        return [
            ReliabilityBin(
                low=i / CALIBRATION_BINS,
                high=(i + 1) / CALIBRATION_BINS,
                rows=int(rows),
                confidence=float(self.bin_confidence[i] / rows) if rows else None,
                accuracy=float(self.bin_correct[i] / rows) if rows else None,
            )
            for i, rows in enumerate(self.bin_rows)
        ]

    def calibration_error(self) -> float | None:
        """The expected calibration error over the labelled rows (None without any)."""
        if not self.labelled_rows:
            return None
        return binned_calibration_error(self.bin_rows, self.bin_confidence, self.bin_correct)


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
    # Every row: predictions per class, and the confidence histogram (HISTOGRAM_BINS bins).
    predicted_counts: dict[str, int] = field(default_factory=dict)
    confidence_histogram: list[int] = field(default_factory=list)
    # --min-confidence, the rows under it, and where they were written (--review-output).
    min_confidence: float | None = None
    review_rows: int = 0
    review_output: str | None = None
    # Labelled rows: the coverage / accuracy trade-off, the reliability bins and the ECE.
    coverage: list[CoveragePoint] = field(default_factory=list)
    reliability: list[ReliabilityBin] = field(default_factory=list)
    calibration_error: float | None = None

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
        """The result of a run from what it gathered (`extra`: a subclass's fields, and
        `review_output`). `evaluation` holds the metrics when the input had labels."""
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
            result.predicted_counts = {
                name: int(n)
                for name, n in zip(evaluation.label_names, evaluation.predicted_counts, strict=True)
            }
            result.confidence_histogram = [int(n) for n in evaluation.histogram]
            result.min_confidence = evaluation.min_confidence
            result.review_rows = evaluation.review_rows
            if result.metrics is not None:
                result.coverage = evaluation.coverage()
                result.reliability = evaluation.reliability()
                result.calibration_error = evaluation.calibration_error()
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
            # What the logits were divided by (1.0: an uncalibrated export, or --no-calibrate).
            "calibration_temperature": info.temperature,
            "min_confidence": self.min_confidence,
            "review_rows": self.review_rows if self.min_confidence is not None else None,
            "review_output": self.review_output,
            "predicted_counts": self.predicted_counts,
            "confidence_histogram": {
                "bin_edges": histogram_edges(),
                "counts": self.confidence_histogram,
            },
        }
        if self.metrics is not None:
            report |= {
                "labelled_rows": self.labelled_rows,
                "unlabelled_rows": self.unlabelled_rows,
                "unknown_labels": self.unknown_labels,
                **{k: v for k, v in self.metrics.to_dict().items() if k != "rows"},
                "top_confusions": [c.to_dict() for c in self.confusions],
                "coverage": [asdict(point) for point in self.coverage],
                "expected_calibration_error": self.calibration_error,
                "reliability": [asdict(b) for b in self.reliability],
            }
        return report

    @property
    def chosen_coverage(self) -> CoveragePoint | None:
        """The coverage at the user's --min-confidence (labelled rows only)."""
        return next((point for point in self.coverage if point.chosen), None)


def histogram_edges() -> list[float]:
    """The confidence histogram's bin edges, HISTOGRAM_BINS + 1 of them from 0 to 1."""
    return [round(i / HISTOGRAM_BINS, 4) for i in range(HISTOGRAM_BINS + 1)]


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
