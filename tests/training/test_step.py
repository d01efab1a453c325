"""The optimizer step: one batch of 128 and 64 x 2 accumulated give the same update; how many
micro-batches a device runs, and where the choice is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig

from newsclf.training import NewsTrainer, StepPlan
from newsclf.training.hardware import MAX_MERGED_ROWS, plan_step
from tests.conftest import save_tiny_bert, tiny_training_config

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def tiny_bert_without_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_tiny_bert(tmp_path_factory.mktemp("no-dropout"), layers=2)
    config = BertConfig.from_pretrained(folder)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(folder)
    return folder


def _train(model_dir: Path, output_dir: Path, batch_size: int, grad_accum: int):  # type: ignore[no-untyped-def]
    config = tiny_training_config(
        model_dir,
        output_dir,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_train_samples=256,  # two optimizer steps of 128 per epoch
        epochs=2,
        validation_fraction=0.0,  # no evaluation: the last weights are kept
        precision="fp32",
        test_file=None,
    )
    return NewsTrainer(config).train()


def test_one_batch_of_128_and_64_x_2_give_the_same_weights(
    tiny_bert_without_dropout: Path, tmp_path: Path
) -> None:
    """Same rows per step in the same order, losses averaged over micro-batches: four AdamW
    steps of 128 rows end at the same weights either way (dropout off, fp32). The training
    loss checks the averaging too (AdamW alone would hide a doubled gradient)."""
    accumulated = _train(tiny_bert_without_dropout, tmp_path / "64x2", 64, 2)
    merged = _train(tiny_bert_without_dropout, tmp_path / "128x1", 128, 1)
    assert accumulated.steps == merged.steps == 4
    assert accumulated.training.step == StepPlan(64, 2, "micro-batches as configured on the CPU")
    assert merged.training.step == StepPlan(128, 1, "no accumulation asked for")
    start = load_file(tiny_bert_without_dropout / "model.safetensors")
    a = load_file(accumulated.best_dir / "model.safetensors")
    b = load_file(merged.best_dir / "model.safetensors")
    assert a.keys() == b.keys()
    moved = max((a["bert." + k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-3  # the steps did change the weights
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
    assert accumulated.training.train_loss == pytest.approx(merged.training.train_loss, rel=1e-5)


def test_metrics_json_records_the_step(tiny_run) -> None:  # type: ignore[no-untyped-def]
    metrics = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    assert metrics["training"]["step"] == {
        "micro_batch": 16,
        "grad_accum": 1,
        "effective_batch": 16,
        "why": "no accumulation asked for",
    }


def _gpu_with_room_for(rows_that_fit: int):  # type: ignore[no-untyped-def]
    asked: list[int] = []

    def fits(rows: int, length: int) -> tuple[bool, str]:
        asked.append(rows)
        return rows <= rows_that_fit, f"{rows} rows ran out of GPU memory"

    return fits, asked


def test_a_gpu_runs_the_fewest_micro_batches_that_fit() -> None:
    fits, asked = _gpu_with_room_for(1_000_000)
    plan = plan_step(64, 2, merge=True, device=CUDA, max_length=128, fits=fits)
    assert (plan.micro_batch, plan.grad_accum, asked) == (128, 1, [128])
    assert plan.why == "64 x 2 merged: fits in GPU memory at 128 tokens"

    fits, asked = _gpu_with_room_for(128)
    plan = plan_step(32, 8, merge=True, device=CUDA, fits=fits)
    assert (plan.micro_batch, plan.grad_accum, asked) == (128, 2, [256, 128])

    fits, asked = _gpu_with_room_for(63)
    plan = plan_step(64, 2, merge=True, device=CUDA, fits=fits)
    assert (plan.micro_batch, plan.grad_accum, asked) == (64, 2, [128])
    assert plan.why == "micro-batches as configured: 128 rows ran out of GPU memory"


def test_merging_stops_at_the_largest_batch_and_where_it_cannot_apply() -> None:
    fits, asked = _gpu_with_room_for(1_000_000)
    plan = plan_step(MAX_MERGED_ROWS, 4, merge=True, device=CUDA, fits=fits)
    assert (plan.micro_batch, plan.grad_accum, asked) == (MAX_MERGED_ROWS, 4, [])
    for kwargs, why in [
        ({"merge": False, "device": CUDA}, "--no-merge-accumulation"),
        ({"merge": True, "device": CUDA, "processes": 2}, "2 processes keep"),
        ({"merge": True, "device": torch.device("cpu")}, "as configured on the CPU"),
    ]:
        plan = plan_step(64, 2, fits=fits, **kwargs)  # type: ignore[arg-type]
        assert (plan.micro_batch, plan.grad_accum) == (64, 2) and why in plan.why
    assert asked == []  # nothing was probed
