"""A short model card for a training run, written from its metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def write_model_card(run_dir: Path, metrics: dict[str, Any]) -> Path:
    cfg = metrics["config"]
    data = metrics["data"]
    training = metrics["training"]
    test = metrics.get("test")
    lines = [
        f"# newsclf run: {metrics['model']}",
        "",
        f"Text classifier fine-tuned by newsclf on {data['source']} "
        f"({data['train_rows']:,} training rows; validation: {data['validation_source']}).",
        "",
        f"Classes: {', '.join(metrics['label_names'])}.",
        f"Text: columns {' + '.join(data['text_columns'])}, "
        f"cleaning {'on' if cfg['preprocessing']['clean'] else 'off'}, "
        f"max length {cfg['preprocessing']['max_length']} tokens.",
        "",
        "## Results",
        "",
    ]
    if test:
        lines += [
            f"- test accuracy: {_pct(test['accuracy'])}, macro-F1: {_pct(test['f1_macro'])} "
            f"({test['rows']:,} rows)",
        ]
    best = metrics["best"]
    lines += [
        f"- best validation {best['metric']}: {_pct(best['value'])} at step {best['step']}"
        + (" (stopped early)" if metrics["stopped_early"] else ""),
        f"- training: {training['wall_time_s']:.0f} s wall, "
        f"{training['samples_per_s']:.1f} samples/s "
        f"on {training['device']} ({training['precision']})",
        "",
        "## Recipe",
        "",
        f"learning rate {cfg['learning_rate']}, batch {cfg['batch_size']} x accumulation "
        f"{cfg['grad_accum']}, eval batch {cfg['eval_batch_size']}, {cfg['epochs']} epochs, "
        f"weight decay {cfg['weight_decay']}, warm-up {cfg['warmup_ratio']}, "
        f"early-stopping patience {cfg['patience']} on {cfg['metric']}, seed {cfg['seed']}.",
        "",
        "## Use",
        "",
        "```",
        f"newsclf export --onnx --checkpoint {run_dir}",
        "newsclf classify input.csv --model " + str(Path(run_dir) / "onnx"),
        "```",
        "",
        "`best/` is a standard Hugging Face folder (AutoModelForSequenceClassification); "
        "`newsclf_preprocessing.json` beside it holds the text cleaning and tokenization settings.",
        "",
    ]
    path = Path(run_dir) / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
