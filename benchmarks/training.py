"""One training setup in its own process; prints one JSON line (samples/s over steady steps).

  default-trainer  the Trainer as a user would write it: TrainingArguments defaults (fp32,
                   random batches, the default collator), the same batch and accumulation
  newsclf          `newsclf.train()` itself: what `newsclf train` runs
  newsclf-accumulate, newsclf-ungrouped
                   the same with --no-merge-accumulation, with --no-group-by-length
  newsclf-compile, newsclf-cudagraphs
                   the same with the Trainer's torch.compile (mode default, reduce-overhead:
                   CUDA graphs), candidates that no option offers until they measure faster

Both see the same rows and the same model, and are timed by the same clock
(`newsclf.training.StepClock`: from the end of the first fifth of the steps to the last,
evaluations excluded).

    python -m benchmarks.training SETUP MODEL DATA ROWS STEPS BATCH ACCUM [TOKENIZER [SIZE]]

MODEL `bert-base-shape` is made on the spot (random weights; TOKENIZER: its tokenizer's folder,
default the embedded package's; SIZE: bert-base or toy).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any


def _model_folder(model: str, work: Path, tokenizer: Path | None, size: str) -> str:
    if model != "bert-base-shape":
        return model
    import argparse

    from benchmarks.__main__ import make_model

    target = work / "bert-base-shape"
    make_model(
        argparse.Namespace(
            target=target, tokenizer=tokenizer, export_device=None, data=None, size=size
        )
    )
    return str(target)


def _provider() -> str:
    import torch

    return "torch-cuda" if torch.cuda.is_available() else "torch-cpu"


def _rows_file(data: Path, rows: int, work: Path) -> Path:
    from benchmarks.rows import load_rows, write_csv
    from newsclf.artifacts import PreprocessingConfig

    return write_csv(load_rows(data, rows, PreprocessingConfig()), work / "train.csv")


# What each newsclf setup changes: options, or the Trainer's torch.compile mode.
NEWSCLF_SETUPS: dict[str, tuple[dict[str, Any], str | None]] = {
    "newsclf": ({}, None),
    "newsclf-accumulate": ({"merge_accumulation": False}, None),
    "newsclf-ungrouped": ({"group_by_length": False}, None),
    "newsclf-compile": ({}, "default"),
    "newsclf-cudagraphs": ({}, "reduce-overhead"),
}


def newsclf_setup(
    model: str,
    train_file: Path,
    steps: int,
    batch: int,
    accum: int,
    work: Path,
    setup: str = "newsclf",
) -> dict[str, Any]:
    from dataclasses import replace

    from newsclf import TrainingConfig
    from newsclf.training import NewsTrainer

    with open(train_file, encoding="utf-8") as handle:
        rows = sum(1 for _ in handle) - 1
    train_rows = rows - math.ceil(rows * 0.05)  # less the validation share
    options, compile_mode = NEWSCLF_SETUPS[setup]
    config = TrainingConfig(
        model=model,
        train_file=train_file,
        output_dir=work / "run",
        batch_size=batch,
        grad_accum=accum,
        epochs=steps * batch * accum / train_rows,
        **options,
    )

    class Compiled(NewsTrainer):
        def _training_args(self, *args: Any, **kwargs: Any) -> Any:
            arguments = super()._training_args(*args, **kwargs)
            return replace(arguments, torch_compile=True, torch_compile_mode=compile_mode)

    result = (Compiled if compile_mode else NewsTrainer)(config).train()
    # The figure `newsclf train` reports: metrics.json, training.steady_samples_per_s.
    metrics = json.loads((result.run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {
        "setup": setup,
        "provider": _provider(),
        "precision": result.training.precision,
        "group_by_length": config.group_by_length,
        "samples_per_s": metrics["training"]["steady_samples_per_s"],
        "samples_per_s_all_steps": metrics["training"]["samples_per_s"],
        "steps": result.steps,
        "step": metrics["training"]["step"],
        "device": result.training.device,
        "test_accuracy": None,
    }


def default_setup(
    model: str, train_file: Path, steps: int, batch: int, accum: int, work: Path
) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from newsclf.io import choose_text_columns, label_names_from, read_table, texts_from_rows
    from newsclf.training import LabeledTexts, StepClock, TokenizedTexts, resolve_model

    source, _ = resolve_model(model)
    columns, chunk = read_table(train_file)
    texts = texts_from_rows(
        chunk.rows, choose_text_columns(columns, where="rows"), clean=True, separator=" "
    )
    names = label_names_from([r["label"] for r in chunk.rows])
    labels = [names.index(r["label"]) for r in chunk.rows]
    tokenizer = AutoTokenizer.from_pretrained(source)
    network = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(names))
    dataset = TokenizedTexts(LabeledTexts(texts, labels), tokenizer, 128)
    clock = StepClock(batch * accum)
    arguments = TrainingArguments(
        output_dir=str(work / "default"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        learning_rate=2e-5,
        max_steps=steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=network,
        args=arguments,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[clock],
    )
    trainer.train()
    return {
        "setup": "default-trainer",
        "provider": _provider(),
        "precision": "fp32",
        "group_by_length": False,
        "samples_per_s": clock.steady_samples_per_s,
        "steps": trainer.state.global_step,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "test_accuracy": None,
    }


def main() -> None:
    setup, model, data, rows, steps, batch, accum = sys.argv[1:8]
    tokenizer = Path(sys.argv[8]) if len(sys.argv) > 8 and sys.argv[8] else None
    size = sys.argv[9] if len(sys.argv) > 9 else "bert-base"
    with tempfile.TemporaryDirectory(prefix="nbench-train-") as tmp:
        work = Path(tmp)
        folder = _model_folder(model, work, tokenizer, size)
        train_file = _rows_file(Path(data), int(rows), work)
        figures = (folder, train_file, int(steps), int(batch), int(accum), work)
        if setup == "default-trainer":
            record = default_setup(*figures)
        else:
            record = newsclf_setup(*figures, setup=setup)
    if record["samples_per_s"] is not None:  # None: too few steps for a steady figure
        record["samples_per_s"] = round(record["samples_per_s"], 2)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
