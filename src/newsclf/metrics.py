"""Classification metrics, computed one way for training, export and classify."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """accuracy, macro/weighted F1, per-class precision/recall/F1/support and the confusion
    matrix (rows: true label, columns: predicted), over all `label_names`."""
    labels = list(range(len(label_names)))
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("No labelled rows to compute metrics on.")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "f1_weighted": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "rows": len(y_true),
    }


def top_confusions(
    confusion: Sequence[Sequence[int]], label_names: Sequence[str], limit: int = 5
) -> list[tuple[str, str, int]]:
    """The most frequent (true, predicted, count) mistakes, largest first."""
    pairs = [
        (label_names[t], label_names[p], int(count))
        for t, row in enumerate(confusion)
        for p, count in enumerate(row)
        if t != p and count
    ]
    return sorted(pairs, key=lambda x: -x[2])[:limit]
