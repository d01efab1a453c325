"""The model card (RUN/README.md) of a run folder, written from its metrics.json: one writer for
training runs and soups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from newsclf.artifacts.run_folder import RunFolder
from newsclf.metrics import percent


def model_card(run_dir: Path, metrics: dict[str, Any]) -> str:
    """The card of the run in `run_dir` whose metrics.json is `metrics`."""
    kind = metrics.get("kind")
    if kind == "soup":
        lines = _soup_lines(metrics)
    elif kind == "distill":
        lines = _distill_lines(metrics)
    else:
        lines = _training_lines(metrics)
    test = metrics.get("test")
    if test:
        lines.append(
            f"- test accuracy {percent(test['accuracy'])}, macro-F1 {percent(test['f1_macro'])} "
            f"({test['rows']:,} rows)"
        )
    lines += [
        "",
        "## Use",
        "",
        "```",
        f"newsclf export --onnx --checkpoint {run_dir}",
        f"newsclf classify input.csv --model {RunFolder(run_dir).export_dir}",
        "```",
        "",
        "`best/` (or each of `members/`) is a standard Hugging Face folder "
        "(AutoModelForSequenceClassification); `newsclf_preprocessing.json` beside it holds "
        "the text cleaning and tokenization settings.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(run_dir: Path, metrics: dict[str, Any]) -> Path:
    from newsclf.io import write_text_atomic

    return write_text_atomic(RunFolder(run_dir).model_card, model_card(run_dir, metrics))


def _training_lines(metrics: dict[str, Any]) -> list[str]:
    config = metrics["config"]
    pre = config["preprocessing"]
    data = metrics["data"]
    training = metrics["training"]
    best = metrics["best"]
    if data["validation_rows"]:
        kept = (
            f"- best validation {best['metric']} {percent(best['value'])} at step {best['step']}"
            + (" (stopped early)" if metrics.get("stopped_early") else "")
        )
    else:
        kept = (
            "- no validation split: every training row trained; the weights are those of the "
            f"last step ({best['step']})"
        )
    recipe = (
        f"learning rate {config['learning_rate']}, batch {config['batch_size']} x accumulation "
        f"{config['grad_accum']}, eval batch {config['eval_batch_size']}, {config['epochs']} "
        f"epochs, weight decay {config['weight_decay']}, warm-up {config['warmup_ratio']}, "
        f"early-stopping patience {config['patience']} on {config['metric']}, seed "
        f"{config['seed']}"
    )
    if config.get("train_seed") is not None:
        recipe += f", train seed {config['train_seed']}"
    if config.get("rdrop"):
        recipe += f", R-Drop {config['rdrop']}"
    return [
        f"# newsclf run: {metrics['model']}",
        "",
        f"Text classifier fine-tuned by newsclf on {data['source']} ({data['train_rows']:,} "
        f"training rows; validation: {data['validation_source']}).",
        "",
        f"Classes: {', '.join(metrics['label_names'])}.",
        f"Text: columns {' + '.join(data['text_columns'])}, cleaning "
        f"{'on' if pre['clean'] else 'off'}, max length {pre['max_length']} tokens.",
        "",
        "## Recipe",
        "",
        recipe + ".",
        "",
        "## Results",
        "",
        kept,
        f"- training: {training['wall_time_s']:.0f} s wall, {training['samples_per_s']:.1f} "
        f"samples/s on {training['device']} ({training['precision']})",
    ]


def _soup_lines(metrics: dict[str, Any]) -> list[str]:
    soup = metrics["soup"]
    used = soup["ingredients"]
    if soup["method"] == "ensemble":
        what = (
            f"The ensemble of {len(used)} runs: their class probabilities averaged, one forward "
            "pass per run and row."
        )
    else:
        what = f"The average of {len(used)} runs' weights (a uniform model soup)."
    missing = "n/a (no validation split)"
    lines = [
        "# newsclf soup",
        "",
        what,
        "",
        "## Ingredients",
        "",
        f"Each run alone on validation {soup['metric']} ({soup['validation_rows']:,} rows):",
        "",
    ]
    lines += [
        f"- {item['run_dir']}: {percent(item['validation_score'], missing)}"
        for item in soup["ingredients"]
    ]
    lines += [
        "",
        "## Results",
        "",
        f"- validation {soup['metric']}: weights averaged (soup) "
        f"{percent(soup['soup_validation_score'], missing)}, predictions averaged (ensemble) "
        f"{percent(soup['ensemble_validation_score'], missing)}; this folder holds the "
        f"{'ensemble' if soup['method'] == 'ensemble' else 'soup'}",
    ]
    return lines


def _distill_lines(metrics: dict[str, Any]) -> list[str]:
    """A distilled student (newsclf distill): what it was cut from, then its training run."""
    distill = metrics["distill"]
    training = _training_lines(metrics)
    kept = ", ".join(str(i) for i in distill["kept_layers"])
    teacher = (
        f"{distill['teacher']} ({distill['teacher_kind']}, {distill['teacher_layers']} layers)"
    )
    about = (
        f"A distilled student of {teacher} with {distill['layers']} encoder layers: the "
        f"teacher's layers {kept} (counting from 0), with its embeddings, pooler and head, "
        "as the start, then trained on the teacher's soft targets (temperature "
        f"{distill['temperature']}, weight {distill['soft_weight']}) and the true labels of "
        f"{distill['train_rows']:,} training rows"
    )
    if distill["transfer_rows"]:
        about += f", plus {distill['transfer_rows']:,} unlabelled transfer texts"
    results = []
    for split in ("validation", "test"):
        comparison = distill.get(split)
        if comparison:
            results.append(
                f"- {split}: agrees with the teacher on {percent(comparison['agreement'])} of "
                f"{comparison['rows']:,} rows; accuracy {percent(comparison['student_accuracy'])} "
                f"(teacher {percent(comparison['teacher_accuracy'])})"
            )
    return [
        f"# newsclf distilled student: {distill['layers']} layers of {distill['teacher']}",
        "",
        about + ".",
        *training[1:],
        *results,
    ]
