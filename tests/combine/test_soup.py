"""newsclf soup: the uniform weight average of runs (or their ensemble), scored on validation
only, saved as a run folder that export takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from newsclf.artifacts import PreprocessingConfig
from newsclf.cli import app
from newsclf.combine import make_soup
from newsclf.errors import InputError
from newsclf.export import ExportConfig, export_onnx
from newsclf.inference import Classifier, ClassifierConfig
from newsclf.training import NewsTrainer, predict_logits
from tests.conftest import SAMPLE_DIR, sample_training_data, tiny_training_config


@pytest.fixture(scope="module")
def second_run(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Another tiny run on the same data and validation split, with another learning rate."""
    run_dir = tmp_path_factory.mktemp("soup-runs") / "second"
    config = tiny_training_config(tiny_bert_dir, run_dir, learning_rate=1e-3, epochs=3)
    return NewsTrainer(config).train()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    return model.state_dict()


def _mean(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else v
        for k, v in states[0].items()
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_uniform_soup_is_the_mean_of_every_run(tiny_run, second_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = [tiny_run.run_dir, second_run.run_dir]
    result = make_soup(runs, tmp_path / "soup", test_file=SAMPLE_DIR / "test.csv")
    expected = _mean([_weights(r / "best") for r in runs])
    assert _same(_weights(result.best_dir), expected)

    # Its reported test accuracy is that of the saved soup, recomputed here row by row.
    pre = PreprocessingConfig.load(result.best_dir)
    data = sample_training_data(result.best_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(result.best_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(result.best_dir)).eval()
    with torch.inference_mode():
        predicted = [
            int(
                model(
                    **tokenizer(t, truncation=True, max_length=pre.max_length, return_tensors="pt")
                ).logits.argmax(-1)
            )
            for t in data.test.texts
        ]
    assert result.test is not None
    assert result.test.accuracy == pytest.approx(np.mean(np.asarray(predicted) == data.test.labels))

    # The ensemble it is compared with: both runs' validation probabilities averaged.
    probabilities = [
        torch.from_numpy(
            predict_logits(
                AutoModelForSequenceClassification.from_pretrained(str(r / "best")),
                tokenizer,
                data.validation.texts,
                8,
                pre.max_length,
            )
        ).softmax(-1)
        for r in runs
    ]
    ensemble = torch.stack(probabilities).mean(0).argmax(-1).numpy()
    assert result.ensemble_validation_score == pytest.approx(
        f1_score(data.validation.labels, ensemble, average="macro")
    )


def test_the_soup_folder_records_each_run_and_exports_like_any_run(
    tiny_run, second_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    runs = [tiny_run.run_dir, second_run.run_dir]
    result = make_soup(runs, tmp_path / "soup")
    assert result.test is None  # no test file: the test rows are not read
    assert all(i.validation_score is not None for i in result.ingredients)
    assert result.validation_score == result.soup_validation_score

    written = json.loads((result.run_dir / "metrics.json").read_text())
    assert written["kind"] == "soup" and written["soup"]["method"] == "uniform"
    assert [i["validation_score"] for i in written["soup"]["ingredients"]] == [
        i.validation_score for i in result.ingredients
    ]
    assert (result.run_dir / "parity_sample.jsonl").read_bytes() == (
        runs[0] / "parity_sample.jsonl"
    ).read_bytes()
    card = (result.run_dir / "README.md").read_text()
    assert "newsclf soup" in card and str(second_run.run_dir) in card
    assert not list(tmp_path.glob(".*partial"))

    # The soup is a run folder like any other: export takes it and proves parity.
    exported = export_onnx(result.run_dir, config=ExportConfig(variants=["fp32"]))
    assert all(v.passed for v in exported.variants)


def test_runs_without_validation_make_a_uniform_soup_only(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    runs = [
        NewsTrainer(
            tiny_training_config(
                tiny_bert_dir,
                tmp_path / f"refit-{seed}",
                validation_fraction=0.0,
                train_seed=seed,
                epochs=1,
                test_file=None,
            )
        )
        .train()
        .run_dir
        for seed in (1, 2)
    ]
    result = make_soup(runs, tmp_path / "soup", test_file=SAMPLE_DIR / "test.csv")
    assert result.validation_rows == 0 and result.validation_score is None
    assert [i.validation_score for i in result.ingredients] == [None, None]
    assert _same(_weights(result.best_dir), _mean([_weights(r / "best") for r in runs]))
    assert result.test is not None and result.test.rows == 100
    assert "n/a" in (result.run_dir / "README.md").read_text()


def test_soup_refuses_runs_on_another_validation_split(
    tiny_bert_dir: Path, tiny_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    other = NewsTrainer(
        tiny_training_config(tiny_bert_dir, tmp_path / "other", seed=7, epochs=1)
    ).train()
    with pytest.raises(InputError, match="differ in seed"):
        make_soup([tiny_run.run_dir, other.run_dir], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_soup_refuses_a_non_empty_output_and_a_single_run(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        make_soup([tiny_run.run_dir, tiny_run.run_dir], tmp_path / "taken")
    assert (tmp_path / "taken" / "file.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="at least two"):
        make_soup([tiny_run.run_dir], tmp_path / "soup")


def test_cli_soup_prints_the_ingredients_and_exits_non_zero_on_bad_input(
    tiny_run, second_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out = tmp_path / "soup"
    args = [
        "soup",
        str(tiny_run.run_dir),
        str(second_run.run_dir),
        "--output-dir",
        str(out),
    ]
    ok = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert second_run.run_dir.name in ok.output and "kept: the soup" in ok.output
    assert (out / "best" / "model.safetensors").is_file()

    bad = runner.invoke(
        app, ["soup", str(tiny_run.run_dir), str(tmp_path), "--output-dir", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2
    assert "not a finished newsclf training run" in " ".join(bad.output.split())


def test_an_ensemble_keeps_every_run_and_exports_as_one_graph(
    tiny_run, second_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """soup --ensemble: the members are the runs' own weights; the exported graph's
    probabilities are the mean of the members' (fp32 and int8 checked by export's parity
    rules); classify runs it like any export."""
    runs = [tiny_run.run_dir, second_run.run_dir]
    result = make_soup(runs, tmp_path / "ens", ensemble=True, test_file=SAMPLE_DIR / "test.csv")
    assert result.method == "ensemble" and result.best_dir is None
    assert result.validation_score == result.ensemble_validation_score
    assert result.soup_validation_score is not None  # the weight average, for comparison
    members = sorted((result.run_dir / "members").iterdir())
    assert [m.name for m in members] == ["0", "1"]
    for member, run in zip(members, runs, strict=True):
        assert _same(_weights(member), _weights(run / "best"))

    data = sample_training_data(runs[0] / "best")
    pre = PreprocessingConfig.load(runs[0] / "best")
    tokenizer = AutoTokenizer.from_pretrained(str(runs[0] / "best"))

    def mean_probabilities(texts: list[str]) -> np.ndarray:
        each = [
            torch.from_numpy(
                predict_logits(
                    AutoModelForSequenceClassification.from_pretrained(str(r / "best")),
                    tokenizer,
                    texts,
                    8,
                    pre.max_length,
                )
            ).softmax(-1)
            for r in runs
        ]
        return torch.stack(each).mean(0).numpy()

    assert data.test is not None and result.test is not None
    expected_test = mean_probabilities(data.test.texts).argmax(-1)
    assert result.test.accuracy == pytest.approx(np.mean(expected_test == data.test.labels))

    exported = export_onnx(result.run_dir, config=ExportConfig(variants=["optimized", "int8"]))
    assert {v.variant for v in exported.variants} == {"fp32", "optimized", "int8"}
    assert all(v.passed for v in exported.variants)
    raw = Classifier(
        exported.output_dir, ClassifierConfig(device="cpu", variant="fp32", calibrate=False)
    )
    texts = data.test.texts[:20]
    mean = mean_probabilities(texts)
    assert np.allclose(raw.predict_proba(texts), mean, atol=1e-4)
    # Calibrated (the default): the temperature fitted on the ensemble's log mean probabilities.
    calibrated = Classifier(exported.output_dir, ClassifierConfig(device="cpu", variant="fp32"))
    temperature = exported.calibration.temperature
    assert exported.calibration.calibrated and calibrated.temperature == temperature
    scaled = torch.from_numpy(np.log(mean) / temperature).softmax(-1).numpy()
    assert np.allclose(calibrated.predict_proba(texts), scaled, atol=1e-4)
    assert (calibrated.predict_proba(texts).argmax(-1) == mean.argmax(-1)).all()
