"""Layer-wise learning-rate decay and checkpoint averaging: the optimizer's groups, the mean of
the weights, and a real run that keeps the better of best checkpoint and average."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainingArguments,
)

from newsclf.config import PreprocessingConfig, TrainingConfig
from newsclf.errors import InputError, ModelError, NewsclfError
from newsclf.metrics import classification_metrics
from newsclf.techniques import (
    LayerDecayTrainer,
    WeightSnapshot,
    WeightSnapshots,
    average_weights,
    layer_decay_groups,
)
from newsclf.training import NewsTrainer, predict_logits
from tests.conftest import sample_training_data, tiny_training_config


def _tiny_classifier(model_dir: Path) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=4)


def test_layer_decay_gives_each_level_its_rate_and_keeps_no_decay_names(
    tiny_bert_dir: Path,
) -> None:
    model = _tiny_classifier(tiny_bert_dir)  # 2 layers: embeddings, layer 0, layer 1, head
    decayed = {n for n, _ in model.named_parameters() if "bias" not in n and "LayerNorm" not in n}
    groups = layer_decay_groups(model, 1e-3, 0.01, 0.5, decayed)

    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(rate_of) == len(named)  # every parameter in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(named)
    expected = {
        "classifier.weight": 1e-3,
        "bert.pooler.dense.weight": 1e-3,
        "bert.encoder.layer.1.attention.self.query.weight": 5e-4,
        "bert.encoder.layer.0.output.dense.weight": 2.5e-4,
        "bert.embeddings.word_embeddings.weight": 1.25e-4,
    }
    for name, rate in expected.items():
        assert rate_of[id(named[name])] == pytest.approx(rate), name
    assert decay_of[id(named["classifier.weight"])] == 0.01
    assert decay_of[id(named["bert.encoder.layer.0.output.dense.bias"])] == 0.0
    assert decay_of[id(named["bert.embeddings.LayerNorm.weight"])] == 0.0
    assert groups[0]["lr"] == pytest.approx(1e-3)  # the Trainer logs the first group's rate


def test_the_trainer_builds_its_optimizer_with_the_decayed_rates(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = _tiny_classifier(tiny_bert_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=2e-4, weight_decay=0.1, report_to="none"
    )
    optimizer = LayerDecayTrainer(model=model, args=args, layer_decay=0.8).create_optimizer()
    rates = sorted({round(g["lr"], 12) for g in optimizer.param_groups}, reverse=True)
    assert rates == pytest.approx([2e-4, 2e-4 * 0.8, 2e-4 * 0.64, 2e-4 * 0.512])

    plain = LayerDecayTrainer(model=model, args=args, layer_decay=1.0).create_optimizer()
    assert {g["lr"] for g in plain.param_groups} == {2e-4}


def test_layer_decay_refuses_a_model_without_numbered_layers() -> None:
    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = type("Config", (), {"num_hidden_layers": 2})()
            self.dense = torch.nn.Linear(4, 4)

    with pytest.raises(ModelError, match="numbered layers"):
        layer_decay_groups(Flat(), 1e-3, 0.0, 0.9, [])


def test_configuration_checks_the_new_options() -> None:
    with pytest.raises(InputError, match="--layer-decay"):
        TrainingConfig(layer_decay=0.0)
    with pytest.raises(InputError, match="--layer-decay"):
        TrainingConfig(layer_decay=1.5)
    with pytest.raises(InputError, match="--average-last"):
        TrainingConfig(average_last=1)
    assert TrainingConfig().layer_decay == 1.0 and TrainingConfig().average_last == 0


def test_average_weights_is_the_mean_of_floats_and_keeps_integer_buffers() -> None:
    first = WeightSnapshot(1, {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([0, 1])})
    second = WeightSnapshot(2, {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([0, 1])})
    averaged = average_weights([first, second])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0]))
    assert averaged["ids"].dtype == torch.int64 and torch.equal(
        averaged["ids"], first.weights["ids"]
    )
    with pytest.raises(NewsclfError):
        average_weights([])


def test_a_run_with_averaging_keeps_the_better_of_best_and_average(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """The same evaluations snapshotted by a second observer: the saved weights must be their
    average when it was kept (else one of them), and its recorded score must be re-computable
    from the saved model."""
    witness = WeightSnapshots(keep=3)
    config = tiny_training_config(
        tiny_bert_dir, tmp_path / "run", average_last=3, epochs=3, patience=5
    )
    result = NewsTrainer(config, callbacks=[witness]).train()
    averaging = result.averaging
    assert averaging is not None
    assert averaging.steps == [s.step for s in witness.snapshots]
    assert len(averaging.steps) == 3
    assert averaging.kept == (averaging.average >= averaging.best_checkpoint)

    saved = AutoModelForSequenceClassification.from_pretrained(
        str(result.best_dir), dtype=torch.float32
    )
    saved_weights = saved.state_dict()
    if averaging.kept:
        candidates = [average_weights(witness.snapshots)]
    else:
        candidates = [s.weights for s in witness.snapshots]
    assert any(
        all(torch.allclose(saved_weights[k], c[k], atol=1e-6) for k in c if k in saved_weights)
        for c in candidates
    )

    pre = PreprocessingConfig.load(result.best_dir)
    data = sample_training_data(result.best_dir, with_test=False)
    tokenizer = AutoTokenizer.from_pretrained(str(result.best_dir))
    logits = predict_logits(saved, tokenizer, data.validation.texts, 32, pre.max_length)
    scores = classification_metrics(
        data.validation.labels, np.argmax(logits, axis=-1), data.label_names
    )
    kept_score = averaging.average if averaging.kept else averaging.best_checkpoint
    assert getattr(scores, config.metric) == pytest.approx(kept_score)

    written = json.loads((result.run_dir / "metrics.json").read_text())
    assert written["averaging"]["kept"] == averaging.kept
    assert "evaluations' weights was" in (result.run_dir / "README.md").read_text()


def test_layer_decay_run_trains_the_embeddings_less(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """With a strong decay the embeddings (lr x 0.1^3) barely move while the head trains."""
    start = _tiny_classifier(tiny_bert_dir).state_dict()
    config = tiny_training_config(tiny_bert_dir, tmp_path / "run", layer_decay=0.1, epochs=1)
    result = NewsTrainer(config).train()
    trained = AutoModelForSequenceClassification.from_pretrained(str(result.best_dir)).state_dict()
    plain_config = tiny_training_config(tiny_bert_dir, tmp_path / "plain", epochs=1)
    plain = NewsTrainer(plain_config).train()
    untouched = AutoModelForSequenceClassification.from_pretrained(str(plain.best_dir)).state_dict()

    key = "bert.embeddings.word_embeddings.weight"
    moved_decayed = (trained[key] - start[key]).abs().max().item()
    moved_plain = (untouched[key] - start[key]).abs().max().item()
    assert moved_decayed < moved_plain / 5
    assert result.config.layer_decay == 0.1
