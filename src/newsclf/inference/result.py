"""What a classify run did, as one typed result: rows, speed, the stages' busy time, the
evaluation's figures, and the run's summary lines that the terminal and the HTML report show
(the JSON report gives the same figures as numbers)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from newsclf.inference.classifier import BatchStats, ClassifierInfo
from newsclf.inference.evaluation import (
    HISTOGRAM_BINS,
    CoveragePoint,
    Evaluation,
    ReliabilityBin,
)
from newsclf.inference.prepare import PreparedChunk
from newsclf.io import SkippedLine
from newsclf.metrics import ClassificationMetrics, Confusion

# Called after each chunk: (rows done, units done, units total or None). Units are bytes for
# CSV/JSONL, rows for Parquet.
ProgressCallback = Callable[[int, int, "int | None"], None]
# The stages of a run, in the order rows go through them.
STAGES = ("read", "prepare", "inference", "write")


@dataclass
class StageTimes:
    """Busy seconds of each stage and the workers each had. The stages run at the same time
    (reading, preparing -- cleaning and tokenizing -- inference and writing each in threads or
    processes of their own), so the stage whose busy share (busy seconds over the seconds its
    workers had) is near 100% is the one that held the run back. `prepare_pool` says where
    preparing ran: "in turn" (by the inference thread), "threads", "processes" or "ray"."""

    read_s: float = 0.0
    prepare_s: float = 0.0
    inference_s: float = 0.0
    write_s: float = 0.0
    prepare_pool: str = "in turn"
    prepare_workers: int = 1
    inference_workers: int = 1

    @contextlib.contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Add the block's seconds to `stage` (one of `STAGES`)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            name = f"{stage}_s"
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)

    def seconds(self) -> dict[str, float]:
        return {stage: getattr(self, f"{stage}_s") for stage in STAGES}

    def busy_shares(self, wall_s: float) -> dict[str, float]:
        """Each stage's busy seconds over the seconds its workers had (0 to 1)."""
        workers = {"prepare": self.prepare_workers, "inference": self.inference_workers}
        return {
            stage: min(1.0, seconds / (wall_s * workers.get(stage, 1))) if wall_s > 0 else 0.0
            for stage, seconds in self.seconds().items()
        }


@dataclass
class ChunkFigures:
    """What preparing and inference measured of one chunk of rows."""

    tokens: int
    empty_rows: int
    padded_tokens: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    prepare_s: float = 0.0
    inference_s: float = 0.0

    @classmethod
    def of(cls, prepared: PreparedChunk, stats: BatchStats, inference_s: float) -> ChunkFigures:
        """The figures of a chunk prepared (`prepared`) and run (`stats`, in `inference_s`)."""
        return cls(
            tokens=prepared.encoded.tokens,
            empty_rows=prepared.empty_rows,
            padded_tokens=stats.padded_tokens,
            latencies_ms=stats.latencies_ms,
            prepare_s=prepared.busy_s,
            inference_s=inference_s,
        )


@dataclass
class RunCounts:
    """Rows, tokens, padding and batch latencies: summed over chunks, or over Ray workers."""

    rows: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    empty_text_rows: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, rows: int, chunk: ChunkFigures) -> None:
        self.rows += rows
        self.tokens += chunk.tokens
        self.padded_tokens += chunk.padded_tokens
        self.empty_text_rows += chunk.empty_rows
        self.latencies_ms += chunk.latencies_ms


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
            "tokenizer": info.tokenizer,
            "throughput_rows_per_s": round(self.rows_per_s, 2),
            "throughput_tokens_per_s": round(self.tokens_per_s, 1),
            "tokens": self.tokens,
            "padding_overhead": round(self.padding_overhead, 4),
            "wall_time_s": round(self.wall_s, 3),
            "stage_seconds": {f"{k}_s": round(v, 3) for k, v in self.stages.seconds().items()},
            "stage_busy_share": {
                k: round(v, 3) for k, v in self.stages.busy_shares(self.wall_s).items()
            },
            "prepare_pool": self.stages.prepare_pool,
            "prepare_workers": self.stages.prepare_workers,
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

    def summary_lines(self) -> list[tuple[str, str]]:
        """The run as (name, text) lines: what the terminal's summary and the HTML report's run
        table show."""
        info = self.classifier
        batching = f"{info.batch_size} rows"
        if info.max_batch_tokens:
            batching += f" / {info.max_batch_tokens:,} tokens"
        stages = self.stages
        pool = stages.prepare_pool
        if pool != "in turn":
            pool = f"{stages.prepare_workers} {pool}"
        shares = self.stages.busy_shares(self.wall_s)
        busy = ", ".join(
            f"{stage} {seconds:.2f} s {100 * shares[stage]:.0f}%"
            for stage, seconds in stages.seconds().items()
        )
        lines = [
            ("input", f"{self.input}  ->  {self.output}"),
            ("model", info.model),
            ("variant", f"{info.variant} on {info.provider} (device {info.device})"),
            ("batching", f"{batching}, {info.threads} inference threads; preparing: {pool}"),
            (
                "rows",
                f"{self.rows:,} in {self.wall_s:.2f} s: {self.rows_per_s:,.1f} rows/s, "
                f"{self.tokens_per_s:,.0f} tokens/s, padding +{100 * self.padding_overhead:.1f}%",
            ),
            ("stages busy", busy),
        ]
        if info.tokenizer:
            note = f" ({info.tokenizer_note})" if info.tokenizer_note else ""
            lines.insert(4, ("tokenizer", info.tokenizer + note))
        if self.peak_rss_mb:
            lines.append(("peak memory", f"{self.peak_rss_mb:,.0f} MB"))
        lines.append(
            (
                "confidence",
                f"calibrated, temperature {info.temperature:.3f}"
                if info.temperature != 1.0
                else "raw softmax (uncalibrated export, or --no-calibrate)",
            )
        )
        if self.min_confidence is not None:
            share = self.review_rows / self.rows if self.rows else 0.0
            lines.append(
                (
                    "review",
                    f"{self.review_rows:,} rows ({100 * share:.1f}%) under confidence "
                    f"{self.min_confidence:g}: needs_review = true",
                )
            )
        return lines

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
