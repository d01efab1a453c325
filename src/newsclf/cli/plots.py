"""A confusion-matrix PNG for `--plots` (matplotlib, the `plots` extra)."""

from __future__ import annotations

import os
from pathlib import Path

from newsclf.errors import InputError
from newsclf.io import atomic_file
from newsclf.metrics import ClassificationMetrics

PLOT_FILE = "confusion_matrix.png"


def require_matplotlib() -> None:
    """Raises:
    InputError: matplotlib is not installed (checked before a run, not after it)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plots needs matplotlib: pip install 'newsclf[plots]'.")


def write_confusion_png(folder: Path, metrics: ClassificationMetrics) -> Path:
    """A coloured confusion matrix (counts; rows true, columns predicted) as PNG in `folder`.

    Raises:
        InputError: matplotlib is not installed.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = metrics.labels
    matrix = np.asarray(metrics.confusion_matrix)
    size = max(4.0, 0.9 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {100 * metrics.accuracy:.2f}%, macro-F1 {100 * metrics.f1_macro:.2f}%")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (t, p), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(p, t, f"{count:,}", ha="center", va="center", color=color)
    fig.tight_layout()
    path = Path(folder) / PLOT_FILE
    with atomic_file(path) as (fd, _), os.fdopen(fd, "wb") as handle:
        fig.savefig(handle, dpi=120, format="png")
    plt.close(fig)
    return path
