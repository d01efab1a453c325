"""train --mlm-epochs: within-task masked-LM pre-training on the training texts only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, TrainerCallback
from typer.testing import CliRunner

import newsclf.training
from newsclf.cli import app
from newsclf.config import TrainingConfig
from newsclf.errors import InputError
from newsclf.pretraining import further_pretrain
from newsclf.runs import MLM_DIR
from newsclf.training import NewsTrainer
from tests.conftest import SAMPLE_DIR, tiny_training_config

QUERY = "encoder.layer.0.attention.self.query.weight"


class _StartingWeights(TrainerCallback):
    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        base = kwargs["model"].base_model
        self.weights = {k: v.detach().clone() for k, v in base.state_dict().items()}


def test_mlm_step_sees_only_train_texts_and_fine_tuning_starts_from_its_encoder(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def recording(source: str, tokenizer: Any, texts: list[str], *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        seen["texts"] = list(texts)
        seen["encoder"], stats = further_pretrain(source, tokenizer, texts, *args, **kwargs)
        return seen["encoder"], stats

    monkeypatch.setattr(newsclf.training, "further_pretrain", recording)
    start = _StartingWeights()
    config = tiny_training_config(tiny_bert_dir, tmp_path / "run", mlm_epochs=3, epochs=1)
    result = NewsTrainer(config, callbacks=[start]).train()

    data = NewsTrainer(config)._load_data()
    assert sorted(seen["texts"]) == sorted(data.train.texts)
    assert data.test is not None
    # (The sample data repeats some texts across splits; those cannot tell.)
    held_out = set(data.validation.texts + data.test.texts) - set(data.train.texts)
    assert held_out and not set(seen["texts"]) & held_out

    # Fine-tuning began from the masked-LM encoder, which moved away from the source's.
    original = AutoModel.from_pretrained(str(tiny_bert_dir)).state_dict()
    assert start.weights is not None
    assert torch.equal(start.weights[QUERY], seen["encoder"][QUERY])
    assert not torch.allclose(seen["encoder"][QUERY], original[QUERY])
    # The pooler, which a masked-LM model lacks, is the source's.
    assert torch.equal(start.weights["pooler.dense.weight"], original["pooler.dense.weight"])

    mlm = result.pretraining
    assert mlm is not None and mlm.rows == len(data.train) and not mlm.reused
    assert mlm.first_loss is not None and mlm.last_loss is not None
    assert mlm.last_loss < mlm.first_loss
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["pretraining"]["rows"] == len(data.train)
    assert saved["config"]["mlm_epochs"] == 3
    assert "masked-LM" in (result.run_dir / "README.md").read_text()
    assert not (result.run_dir / MLM_DIR).exists()  # kept only while the run can resume


def test_a_finished_mlm_step_is_reused_not_repeated(tiny_bert_dir: Path, tmp_path: Path) -> None:
    config = tiny_training_config(tiny_bert_dir, tmp_path / "run", mlm_epochs=1)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    texts = ["stocks rally as rates fall", "the team wins the cup"] * 16
    args = {"use_cpu": True}
    first, stats = further_pretrain(
        str(tiny_bert_dir), tokenizer, texts, config, args, None, tmp_path / "mlm", {}
    )
    again, reused = further_pretrain(
        str(tiny_bert_dir), tokenizer, ["other texts"], config, args, None, tmp_path / "mlm", {}
    )
    assert not stats.reused and reused.reused and reused.rows == stats.rows == 32
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_mlm_epochs_must_not_be_negative() -> None:
    with pytest.raises(InputError, match="--mlm-epochs"):
        TrainingConfig(mlm_epochs=-1)


def test_cli_train_reports_the_masked_lm_step(tiny_bert_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "cli-run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            str(tiny_bert_dir),
            "--train-file",
            str(SAMPLE_DIR / "train.csv"),
            "--output-dir",
            str(run_dir),
            "--epochs",
            "1",
            "--mlm-epochs",
            "1",
            "--max-length",
            "32",
            "--max-train-samples",
            "64",
            "--batch-size",
            "16",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["pretraining"]["rows"] == 64 and saved["pretraining"]["steps"] == 4
    assert "first 1 epochs of masked-LM pre-training" in result.output
    assert "masked LM    1 epochs on 64 train rows, 4 steps" in result.output
