"""Charts (matplotlib, the `plots` extra): the confusion-matrix PNG of `--plots`, and the PNG
charts the HTML report (`--html`) embeds: confusion heat map, confidence histogram, reliability
diagram, coverage / accuracy curve, predicted-class counts."""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsclf.errors import InputError
from newsclf.io import atomic_file
from newsclf.metrics import ClassificationMetrics

if TYPE_CHECKING:
    from newsclf.inference import CoveragePoint, ReliabilityBin

PLOT_FILE = "confusion_matrix.png"
# Colours of the charts (the HTML report's palette).
BLUE, ORANGE, GREY = "#2b6cb0", "#dd6b20", "#718096"


def require_matplotlib(option: str = "--plots") -> None:
    """Raises:
    InputError: matplotlib is not installed (checked before a run, not after it)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(f"{option} needs matplotlib: pip install 'newsclf[plots]'.")


def _label(text: str) -> str:
    """A user's class name as matplotlib shows it literally ("$" would start mathtext)."""
    return str(text).replace("$", r"\$")


def _pyplot() -> Any:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(metrics: ClassificationMetrics, *, title: bool = True) -> Any:
    """A coloured confusion matrix (counts; rows true, columns predicted)."""
    plt = _pyplot()
    import numpy as np

    labels = [_label(name) for name in metrics.labels]
    matrix = np.asarray(metrics.confusion_matrix)
    size = max(4.0, 0.9 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(
            f"accuracy {100 * metrics.accuracy:.2f}%, macro-F1 {100 * metrics.f1_macro:.2f}%"
        )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (t, p), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(p, t, f"{count:,}", ha="center", va="center", color=color)
    fig.tight_layout()
    return fig


def write_confusion_png(folder: Path, metrics: ClassificationMetrics) -> Path:
    """A coloured confusion matrix (counts; rows true, columns predicted) as PNG in `folder`.

    Raises:
        InputError: matplotlib is not installed.
    """
    fig = confusion_figure(metrics)
    path = Path(folder) / PLOT_FILE
    with atomic_file(path) as (fd, _), os.fdopen(fd, "wb") as handle:
        fig.savefig(handle, dpi=120, format="png")
    _pyplot().close(fig)
    return path


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    _pyplot().close(fig)
    return buffer.getvalue()


def histogram_figure(
    edges: Sequence[float], counts: Sequence[int], min_confidence: float | None
) -> Any:
    """Rows per confidence bin; the review threshold as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    widths = [high - low for low, high in itertools.pairwise(edges)]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=BLUE, edgecolor="white")
    if min_confidence is not None:
        ax.axvline(min_confidence, color=ORANGE, linestyle="--", label=f"P = {min_confidence:g}")
        ax.legend(loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("rows")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def reliability_figure(bins: Sequence[ReliabilityBin], ece: float | None) -> Any:
    """Accuracy against mean confidence per bin, beside the diagonal of perfect calibration;
    the rows per bin below."""
    plt = _pyplot()
    fig, (ax, rows_ax) = plt.subplots(
        2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = [b for b in bins if b.rows]
    width = bins[0].high - bins[0].low if bins else 0.1
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", label="perfectly calibrated")
    ax.bar(
        [b.low for b in filled],
        [b.accuracy for b in filled],
        width=width,
        align="edge",
        color=BLUE,
        edgecolor="white",
        label="accuracy",
    )
    ax.plot(
        [b.confidence for b in filled],
        [b.accuracy for b in filled],
        "o",
        color=ORANGE,
        label="accuracy at the bin's mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    if ece is not None:
        ax.set_title(f"expected calibration error {100 * ece:.2f}%")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    rows_ax.bar(
        [b.low for b in bins], [b.rows for b in bins], width=width, align="edge", color=GREY
    )
    rows_ax.set_xlabel("confidence")
    rows_ax.set_ylabel("rows")
    fig.tight_layout()
    return fig


def coverage_figure(points: Sequence[CoveragePoint]) -> Any:
    """Share of rows accepted and their accuracy at each confidence threshold; the user's
    threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    thresholds = [p.threshold for p in points]
    ax.plot(thresholds, [p.coverage for p in points], "o-", color=BLUE, label="rows accepted")
    shown = [p for p in points if p.accuracy is not None]
    ax.plot(
        [p.threshold for p in shown],
        [p.accuracy for p in shown],
        "s-",
        color=ORANGE,
        label="accuracy of accepted rows",
    )
    for point in points:
        if point.chosen:
            ax.axvline(point.threshold, color=GREY, linestyle="--")
            ax.annotate(
                f"P = {point.threshold:g}",
                (point.threshold, 0.02),
                xytext=(4, 0),
                textcoords="offset points",
                color=GREY,
            )
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence threshold")
    ax.set_ylabel("share")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def counts_figure(counts: dict[str, int]) -> Any:
    """Rows predicted per class, as horizontal bars."""
    plt = _pyplot()
    names = list(counts)
    fig, ax = plt.subplots(figsize=(6.4, max(2.0, 0.45 * len(names) + 1)))
    ax.barh(range(len(names)), [counts[n] for n in names], color=BLUE)
    ax.set_yticks(range(len(names)), [_label(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("rows predicted")
    for i, name in enumerate(names):
        ax.text(counts[name], i, f" {counts[name]:,}", va="center")
    ax.margins(x=0.15)
    fig.tight_layout()
    return fig
