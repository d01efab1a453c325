"""Files a report is written to: JSON (atomically) and a confusion-matrix PNG."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from newsclf.tables import default_permissions


def write_json_atomic(path: Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    default_permissions(Path(tmp))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_confusion_png(folder: Path, metrics: dict[str, Any]) -> Path:
    """A coloured confusion matrix (counts, rows true, columns predicted) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = metrics["labels"]
    matrix = np.asarray(metrics["confusion_matrix"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    size = max(4.0, 0.9 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"accuracy {100 * metrics['accuracy']:.2f}%, macro-F1 {100 * metrics['f1_macro']:.2f}%"
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (t, p), count in np.ndenumerate(matrix):
        ax.text(
            p,
            t,
            f"{count:,}",
            ha="center",
            va="center",
            color="white" if count > threshold else "black",
        )
    fig.tight_layout()
    path = folder / "confusion_matrix.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
