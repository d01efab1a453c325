"""Confidence calibration: the temperature fit recovers a known temperature, never changes a
label, is fitted at export time on every validation row of the run (PyTorch fp32 logits) and
recorded in the manifest, and `Classifier` applies it; without validation rows the export says
it is uncalibrated."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from newsclf.artifacts import ExportFolder, RunFolder, read_validation_rows
from newsclf.cli import app
from newsclf.errors import ModelError
from newsclf.export import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    load_checkpoint,
    model_input_names,
    negative_log_likelihood,
)
from newsclf.inference import Classifier, ClassifierConfig, calibrated_softmax, softmax


def _sampled(temperature: float, rows: int, classes: int, seed: int) -> tuple[np.ndarray, ...]:
    """Logits, and labels drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=(rows, classes))
    p = softmax(logits / temperature)
    labels = (rng.random((rows, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fit_recovers_a_known_temperature(true_temperature: float) -> None:
    logits, labels = _sampled(true_temperature, 20_000, 4, seed=int(10 * true_temperature))
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # The fit is the NLL's minimum: a little either side is worse.
    nll = negative_log_likelihood(logits, labels, fitted)
    assert nll <= negative_log_likelihood(logits, labels, fitted * 1.05)
    assert nll <= negative_log_likelihood(logits, labels, fitted / 1.05)
    # Over-confident logits (the true T > 1) are calibrated: ECE falls.
    calibration = calibrate(logits, labels, "synthetic")
    assert calibration.temperature == fitted and calibration.rows == 20_000
    assert calibration.ece_after < 0.02
    if true_temperature > 1:
        assert calibration.ece_before > 0.1 and calibration.nll_after < calibration.nll_before


def test_ece_is_the_binned_gap_between_confidence_and_accuracy() -> None:
    # Two rows at confidence 0.9 (one right), two at 0.6 (both right): bins 13 and 8 of 15.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(
        (2 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.6)) / 4
    )


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda rows: st.integers(2, 6).flatmap(
            lambda classes: st.tuples(
                st.lists(
                    st.lists(st.integers(-2000, 2000), min_size=classes, max_size=classes),
                    min_size=rows,
                    max_size=rows,
                ),
                st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows),
            )
        )
    ),
    st.floats(0.05, 20.0),
)
def test_calibration_never_changes_a_label(
    drawn: tuple[list[list[int]], list[int]], temperature: float
) -> None:
    """Any temperature, the fitted one included, keeps every row's label (logits in steps of
    0.01, as float32 as the runtime gives them)."""
    values, labels = drawn
    logits = (np.asarray(values, dtype=np.float64) / 100).astype(np.float32)
    fitted = fit_temperature(logits, labels)
    assert fitted > 0
    raw = softmax(logits).argmax(axis=1)
    for t in (temperature, fitted):
        probabilities = calibrated_softmax(logits, t)
        np.testing.assert_array_equal(probabilities.argmax(axis=1), raw)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_export_records_the_fit_on_every_validation_row(tiny_run, tiny_export) -> None:  # type: ignore[no-untyped-def]
    run = RunFolder(tiny_run.run_dir)
    texts, labels = read_validation_rows(run.path)
    assert len(texts) == tiny_run.data.validation_rows > 0
    calibration = tiny_export.calibration
    assert calibration.calibrated and calibration.rows == len(texts)
    assert calibration.source == str(run.validation_rows)
    # The export's figures, recomputed from the PyTorch fp32 logits of every validation row.
    model, tokenizer = load_checkpoint(run.best_dir)
    pre = ExportFolder.load(tiny_export.output_dir).preprocessing
    encoded = tokenizer(texts, truncation=True, max_length=pre.max_length, padding=True)
    import torch

    names = model_input_names(model, tokenizer)
    with torch.inference_mode():
        logits = model(**{n: torch.tensor(encoded[n]) for n in names}).logits.numpy()
    assert calibration.temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-3)
    assert calibration.nll_before == pytest.approx(negative_log_likelihood(logits, labels), 1e-4)
    assert calibration.nll_after == pytest.approx(
        negative_log_likelihood(logits, labels, calibration.temperature), rel=1e-4
    )
    assert calibration.nll_after <= calibration.nll_before + 1e-9
    probabilities = softmax(logits / calibration.temperature)
    assert calibration.ece_after == pytest.approx(
        expected_calibration_error(probabilities, labels), abs=1e-4
    )
    # Recorded in the manifest (where classify reads it) and in the export report.
    folder = ExportFolder.load(tiny_export.output_dir)
    assert folder.temperature == calibration.temperature
    manifest = json.loads((folder.path / "newsclf_export.json").read_text())
    assert manifest["calibration"]["temperature"] == calibration.temperature
    report = json.loads((folder.path / "export_report.json").read_text())["calibration"]
    for key in ("temperature", "rows", "ece_before", "ece_after", "nll_before", "nll_after"):
        assert report[key] == getattr(calibration, key)
    assert report["calibrated"] is True and report["ece_bins"] == 15


def test_the_classifier_applies_the_temperature(tiny_export) -> None:  # type: ignore[no-untyped-def]
    folder = ExportFolder.load(tiny_export.output_dir)
    temperature = folder.temperature
    assert temperature != 1.0
    texts = ["stocks rally as rates fall", "team wins the cup", "new chip released today"]
    calibrated = Classifier(folder, ClassifierConfig(device="cpu", variant="fp32"))
    raw = Classifier(folder, ClassifierConfig(device="cpu", variant="fp32", calibrate=False))
    assert calibrated.info().temperature == temperature and raw.info().temperature == 1.0
    # The session's own logits, one row at a time, next to what predict_proba gives.
    encoded = calibrated.encode(calibrated.prepare(texts))
    logits = np.concatenate(
        [calibrated.logits(calibrated.feeds(encoded, np.array([i]))) for i in range(len(texts))]
    )
    np.testing.assert_allclose(
        calibrated.predict_proba(texts), softmax(logits / temperature), atol=1e-5
    )
    np.testing.assert_allclose(raw.predict_proba(texts), softmax(logits), atol=1e-5)
    assert calibrated.predict(texts).labels == raw.predict(texts).labels


def test_a_run_without_validation_rows_exports_uncalibrated(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run, ignore=shutil.ignore_patterns("onnx"))
    (run / "validation.jsonl").unlink()
    output = tmp_path / "export"
    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(run), "--output", str(output)],
        env={"COLUMNS": "200"},
    )
    text = re.sub(r"\s+", " ", result.output)
    assert result.exit_code == 0, text
    assert "uncalibrated" in text and "validation.jsonl is missing" in text
    report = json.loads((output / "export_report.json").read_text())["calibration"]
    assert report["calibrated"] is False and report["temperature"] == 1.0
    assert "validation.jsonl is missing" in report["reason"]
    folder = ExportFolder.load(output)
    assert folder.calibration is None and folder.temperature == 1.0
    assert Classifier(folder, ClassifierConfig(device="cpu")).temperature == 1.0


def test_the_export_command_shows_the_calibration(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    output = tmp_path / "export"
    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--output", str(output)],
        env={"COLUMNS": "250"},
    )
    text = re.sub(r"\s+", " ", result.output)
    assert result.exit_code == 0, text
    temperature = ExportFolder.load(output).temperature
    assert f"calibration: temperature {temperature:.3f} fitted on" in text
    assert re.search(r"ECE \d+\.\d\d% -> \d+\.\d\d%, NLL \d\.\d{4} -> \d\.\d{4}", text)


@pytest.mark.parametrize("temperature", [0, -1.5, "2", None, float("nan")])
def test_a_manifest_with_a_bad_temperature_is_refused(
    temperature: object, tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "export"
    shutil.copytree(tiny_export.output_dir, folder)
    manifest = json.loads((folder / "newsclf_export.json").read_text())
    manifest["calibration"]["temperature"] = temperature
    (folder / "newsclf_export.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="temperature"):
        ExportFolder.load(folder)


def test_an_export_written_before_calibration_is_read_as_uncalibrated(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "export"
    shutil.copytree(tiny_export.output_dir, folder)
    manifest = json.loads((folder / "newsclf_export.json").read_text())
    del manifest["calibration"]
    (folder / "newsclf_export.json").write_text(json.dumps(manifest))
    assert ExportFolder.load(folder).temperature == 1.0


def test_an_ensemble_is_calibrated_on_its_log_mean_probabilities(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An ensemble's logits are log mean probabilities: its fit uses those."""
    import torch

    from newsclf.combine import PredictionEnsemble
    from newsclf.export import calibrate_on_validation

    model, tokenizer = load_checkpoint(RunFolder(tiny_run.run_dir).best_dir)
    other, _ = load_checkpoint(RunFolder(tiny_run.run_dir).best_dir)
    with torch.no_grad():
        for p in other.classifier.parameters():
            p.mul_(1.7)
    ensemble = PredictionEnsemble([model, other]).eval()
    names = model_input_names(model, tokenizer)
    calibration = calibrate_on_validation(ensemble, tokenizer, names, 64, tiny_run.run_dir)
    texts, labels = read_validation_rows(tiny_run.run_dir)
    encoded = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.inference_mode():
        probabilities = [
            torch.softmax(m(**{n: encoded[n] for n in names}).logits, -1) for m in (model, other)
        ]
    log_mean = torch.log(torch.stack(probabilities).mean(0)).numpy()
    assert calibration.temperature == pytest.approx(fit_temperature(log_mean, labels), rel=1e-3)
    assert calibration.rows == len(labels)
