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
    NewsclfTrainer,
    WeightSnapshot,
    WeightSnapshots,
    average_weights,
    layer_decay_groups,
    rdrop_loss,
)
from newsclf.training import NewsTrainer, predict_logits
from tests.conftest import LABELS, sample_training_data, tiny_training_config


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
    optimizer = NewsclfTrainer(model=model, args=args, layer_decay=0.8).create_optimizer()
    rates = sorted({round(g["lr"], 12) for g in optimizer.param_groups}, reverse=True)
    assert rates == pytest.approx([2e-4, 2e-4 * 0.8, 2e-4 * 0.64, 2e-4 * 0.512])

    plain = NewsclfTrainer(model=model, args=args, layer_decay=1.0).create_optimizer()
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


def test_rdrop_loss_is_cross_entropy_plus_the_symmetric_kl() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 0])
    ce = (
        torch.nn.functional.cross_entropy(a, labels) + torch.nn.functional.cross_entropy(b, labels)
    ) / 2
    p, q = a.softmax(-1), b.softmax(-1)
    kl_pq = (p * (p / q).log()).sum(-1).mean()
    kl_qp = (q * (q / p).log()).sum(-1).mean()
    assert rdrop_loss(a, b, labels, 0.0).item() == pytest.approx(ce.item())
    assert rdrop_loss(a, b, labels, 2.0).item() == pytest.approx(
        (ce + 2.0 * (kl_pq + kl_qp) / 4).item(), rel=1e-5
    )
    # Identical passes: no disagreement to penalise.
    assert rdrop_loss(a, a, labels, 5.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(a, labels).item(), rel=1e-6
    )


def test_the_trainer_applies_rdrop_to_two_dropout_passes_of_the_batch(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = _tiny_classifier(tiny_bert_dir)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = NewsclfTrainer(model=model, args=args, rdrop=1.0)
    batch = {
        "input_ids": torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
        "labels": torch.tensor([1, 2]),
    }
    seen: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(len(output.logits)))
    model.train()
    torch.manual_seed(1)
    loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    assert seen == [4]  # one forward over the batch twice
    first, second = outputs.logits.chunk(2)
    assert not torch.allclose(first, second)  # different dropout masks
    assert loss.item() == pytest.approx(
        rdrop_loss(first, second, batch["labels"], 1.0).item(), rel=1e-6
    )
    assert loss.item() > rdrop_loss(first, second, batch["labels"], 0.0).item()

    model.eval()  # evaluation: the model's own loss, one pass
    seen.clear()
    trainer.compute_loss(model, dict(batch))
    assert seen == [2]


def test_gradient_accumulation_averages_the_micro_batches(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """One optimizer step over the same 8 rows, as 1 x 8 and as 2 x 4: the same mean loss.
    (The plain Trainer adds up the two micro-batch means for these models: twice the loss.)"""
    losses = {}
    for batch_size, accumulation in ((8, 1), (4, 2)):
        config = tiny_training_config(
            tiny_bert_dir,
            tmp_path / f"run-{accumulation}",
            batch_size=batch_size,
            grad_accum=accumulation,
            max_train_samples=8,
            epochs=1,
            group_by_length=False,
            precision="fp32",
            test_file=None,
        )
        losses[accumulation] = NewsTrainer(config).train().training.train_loss
    assert losses[2] == pytest.approx(losses[1], rel=0.25)


def test_runs_differing_only_in_train_seed_share_split_and_start(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """--train-seed changes data order and dropout, not the validation split or the head's
    initial weights, so that such runs can be souped; --seed changes the head too."""
    heads = {}
    for name, seeds in {"a": (42, 1), "b": (42, 2), "c": (7, 1)}.items():
        config = tiny_training_config(
            tiny_bert_dir, tmp_path / name, seed=seeds[0], train_seed=seeds[1], test_file=None
        )
        trainer = NewsTrainer(config)
        model, _ = trainer._load_model(LABELS)
        heads[name] = model.classifier.weight.detach().clone()
        assert config.data_order_seed == seeds[1]
    assert torch.equal(heads["a"], heads["b"])
    assert not torch.equal(heads["a"], heads["c"])

    runs = {
        name: NewsTrainer(
            tiny_training_config(
                tiny_bert_dir, tmp_path / f"run-{name}", train_seed=seed, epochs=1, test_file=None
            )
        ).train()
        for name, seed in (("a", 1), ("b", 2))
    }
    assert runs["a"].data == runs["b"].data  # same split, same class counts
    weights = [
        AutoModelForSequenceClassification.from_pretrained(str(r.best_dir)).classifier.weight
        for r in runs.values()
    ]
    assert not torch.allclose(weights[0], weights[1])  # trained differently
    assert TrainingConfig(seed=5).data_order_seed == 5
    with pytest.raises(InputError, match="--rdrop"):
        TrainingConfig(rdrop=-1)
