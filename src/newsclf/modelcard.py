"""A short model card for a training run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from newsclf.atomic import write_text_atomic
from newsclf.runs import MODEL_CARD_FILE

if TYPE_CHECKING:
    from newsclf.training import TrainResult


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def model_card(result: TrainResult) -> str:
    cfg = result.config
    pre = cfg.preprocessing
    data = result.data
    training = result.training
    lines = [
        f"# newsclf run: {result.model}",
        "",
        f"Text classifier fine-tuned by newsclf on {data.source} "
        f"({data.train_rows:,} training rows; validation: {data.validation_source}).",
        "",
        f"Classes: {', '.join(result.label_names)}.",
        f"Text: columns {' + '.join(data.text_columns)}, "
        f"cleaning {'on' if pre.clean else 'off'}, max length {pre.max_length} tokens.",
        "",
        "## Results",
        "",
    ]
    if result.test:
        lines.append(
            f"- test accuracy: {_pct(result.test.accuracy)}, macro-F1: "
            f"{_pct(result.test.f1_macro)} ({result.test.rows:,} rows)"
        )
    lines += [
        (
            f"- best validation {result.best.metric}: {_pct(result.best.value)} at step "
            f"{result.best.step}" + (" (stopped early)" if result.stopped_early else "")
            if data.validation_rows
            else f"- no validation split: every training row trained; the weights are those "
            f"of the last step ({result.best.step})"
        ),
        f"- training: {training.wall_time_s:.0f} s wall, {training.samples_per_s:.1f} samples/s "
        f"on {training.device} ({training.precision})",
        "",
        "## Recipe",
        "",
        f"learning rate {cfg.learning_rate}, batch {cfg.batch_size} x accumulation "
        f"{cfg.grad_accum}, eval batch {cfg.eval_batch_size}, {cfg.epochs} epochs, "
        f"weight decay {cfg.weight_decay}, warm-up {cfg.warmup_ratio}, "
        f"early-stopping patience {cfg.patience} on {cfg.metric}, seed {cfg.seed}"
        + (f", train seed {cfg.train_seed}" if cfg.train_seed is not None else "")
        + (f", R-Drop {cfg.rdrop}" if cfg.rdrop else "")
        + (f", {cfg.mlm_epochs} epochs of masked-LM pre-training first" if cfg.mlm_epochs else "")
        + (f", layer-wise learning-rate decay {cfg.layer_decay}" if cfg.layer_decay < 1 else "")
        + _averaging_note(result)
        + ".",
        "",
        "## Use",
        "",
        "```",
        f"newsclf export --onnx --checkpoint {result.run_dir}",
        f"newsclf classify input.csv --model {Path(result.run_dir) / 'onnx'}",
        "```",
        "",
        "`best/` is a standard Hugging Face folder (AutoModelForSequenceClassification); "
        "`newsclf_preprocessing.json` beside it holds the text cleaning and tokenization settings.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(result: TrainResult) -> Path:
    return write_text_atomic(Path(result.run_dir) / MODEL_CARD_FILE, model_card(result))


def _averaging_note(result: TrainResult) -> str:
    avg = result.averaging
    if avg is None:
        return ""
    kept = "kept" if avg.kept else "not kept"
    return (
        f"; the average of the last {len(avg.steps)} evaluations' weights was {kept} "
        f"(validation {avg.metric} {100 * avg.average:.2f}% vs {100 * avg.best_checkpoint:.2f}%)"
    )
