"""The evaluation of a classify run, from counts only (memory does not grow with rows): the
confusion matrix and per-class figures, the first examples of each kind of mistake, the
confidence histogram, the coverage a review threshold buys and the reliability bins. Partial
evaluations (one per Ray worker, or per part file) merge into the figures of one pass."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from newsclf.io import LabelMatcher, is_json_field
from newsclf.metrics import (
    CALIBRATION_BINS,
    ClassificationMetrics,
    Confusion,
    ConfusionExample,
    binned_calibration_error,
    calibration_bins,
    metrics_from_confusion,
)

# Confidence thresholds of the coverage / accuracy table (the user's --min-confidence joins).
COVERAGE_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
# Equal-width bins over [0, 1] of the confidence histogram (every row, labelled or not).
HISTOGRAM_BINS = 20
# Example texts kept per kind of mistake (the first ones by row number).
EXAMPLES_PER_PAIR = 3
# The texts of some rows of a batch, by index: asked only for the examples kept.
TextsOf = Callable[[np.ndarray], list[str]]


def coverage_thresholds(min_confidence: float | None) -> tuple[float, ...]:
    """The coverage table's thresholds: `COVERAGE_THRESHOLDS` and the user's, ascending."""
    chosen = () if min_confidence is None else (float(min_confidence),)
    return tuple(sorted(set(COVERAGE_THRESHOLDS) | set(chosen)))


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

    def match(self, column: Any, field: Any) -> np.ndarray:
        """Class index per value of a label column (`NO_LABEL` where none), column-wise;
        counts the unusable ones."""
        truth, unlabelled, unknown = self.matcher.truth_of(column, decode=is_json_field(field))
        self.unlabelled += unlabelled
        self.unknown.update(unknown)
        return truth

    def add(
        self,
        truth: np.ndarray,
        predicted: np.ndarray,
        confidence: np.ndarray,
        texts_of: TextsOf,
        first_row: int,
    ) -> None:
        """Count rows `first_row`, `first_row + 1`, ... with their class (or `NO_LABEL`), the
        predicted class and its confidence (as written: `RowPredictions.confidence`);
        `texts_of` gives the model texts of the mistakes kept as examples."""
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
        wanted = []
        counts = {key: len(kept) for key, kept in self.examples.items()}
        for i in np.flatnonzero(known & (truth != predicted)):
            key = (int(truth[i]), int(predicted[i]))
            if counts.get(key, 0) < EXAMPLES_PER_PAIR:
                counts[key] = counts.get(key, 0) + 1
                wanted.append(i)
        if wanted:
            texts = texts_of(np.asarray(wanted))
            for i, text in zip(wanted, texts, strict=True):
                key = (int(truth[i]), int(predicted[i]))
                self.examples.setdefault(key, []).append((first_row + int(i), text))

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

    # Its counts as JSON-able values (a Ray worker's part, sent to the driver), and back.
    _ARRAYS = (
        "matrix",
        "predicted_counts",
        "histogram",
        "accepted",
        "accepted_correct",
        "bin_rows",
        "bin_confidence",
        "bin_correct",
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_names": self.label_names,
            "min_confidence": self.min_confidence,
            "examples": [[*key, kept] for key, kept in self.examples.items()],
            "unknown": dict(self.unknown),
            "unlabelled": self.unlabelled,
            "review_rows": self.review_rows,
            **{name: getattr(self, name).tolist() for name in self._ARRAYS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        evaluation = cls(data["label_names"], data["min_confidence"])
        evaluation.examples = {
            (true, predicted): [(row, text) for row, text in kept]
            for true, predicted, kept in data["examples"]
        }
        evaluation.unknown = Counter(data["unknown"])
        evaluation.unlabelled = data["unlabelled"]
        evaluation.review_rows = data["review_rows"]
        for name in cls._ARRAYS:
            current = getattr(evaluation, name)
            setattr(evaluation, name, np.asarray(data[name], dtype=current.dtype))
        return evaluation

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
