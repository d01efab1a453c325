"""How well an export's confidences are calibrated on a labelled test file.

Runs the export once (raw logits), then compares on the same rows: the raw softmax, the
export's temperature (fitted at export time on the run's validation rows), and, for diagnosis
only, the temperature fitted on the test rows themselves (a post-hoc oracle: the best a single
temperature could do here; it must not choose anything). Also the noise floor of the ECE
estimate: the mean ECE of a perfectly calibrated model with the same confidences and as many
rows (labels drawn from its own probabilities), for the test size and the validation size.

    python -m benchmarks.calibration --export /tmp/calib-export \
        --data ../shared/data/ag_news/test.csv --min-confidence 0.9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rows import load_rows
from newsclf.artifacts import ExportFolder
from newsclf.export import expected_calibration_error, fit_temperature, negative_log_likelihood
from newsclf.inference import Classifier, ClassifierConfig, softmax

DRAWS = 200


def noise_floor(probabilities: np.ndarray, rows: int, seed: int = 0) -> float:
    """Mean ECE over `DRAWS` samples of `rows` rows whose labels are drawn from
    `probabilities` itself: what a perfectly calibrated model measures at that size."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(DRAWS):
        picked = probabilities[rng.integers(0, len(probabilities), rows)]
        labels = (rng.random((rows, 1)) > np.cumsum(picked, axis=1)).sum(axis=1)
        values.append(expected_calibration_error(picked, np.minimum(labels, picked.shape[1] - 1)))
    return float(np.mean(values))


def coverage(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    confidence = probabilities.max(axis=1)
    accepted = confidence >= threshold
    correct = probabilities.argmax(axis=1) == labels
    return {
        "threshold": threshold,
        "rows": int(accepted.sum()),
        "coverage": float(accepted.mean()),
        "accuracy": float(correct[accepted].mean()) if accepted.any() else None,
    }


def measure(
    export: Path, data: Path, min_confidence: float, variant: str = "auto"
) -> dict[str, Any]:
    folder = ExportFolder.load(export)
    classifier = Classifier(
        folder, ClassifierConfig(device="cpu", variant=variant, calibrate=False)
    )
    rows = load_rows(data, None, folder.preprocessing)
    index = {name: i for i, name in enumerate(folder.label_names)}
    labels = np.array([index[label] for label in rows.labels])
    # Raw probabilities of the variant classify runs; their log is the logits up to a
    # per-row constant, which no softmax sees.
    raw = classifier.probabilities(classifier.encode(rows.texts)).astype(np.float64)
    logits = np.log(np.clip(raw, 1e-30, None))
    export_t = folder.temperature
    oracle_t = fit_temperature(logits, labels)
    calibrated = softmax(logits / export_t)
    figures: dict[str, Any] = {}
    for name, temperature in (("raw", 1.0), ("export", export_t), ("oracle", oracle_t)):
        probabilities = softmax(logits / temperature)
        figures[name] = {
            "temperature": temperature,
            "ece": expected_calibration_error(probabilities, labels),
            "nll": negative_log_likelihood(logits, labels, temperature),
            "coverage": coverage(probabilities, labels, min_confidence),
        }
    fitted = folder.calibration or {}
    return {
        "export": str(export),
        "variant": classifier.variant,
        "data": str(data),
        "rows": len(labels),
        "accuracy": float((raw.argmax(axis=1) == labels).mean()),
        "export_calibration": fitted,
        "test": figures,
        "ece_noise_floor": {
            f"{len(labels)} rows": noise_floor(calibrated, len(labels)),
            f"{fitted.get('rows', 0)} rows": noise_floor(calibrated, int(fitted.get("rows", 0)))
            if fitted.get("rows")
            else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--min-confidence", type=float, default=0.9)
    parser.add_argument("--variant", default="auto", help="the variant classify runs")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    result = measure(args.export, args.data, args.min_confidence, args.variant)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
