"""Confidence calibration: one temperature T fitted on the run's held-out validation rows
(Guo et al. 2017, "On Calibration of Modern Neural Networks"), so that softmax(logits / T) says
how often a prediction is right. Dividing every logit of a row by the same positive T never
changes which class is largest, so labels never change; only the confidences do.

`fit_temperature` minimises the negative log-likelihood over T; `expected_calibration_error`
(15 equal-width bins over the top-class confidence) and `negative_log_likelihood` measure it
before and after; `calibrate` does all three on the PyTorch fp32 logits of the model being
exported, and `Calibration` is what the export records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.artifacts import RunFolder, read_validation_rows
from newsclf.errors import InputError
from newsclf.metrics import CALIBRATION_BINS, binned_calibration_error, calibration_bins

# Equal-width bins of the top-class confidence for the expected calibration error.
ECE_BINS = CALIBRATION_BINS
# Temperatures searched: far beyond any useful value both ways (a model that is right on every
# validation row would otherwise push T towards 0).
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# Rows per PyTorch batch when computing the validation logits.
LOGIT_BATCH = 64


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _checked(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise InputError(f"Logits {z.shape} and labels {y.shape} do not describe the same rows.")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise InputError(f"Labels must be class indices in [0, {z.shape[1]}).")
    if not np.all(np.isfinite(z)):
        raise InputError("The logits hold NaN or infinite values.")
    return z, y


def negative_log_likelihood(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / temperature)[label] over the rows.

    Args:
        logits: shape (rows, classes).
        labels: class index per row.
        temperature: positive; 1 is the raw softmax.

    Returns:
        The mean negative log-likelihood (nats); 0.0 for no rows.
    """
    z, y = _checked(logits, labels)
    if not len(y):
        return 0.0
    log_p = _log_softmax(z / temperature)
    return float(-log_p[np.arange(len(y)), y].mean())


def expected_calibration_error(probabilities: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """ECE: rows binned by their top-class confidence into `bins` equal-width bins over [0, 1];
    the mean over rows of |accuracy of the bin - mean confidence of the bin|.

    Args:
        probabilities: shape (rows, classes), each row summing to 1.
        labels: class index per row.
        bins: number of equal-width bins.

    Returns:
        The expected calibration error in [0, 1]; 0.0 for no rows.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if not len(y):
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    return binned_calibration_error(*calibration_bins(confidence, correct, bins))


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature T that minimises the NLL of softmax(logits / T) on these rows.

    The NLL is convex in 1/T (a log-sum-exp of functions linear in 1/T, less a linear term), so
    its derivative in 1/T is increasing and a bisection on its sign finds the minimum exactly,
    within [`MIN_TEMPERATURE`, `MAX_TEMPERATURE`].

    Args:
        logits: shape (rows, classes): the model's raw scores.
        labels: class index per row.

    Returns:
        T > 0 (1.0 for no rows).

    Raises:
        InputError: logits and labels do not match, or hold invalid values.
    """
    z, y = _checked(logits, labels)
    if not len(y):
        return 1.0
    z_true = z[np.arange(len(y)), y]

    def slope(beta: float) -> float:
        # d NLL / d beta for beta = 1/T: E_p[z] - z_true, averaged over rows.
        p = np.exp(_log_softmax(beta * z))
        return float(((p * z).sum(axis=1) - z_true).mean())

    low, high = math.log(1 / MAX_TEMPERATURE), math.log(1 / MIN_TEMPERATURE)
    if slope(math.exp(high)) <= 0:
        return MIN_TEMPERATURE
    if slope(math.exp(low)) >= 0:
        return MAX_TEMPERATURE
    for _ in range(100):
        middle = (low + high) / 2
        if slope(math.exp(middle)) > 0:
            high = middle
        else:
            low = middle
    return float(1 / math.exp((low + high) / 2))


@dataclass(frozen=True)
class Calibration:
    """The temperature an export applies, and how calibrated it is before and after, on the
    rows it was fitted on. `temperature` is 1.0 and the figures None when the export is
    uncalibrated (`reason` says why)."""

    temperature: float
    rows: int
    source: str | None
    ece_before: float | None = None
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    reason: str | None = None

    @property
    def calibrated(self) -> bool:
        return self.rows > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"calibrated": self.calibrated, "ece_bins": ECE_BINS}

    @classmethod
    def uncalibrated(cls, reason: str) -> Calibration:
        return cls(temperature=1.0, rows=0, source=None, reason=reason)


def calibrate(logits: Any, labels: Any, source: str) -> Calibration:
    """Fit the temperature on (logits, labels) and measure ECE and NLL before and after.

    Args:
        logits: shape (rows, classes): the raw scores of the model being exported.
        labels: class index per row.
        source: where the rows came from (recorded).

    Returns:
        `Calibration`.

    Raises:
        InputError: logits and labels do not match, or hold invalid values.
    """
    z, y = _checked(logits, labels)
    if not len(y):
        return Calibration.uncalibrated(f"{source} holds no rows")
    temperature = fit_temperature(z, y)
    return Calibration(
        temperature=temperature,
        rows=len(y),
        source=source,
        ece_before=expected_calibration_error(np.exp(_log_softmax(z)), y),
        ece_after=expected_calibration_error(np.exp(_log_softmax(z / temperature)), y),
        nll_before=negative_log_likelihood(z, y),
        nll_after=negative_log_likelihood(z, y, temperature),
    )


def model_logits(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    input_names: Sequence[str],
    max_length: int,
    batch_size: int = LOGIT_BATCH,
) -> np.ndarray:
    """The PyTorch fp32 logits of `texts` (the model's texts, already prepared), in their
    order; texts of similar length batched together. An ensemble's logits are the log of its
    members' mean probabilities."""
    from newsclf.export.parity import encode, torch_logits

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: list[np.ndarray] = []
    for start in range(0, len(order), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        outputs.append(torch_logits(model, encode(tokenizer, batch, input_names, max_length)))
    logits = np.concatenate(outputs) if outputs else np.empty((0, 0), dtype=np.float32)
    result = np.empty_like(logits)
    result[order] = logits
    return result


def calibrate_on_validation(
    model: Any,
    tokenizer: Any,
    input_names: Sequence[str],
    max_length: int,
    run_dir: Path | None,
) -> Calibration:
    """The calibration of `model` on every validation row its run kept (RUN/validation.jsonl);
    uncalibrated (T = 1, with the reason) when there are none: a model folder without a run, a
    run without a validation split, or a run trained before newsclf kept them.

    Raises:
        InputError: validation.jsonl is damaged or its labels are not the model's classes.
    """
    if run_dir is None:
        return Calibration.uncalibrated(
            "the checkpoint is not in a run folder, so there are no validation rows to fit on"
        )
    path = RunFolder(run_dir).validation_rows
    if not path.is_file():
        return Calibration.uncalibrated(
            f"{path} is missing (the run had no validation split, or was trained before "
            "newsclf kept its validation rows)"
        )
    texts, labels = read_validation_rows(run_dir)
    if not texts:
        return Calibration.uncalibrated(f"{path} holds no rows")
    classes = int(model.config.num_labels)
    if min(labels) < 0 or max(labels) >= classes:
        raise InputError(f"{path}: labels outside the model's {classes} classes; train again.")
    logits = model_logits(model, tokenizer, texts, input_names, max_length)
    return calibrate(logits, labels, str(path))
