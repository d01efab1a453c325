"""newsclf train: recipe defaults, a real tiny run, honest metrics, early stopping, resume."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from typer.testing import CliRunner

from newsclf.artifacts import PREPROCESSING_FILE, PreprocessingConfig
from newsclf.cli import app
from newsclf.errors import InputError, OfflineError
from newsclf.training import NewsTrainer, TrainingConfig, load_training_data
from tests.conftest import SAMPLE_DIR, sample_rows, sample_training_data, tiny_training_config


def test_defaults_are_the_recipe() -> None:
    config = TrainingConfig()
    assert config.model == "bert-base-uncased"
    assert config.dataset == "fancyzhx/ag_news"
    assert config.learning_rate == 2e-5
    assert (config.batch_size, config.eval_batch_size) == (64, 32)
    assert config.epochs == 4
    assert config.weight_decay == 0.01
    assert config.grad_accum == 2
    assert config.patience == 2
    assert config.seed == 42
    assert config.validation_fraction == 0.05
    assert config.preprocessing == PreprocessingConfig(clean=True, max_length=128)


def test_cli_help_shows_each_recipe_flag_with_its_default() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    for flag, default in [
        ("--learning-rate", "2e-05"),
        ("--batch-size", "64"),
        ("--eval-batch-size", "32"),
        ("--epochs", "4.0"),
        ("--weight-decay", "0.01"),
        ("--grad-accum", "2"),
        ("--patience", "2"),
        ("--max-length", "128"),
        ("--seed", "42"),
        ("--model", "bert-base-uncased"),
    ]:
        assert re.search(re.escape(flag) + r" .*?\[default: " + re.escape(default) + r"\]", text), (
            flag
        )
    for flag in (
        "--train-file",
        "--validation-file",
        "--test-file",
        "--text-column",
        "--label-column",
        "--output-dir",
        "--max-train-samples",
        "--resume",
        "--no-clean",
    ):
        assert flag in text


def test_offline_hub_model_fails_fast_with_alternatives(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("newsclf.training.hub.hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.setattr("newsclf.training.data.hub_reachable", lambda timeout_s=3.0: False)
    config = TrainingConfig(output_dir=tmp_path / "run")
    with pytest.raises(OfflineError) as error:
        NewsTrainer(config).train()
    assert "--model embedded" in str(error.value) and "--train-file" in str(error.value)

    config = TrainingConfig(
        model="some-org/not-cached-model",
        train_file=SAMPLE_DIR / "train.csv",
        output_dir=tmp_path / "r2",
    )
    with pytest.raises(OfflineError, match="--model embedded"):
        NewsTrainer(config).train()


def test_tiny_run_writes_a_complete_run_directory(tiny_run) -> None:  # type: ignore[no-untyped-def]
    best = tiny_run.best_dir
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", PREPROCESSING_FILE):
        assert (best / name).is_file(), name
    config = json.loads((best / "config.json").read_text())
    assert config["id2label"] == {"0": "Business", "1": "Sci/Tech", "2": "Sports", "3": "World"}
    assert config["label2id"]["World"] == 3
    saved = PreprocessingConfig.load(best)
    assert saved.text_columns == ["title", "description"] and saved.max_length == 64 and saved.clean

    metrics = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    assert len(metrics["validation"]) >= 1 and "accuracy" in metrics["validation"][0]
    test = metrics["test"]
    assert set(test) >= {"accuracy", "f1_macro", "per_class", "confusion_matrix"}
    assert test["rows"] == 100 and np.sum(test["confusion_matrix"]) == 100
    assert set(test["per_class"]["World"]) == {"precision", "recall", "f1", "support"}
    assert metrics["training"]["samples_per_s"] > 0 and metrics["training"]["device"] == "cpu"
    assert metrics["environment"]["versions"]["torch"] == metadata.version("torch")
    assert metrics["config"]["learning_rate"] == 3e-3
    assert (tiny_run.run_dir / "README.md").read_text().startswith("# newsclf run")
    assert not (tiny_run.run_dir / "checkpoints").exists()  # removed once the run succeeded
    assert (tiny_run.run_dir / "parity_sample.jsonl").is_file()


def test_test_accuracy_equals_a_recomputation_from_the_saved_model(tiny_run) -> None:  # type: ignore[no-untyped-def]
    metrics = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    pre = PreprocessingConfig.load(tiny_run.best_dir)
    data = sample_training_data(tiny_run.best_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_run.best_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_run.best_dir).eval()
    predictions = []
    with torch.inference_mode():
        for text in data.test.texts:  # one at a time: no padding involved at all
            batch = tokenizer(text, truncation=True, max_length=pre.max_length, return_tensors="pt")
            predictions.append(int(model(**batch).logits.argmax(-1)))
    recomputed = float(np.mean(np.asarray(predictions) == np.asarray(data.test.labels)))
    assert metrics["test"]["accuracy"] == pytest.approx(recomputed, abs=1e-12)
    assert recomputed > 0.5  # the tiny model really learned the sample topics


def test_early_stopping_stops_before_the_last_epoch(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # With a zero learning rate the validation metric can never improve after the first
    # evaluation, so patience 1 must stop at the second evaluation.
    config = tiny_training_config(
        tiny_bert_dir,
        tmp_path / "run",
        learning_rate=0.0,
        epochs=4,
        patience=1,
        eval_steps=5,
        max_train_samples=160,
    )
    result = NewsTrainer(config).train()
    assert result.stopped_early is True
    assert len(result.validation) == 2
    assert result.steps == 10 < result.max_steps
    assert result.epochs_completed < 4
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["stopped_early"] is True and saved["steps"] == 10


def test_validation_fraction_zero_trains_every_row_and_keeps_the_last_weights(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """A refit: all 320 sample rows train, nothing is evaluated, the saved weights are those
    of the last step, and export still has labelled parity rows (from train)."""
    witness = _LastWeights()
    config = tiny_training_config(
        tiny_bert_dir, tmp_path / "refit", validation_fraction=0.0, epochs=2
    )
    result = NewsTrainer(config, callbacks=[witness]).train()
    assert result.data.train_rows == len(sample_rows("train.csv")) == 320
    assert result.data.validation_rows == 0 and result.validation == []
    assert "none" in result.data.validation_source
    assert result.best.value is None and result.best.step == result.steps == result.max_steps
    saved = AutoModelForSequenceClassification.from_pretrained(str(result.best_dir)).state_dict()
    assert witness.weights is not None
    assert all(torch.allclose(saved[k], v) for k, v in witness.weights.items() if k in saved)
    assert result.test is not None  # the test report still comes from the saved model
    parity = (result.run_dir / "parity_sample.jsonl").read_text().splitlines()
    train_texts = set(load_training_data(config).train.texts)
    assert parity and {json.loads(line)["text"] for line in parity} <= train_texts
    assert "no validation split" in (result.run_dir / "README.md").read_text()

    with pytest.raises(InputError, match="--validation-fraction"):
        TrainingConfig(validation_fraction=1.0)


class _LastWeights(TrainerCallback):
    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] | None = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


class _InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


class _CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0
        self.first_step: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1
        if self.first_step is None:
            self.first_step = state.global_step


def test_resume_continues_from_the_last_checkpoint(tiny_bert_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = tiny_training_config(
        tiny_bert_dir, run_dir, epochs=2, eval_steps=4, patience=10, max_train_samples=128
    )
    with pytest.raises(KeyboardInterrupt):
        NewsTrainer(config, callbacks=[_InterruptAfterFirstSave()]).train()
    assert (run_dir / "checkpoints" / "checkpoint-4").is_dir()
    assert not (run_dir / "best").exists()

    counter = _CountSteps()
    result = NewsTrainer.resume(run_dir, callbacks=[counter]).train()
    assert counter.first_step == 5  # picked up after step 4, not from step 1
    assert counter.steps == result.max_steps - 4
    assert result.training.resumed_from is not None
    assert result.training.resumed_from.endswith("checkpoint-4")
    assert result.validation[0]["step"] == 4  # history carried over
    assert result.config.max_train_samples == 128  # the saved configuration, not defaults
    assert (run_dir / "best" / "config.json").is_file()


def test_cli_train_on_a_bad_file_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": \n', encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "embedded",
            "--train-file",
            str(bad),
            "--output-dir",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2
    assert "bad.jsonl, line 2: not valid JSON" in re.sub(r"\s+", " ", result.output)
    assert not (tmp_path / "r").exists()


def test_test_metrics_come_from_an_fp32_forward(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Training runs under bf16 autocast; the reported test metrics must not (accelerate leaves
    the trained model's forward wrapped in autocast, so it has to be the saved model)."""
    import newsclf.training.predict as predict

    dtypes: list[torch.dtype] = []
    real_predict = predict.predict_logits

    def recording_predict(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        model.classifier.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        return real_predict(model, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_logits", recording_predict)
    config = tiny_training_config(tiny_bert_dir, tmp_path / "run", epochs=1, max_train_samples=32)
    NewsTrainer(config).train()
    assert dtypes and set(dtypes) == {torch.float32}


def test_torchrun_two_processes_write_one_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m newsclf train`: DDP on the CPU (gloo), one run folder
    written by rank 0, world size and effective batch recorded, rank 0 alone prints."""
    import os
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "ddp"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--standalone", "-m", "newsclf", "train",
        "--model", str(tiny_bert_dir),
        "--train-file", str(SAMPLE_DIR / "train.csv"),
        "--test-file", str(SAMPLE_DIR / "test.csv"),
        "--output-dir", str(run_dir),
        "--epochs", "1", "--batch-size", "8", "--grad-accum", "2", "--max-train-samples", "64",
        "--max-length", "32", "--precision", "fp32", "--learning-rate", "1e-3",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["world_size"] == 2
    assert metrics["training"]["effective_batch_size"] == 8 * 2 * 2
    # DDP really shared the batches: 64 rows / (8 per device x 2 processes x 2) = 2 steps (one
    # process alone would take 4).
    assert metrics["steps"] == 2
    assert metrics["test"]["rows"] == 100  # the test predictions, once, on rank 0
    assert (run_dir / "best" / "model.safetensors").is_file()
    assert not (run_dir / "checkpoints").exists()
    # Rank 0 alone prints the plan and the summary.
    assert output.count("newsclf train") == 2, output[-4000:]
