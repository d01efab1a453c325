"""Classification metrics, computed one way for training, export and classify."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from newsclf.errors import InputError

# Equal-width bins of the top-class confidence: the expected calibration error (export) and
# the reliability diagram (classify) use the same ones.
CALIBRATION_BINS = 15


def calibration_bins(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[float] | np.ndarray,
    bins: int = CALIBRATION_BINS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, summed confidence, correct rows) per equal-width confidence bin: bin i holds the
    confidences in (i/bins, (i+1)/bins], bin 0 also 0. Counts of several parts add up."""
    confidence = np.asarray(confidence, dtype=np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=bins)
    return rows, confidence_sum, correct_sum


def binned_calibration_error(
    rows: np.ndarray, confidence_sum: np.ndarray, correct_sum: np.ndarray
) -> float:
    """Expected calibration error from `calibration_bins`' counts: the mean over rows of
    |accuracy - mean confidence| of their bin; 0.0 for no rows."""
    total = int(np.sum(rows))
    if not total:
        return 0.0
    return float(np.abs(np.asarray(correct_sum) - np.asarray(confidence_sum)).sum() / total)


def percent(value: float | None, missing: str = "-") -> str:
    """0.9134 -> '91.34%'; `missing` for None."""
    return missing if value is None else f"{100 * value:.2f}%"


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ConfusionExample:
    """A row of a kind of mistake: its data row number (1 = the first row) and its text."""

    row: int
    text: str


@dataclass(frozen=True)
class Confusion:
    """A kind of mistake: how often `true` was predicted as `predicted`, with an example (the
    first by row number) and, where kept, the first few (`examples`)."""

    true: str
    predicted: str
    count: int
    example: str = ""
    examples: tuple[ConfusionExample, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClassificationMetrics:
    """accuracy, macro/weighted F1, per-class scores and the confusion matrix (rows: true
    label, columns: predicted) over every class of the model."""

    accuracy: float
    f1_macro: float
    f1_weighted: float
    per_class: dict[str, ClassScores]
    labels: list[str]
    confusion_matrix: list[list[int]]
    rows: int

    def top_confusions(self, limit: int = 5) -> list[Confusion]:
        """The most frequent mistakes, largest first."""
        pairs = [
            Confusion(self.labels[t], self.labels[p], int(count))
            for t, row in enumerate(self.confusion_matrix)
            for p, count in enumerate(row)
            if t != p and count
        ]
        return sorted(pairs, key=lambda c: -c.count)[:limit]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationMetrics:
        return cls(
            **{k: v for k, v in data.items() if k != "per_class"},
            per_class={name: ClassScores(**s) for name, s in data["per_class"].items()},
        )


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
) -> ClassificationMetrics:
    """Metrics of predictions `y_pred` against `y_true` (class indices into `label_names`).

    Raises:
        InputError: there are no rows.
    """
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        raise InputError("No labelled rows to compute metrics on.")
    labels = list(range(len(label_names)))
    counts = confusion_matrix(y_true, np.asarray(y_pred), labels=labels)
    return metrics_from_confusion(counts, label_names)


def metrics_from_confusion(
    matrix: Sequence[Sequence[int]] | np.ndarray, label_names: Sequence[str]
) -> ClassificationMetrics:
    """Metrics of the rows whose (true, predicted) pairs are counted in `matrix` (rows: true
    class, columns: predicted). `classification_metrics` goes through here too, so that engines
    whose workers send counts, not rows, report the very same figures.

    Args:
        matrix: square counts, one row and column per class of `label_names`.
        label_names: the model's classes.

    Returns:
        `ClassificationMetrics` over every class.

    Raises:
        InputError: the matrix counts no rows or does not match the classes.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(label_names)
    if counts.shape != (k, k):
        raise InputError(f"A confusion matrix of {k} classes is {k}x{k}, not {counts.shape}.")
    total = int(counts.sum())
    if total == 0:
        raise InputError("No labelled rows to compute metrics on.")
    # One weighted "row" per (true, predicted) pair: sklearn's figures, from counts.
    y_true, y_pred = (a.ravel() for a in np.indices((k, k)))
    weights = counts.ravel().astype(np.float64)
    labels = list(range(k))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, sample_weight=weights, zero_division=0
    )

    def f1_average(average: str) -> float:
        return float(
            f1_score(
                y_true,
                y_pred,
                labels=labels,
                average=average,
                sample_weight=weights,
                zero_division=0,
            )
        )

    support = counts.sum(axis=1)
    return ClassificationMetrics(
        accuracy=float(np.trace(counts) / total),
        f1_macro=f1_average("macro"),
        f1_weighted=f1_average("weighted"),
        per_class={
            name: ClassScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, name in enumerate(label_names)
        },
        labels=list(label_names),
        confusion_matrix=counts.tolist(),
        rows=total,
    )
