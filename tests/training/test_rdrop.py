"""R-Drop (the one optional technique), gradient accumulation, --train-seed, and the options
retired in 0.3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, TrainerCallback

from newsclf.errors import InputError
from newsclf.training import NewsTrainer, TrainingConfig, rdrop, rdrop_loss
from tests.conftest import tiny_training_config


def _tiny_classifier(model_dir: Path) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=4)


class _Watch(TrainerCallback):
    """The model's initial head, and the batch sizes its training forwards saw."""

    def __init__(self) -> None:
        self.head: torch.Tensor | None = None
        self.batch_sizes: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]
        self.head = model.classifier.weight.detach().clone()

        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if module.training:
                self.batch_sizes.append(len(output.logits))

        model.register_forward_hook(hook)


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


def test_the_rdrop_loss_runs_the_batch_twice_with_two_dropout_masks(tiny_bert_dir: Path) -> None:
    model = _tiny_classifier(tiny_bert_dir)
    batch = {
        "input_ids": torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
        "labels": torch.tensor([1, 2]),
    }
    seen: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(len(output.logits)))
    model.train()
    torch.manual_seed(1)
    loss, outputs = rdrop(1.0)(model, dict(batch))
    assert seen == [4]  # one forward over the batch twice
    first, second = outputs.logits.chunk(2)
    assert not torch.allclose(first, second)  # different dropout masks
    assert loss.item() == pytest.approx(
        rdrop_loss(first, second, batch["labels"], 1.0).item(), rel=1e-6
    )
    assert loss.item() > rdrop_loss(first, second, batch["labels"], 0.0).item()


def test_a_run_with_rdrop_trains_on_doubled_batches_and_records_it(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    watched = {}
    for name, alpha in (("plain", 0.0), ("rdrop", 1.0)):
        watch = _Watch()
        config = tiny_training_config(
            tiny_bert_dir,
            tmp_path / name,
            rdrop=alpha,
            epochs=1,
            max_train_samples=32,
            batch_size=8,
            test_file=None,
        )
        result = NewsTrainer(config, [watch]).train()
        watched[name] = watch.batch_sizes
        assert result.config.rdrop == alpha
    assert set(watched["plain"]) == {8}
    assert set(watched["rdrop"]) == {16}
    assert "R-Drop 1.0" in (tmp_path / "rdrop" / "README.md").read_text()


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
    heads, runs = {}, {}
    for name, (seed, train_seed) in {"a": (42, 1), "b": (42, 2), "c": (7, 1)}.items():
        watch = _Watch()
        config = tiny_training_config(
            tiny_bert_dir,
            tmp_path / name,
            seed=seed,
            train_seed=train_seed,
            epochs=1,
            test_file=None,
        )
        assert config.data_order_seed == train_seed
        runs[name] = NewsTrainer(config, [watch]).train()
        heads[name] = watch.head
    assert torch.equal(heads["a"], heads["b"])
    assert not torch.equal(heads["a"], heads["c"])
    assert runs["a"].data == runs["b"].data  # same split, same class counts
    weights = [
        AutoModelForSequenceClassification.from_pretrained(str(runs[n].best_dir)).classifier.weight
        for n in ("a", "b")
    ]
    assert not torch.allclose(weights[0], weights[1])  # trained differently
    assert TrainingConfig(seed=5).data_order_seed == 5
    with pytest.raises(InputError, match="--rdrop"):
        TrainingConfig(rdrop=-1)


def test_a_saved_config_that_used_a_retired_option_is_refused_not_ignored() -> None:
    saved = TrainingConfig().to_dict()
    assert TrainingConfig.from_dict({**saved, "mlm_epochs": 0.0, "layer_decay": 1.0}) == (
        TrainingConfig()
    )
    for name, value in (("mlm_epochs", 3.0), ("layer_decay", 0.9), ("average_last", 3)):
        with pytest.raises(InputError, match=f"--{name.replace('_', '-')}.*retired"):
            TrainingConfig.from_dict({**saved, name: value}, "train_config.json")
