"""classify's confidence figures: the review threshold (the needs_review column and the review
file hold exactly the rows under P), the coverage / accuracy table, the reliability bins, the
confidence histogram, the predicted-class counts and the confused pairs' examples, each
recomputed from the written output; partial evaluations merge into the one-pass figures."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from newsclf.artifacts import ExportFolder
from newsclf.cli import app
from newsclf.errors import InputError
from newsclf.inference import (
    COVERAGE_THRESHOLDS,
    HISTOGRAM_BINS,
    NEEDS_REVIEW_COLUMN,
    Classifier,
    ClassifierConfig,
    ClassifyConfig,
    Evaluation,
    classify_file,
)
from newsclf.io import NO_LABEL
from newsclf.metrics import CALIBRATION_BINS, calibration_bins
from tests.conftest import LABELS, labelled_input, read_csv, write_csv


@pytest.fixture(scope="module")
def classifier(tiny_export) -> Classifier:  # type: ignore[no-untyped-def]
    return Classifier(
        ExportFolder.load(tiny_export.output_dir),
        ClassifierConfig(device="cpu", variant="fp32", batch_size=5),
    )


def _input_file(tmp_path: Path, rows: int = 100) -> Path:
    return labelled_input(tmp_path / "in.csv", rows)


def _median_confidence(classifier: Classifier, source: Path) -> float:
    """A threshold that splits the rows: some need review, some do not."""
    rows = read_csv(source)
    confidences = classifier.predict([f"{r['title']} {r['description']}" for r in rows]).confidences
    return round(float(np.median(confidences)), 3)


def run(cli_args: list[str]):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["classify", *cli_args], env={"COLUMNS": "200"})
    return result, re.sub(r"\s+", " ", result.output)


def test_needs_review_and_the_review_file_hold_exactly_the_rows_under_p(
    classifier, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path)
    p = _median_confidence(classifier, source)
    output, review = tmp_path / "out.csv", tmp_path / "review.csv"
    result = classify_file(
        source,
        classifier,
        ClassifyConfig(min_confidence=p, chunk_rows=17),
        output=output,
        review_output=review,
    )
    rows = read_csv(output)
    assert len(rows) == 100  # every row stays in the output
    assert list(rows[0])[-3:] == ["predicted_label", "confidence", NEEDS_REVIEW_COLUMN]
    flagged = [r for r in rows if r[NEEDS_REVIEW_COLUMN] == "true"]
    assert {r[NEEDS_REVIEW_COLUMN] for r in rows} == {"true", "false"}  # as JSON and Arrow
    assert [r["id"] for r in flagged] == [r["id"] for r in rows if float(r["confidence"]) < p]
    # The review file: the same columns, exactly the flagged rows, in order.
    assert read_csv(review) == flagged
    assert result.review_rows == len(flagged) and result.review_output == str(review)
    assert result.min_confidence == p


def test_the_review_file_takes_its_format_from_its_extension(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path, 40)
    p = _median_confidence(classifier, source)
    result = classify_file(
        source,
        classifier,
        ClassifyConfig(min_confidence=p),
        output=tmp_path / "out.jsonl",
        review_output=tmp_path / "review.parquet",
    )
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    review = pq.read_table(tmp_path / "review.parquet")
    assert review.schema.field(NEEDS_REVIEW_COLUMN).type == "bool"
    assert review.to_pylist() == [r for r in written if r[NEEDS_REVIEW_COLUMN] is True]
    assert all(r[NEEDS_REVIEW_COLUMN] == (r["confidence"] < p) for r in written)
    assert review.num_rows == result.review_rows > 0


def test_the_report_figures_are_recomputable_from_the_output(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path)
    p = 0.42  # not one of the standard thresholds: it joins the table
    output, report_path = tmp_path / "out.csv", tmp_path / "report.json"
    result, text = run(
        [str(source), "--model", str(classifier.folder.path), "--variant", "fp32",
         "--device", "cpu", "--chunk-rows", "13", "--output", str(output),
         "--min-confidence", str(p), "--report", str(report_path)]
    )  # fmt: skip
    assert result.exit_code == 0, text
    report = json.loads(report_path.read_text())
    rows = read_csv(output)
    confidence = np.array([float(r["confidence"]) for r in rows])
    correct = np.array([r["predicted_label"] == r["label"] for r in rows])
    # The coverage table, threshold by threshold, from the written predictions and labels.
    thresholds = [point["threshold"] for point in report["coverage"]]
    assert thresholds == sorted([*COVERAGE_THRESHOLDS, p])
    for point in report["coverage"]:
        accepted = confidence >= point["threshold"]
        assert point["rows"] == int(accepted.sum())
        assert point["coverage"] == pytest.approx(accepted.mean())
        if accepted.any():
            assert point["accuracy"] == pytest.approx(correct[accepted].mean())
        else:
            assert point["accuracy"] is None
        assert point["chosen"] == (point["threshold"] == p)
    # The reliability bins and the ECE.
    bin_rows, bin_confidence, bin_correct = calibration_bins(confidence, correct)
    assert [b["rows"] for b in report["reliability"]] == bin_rows.tolist()
    assert len(report["reliability"]) == CALIBRATION_BINS
    assert report["expected_calibration_error"] == pytest.approx(
        np.abs(bin_correct - bin_confidence).sum() / len(rows)
    )
    # The histogram of every row and the predicted-class counts.
    bins = np.minimum(np.floor(confidence * HISTOGRAM_BINS), HISTOGRAM_BINS - 1).astype(int)
    assert (
        report["confidence_histogram"]["counts"]
        == np.bincount(bins, minlength=HISTOGRAM_BINS).tolist()
    )
    assert len(report["confidence_histogram"]["bin_edges"]) == HISTOGRAM_BINS + 1
    predicted = [r["predicted_label"] for r in rows]
    assert report["predicted_counts"] == {name: predicted.count(name) for name in LABELS}
    # The review threshold and the calibration applied.
    assert report["min_confidence"] == p
    assert report["review_rows"] == int((confidence < p).sum())
    assert report["calibration_temperature"] == classifier.folder.temperature
    # The confused pairs: their first three rows (1 = the first data row), by row number.
    assert report["top_confusions"]
    for pair in report["top_confusions"]:
        numbers = [
            i + 1
            for i, r in enumerate(rows)
            if r["label"] == pair["true"] and r["predicted_label"] == pair["predicted"]
        ]
        assert pair["count"] == len(numbers)
        assert [e["row"] for e in pair["examples"]] == numbers[:3]
        for example in pair["examples"]:
            row = rows[example["row"] - 1]
            assert example["text"] == f"{row['title']} {row['description']}"
        assert pair["example"] == pair["examples"][0]["text"]
    # The terminal shows the coverage table with P marked.
    assert "Coverage / accuracy" in text and ">= 0.42 (--min-confidence)" in text


def test_without_labels_the_counts_and_histogram_are_still_kept(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(
        tmp_path / "in.csv", ["text"], [["stocks rally"], ["team wins"], ["new chip"]]
    )
    result = classify_file(source, classifier, ClassifyConfig(min_confidence=1.0))
    report = result.to_report()
    assert result.metrics is None and "coverage" not in report
    assert sum(report["predicted_counts"].values()) == 3
    assert sum(report["confidence_histogram"]["counts"]) == 3
    assert report["review_rows"] == result.review_rows == 3  # no confidence reaches 1


def test_review_output_without_min_confidence_is_refused(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path, 5)
    with pytest.raises(InputError, match="--min-confidence"):
        classify_file(source, classifier, ClassifyConfig(), review_output=tmp_path / "r.csv")
    result, text = run(
        [str(source), "--model", str(classifier.folder.path), "--output",
         str(tmp_path / "out.csv"), "--review-output", str(tmp_path / "r.csv")]
    )  # fmt: skip
    assert result.exit_code == 2 and "--review-output" in text and "--min-confidence" in text
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_min_confidence_outside_zero_one_is_refused(value: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", ["text"], [["stocks rally"]])
    result, text = run([str(source), "--model", str(tmp_path), "--min-confidence", value])
    assert result.exit_code == 2 and "--min-confidence must be in [0, 1]" in text


def test_a_review_file_that_is_the_output_or_the_input_is_refused(
    classifier, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path, 5)
    config = ClassifyConfig(min_confidence=0.5)
    for target in (source, tmp_path / "out.csv"):
        with pytest.raises(InputError, match="--review-output"):
            classify_file(
                source, classifier, config, output=tmp_path / "out.csv", review_output=target
            )
    assert not (tmp_path / "out.csv").exists()


def test_a_failed_run_leaves_no_review_file(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "stocks rally"}\n{"text": broken\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        classify_file(
            source,
            classifier,
            ClassifyConfig(min_confidence=1.0, chunk_rows=1),
            review_output=tmp_path / "review.jsonl",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def known_rows(truth: np.ndarray) -> int:
    return int((truth != NO_LABEL).sum())


def test_partial_evaluations_merge_into_the_one_pass_figures() -> None:
    """What Ray's workers send: parts in any order add up to one pass over the rows."""
    rng = np.random.default_rng(3)
    n, names = 500, ["a", "b", "c"]
    truth = rng.integers(-1, 3, n)  # -1: no label
    predicted = rng.integers(0, 3, n)
    confidence = np.round(rng.uniform(1 / 3, 1, n), 6)
    texts = [f"text {i}" for i in range(n)]
    whole = Evaluation(names, min_confidence=0.7)

    def texts_of(start: int):  # type: ignore[no-untyped-def]
        return lambda rows: [texts[start + i] for i in rows]

    whole.add(truth, predicted, confidence, texts_of(0), 0)
    cuts = [0, 37, 38, 200, 420, n]
    parts = []
    for start, end in itertools.pairwise(cuts):
        part = Evaluation(names, min_confidence=0.7)
        part.add(
            truth[start:end], predicted[start:end], confidence[start:end], texts_of(start), start
        )
        # As a Ray worker sends it: through JSON.
        parts.append(Evaluation.from_dict(json.loads(json.dumps(part.to_dict()))))
    merged = Evaluation(names, min_confidence=0.7)
    for part in reversed(parts):  # the workers report in any order
        merged.merge(part)
    assert (merged.matrix == whole.matrix).all()
    assert merged.examples == whole.examples
    assert all(len(kept) <= 3 for kept in whole.examples.values())
    assert (merged.histogram == whole.histogram).all() and whole.histogram.sum() == n
    assert (merged.predicted_counts == whole.predicted_counts).all()
    assert merged.review_rows == whole.review_rows == int((confidence < 0.7).sum())
    assert merged.coverage() == whole.coverage()
    assert (merged.bin_rows == whole.bin_rows).all() and whole.bin_rows.sum() == known_rows(truth)
    np.testing.assert_allclose(merged.bin_confidence, whole.bin_confidence)
    np.testing.assert_allclose(merged.bin_correct, whole.bin_correct)
    known = truth != NO_LABEL
    assert whole.coverage()[0].rows == int((confidence[known] >= 0.5).sum())
    with pytest.raises(ValueError, match="thresholds"):
        merged.merge(Evaluation(names, min_confidence=0.8))
