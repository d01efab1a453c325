"""Training samples/s: newsclf train's setup against a default Trainer, same model and rows.

  default   TrainingArguments defaults: fp32, random batches (dynamic padding by the default
            collator), the same batch size and accumulation
  newsclf   what `newsclf train` sets up: bf16 autocast where the hardware runs it natively
            (AVX512-BF16/AMX CPUs, bf16 GPUs), batches grouped by length

Each setup runs in its own subprocess: a few warm-up optimizer steps, then a fixed number of
timed steps; samples/s = timed samples / timed seconds.

    python benchmarks/bench_train.py --model embedded --data ../shared/data/ag_news/train.csv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SETUPS = ("default", "newsclf")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from newsclf.data import LabeledTexts, label_names_from
    from newsclf.hub import resolve_model
    from newsclf.tables import read_table
    from newsclf.text import prepare_texts
    from newsclf.training import TokenizedTexts, choose_precision

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    source, _ = resolve_model(args.model)
    columns, chunk = read_table(args.data)
    text_columns = ["text"] if "text" in columns else ["title", "description"]
    rows = chunk.rows[: args.rows]
    texts = prepare_texts(([r[c] for c in text_columns] for r in rows), clean=True)
    names = label_names_from([r["label"] for r in rows])
    labels = [names.index(r["label"]) for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(source)
    if args.bert_base_shape:
        from transformers import BertConfig, BertForSequenceClassification

        model = BertForSequenceClassification(BertConfig(num_labels=len(names)))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(names), dtype=torch.float32
        )
    dataset = TokenizedTexts(LabeledTexts(texts, labels), tokenizer, args.max_length)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    newsclf = args.setup == "newsclf"
    precision = choose_precision("auto", device) if newsclf else "fp32"

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.start = self.end = 0.0

        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            if state.global_step == args.warmup_steps:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            learning_rate=2e-5,
            max_steps=args.warmup_steps + args.steps,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            train_sampling_strategy="group_by_length" if newsclf else "random",
            use_cpu=device.type == "cpu",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=42,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[clock],
        )
        trainer.train()
    samples = args.steps * args.batch_size * args.grad_accum
    return {
        "setup": args.setup,
        "precision": precision,
        "group_by_length": newsclf,
        "samples_per_s": round(samples / (clock.end - clock.start), 2),
        "timed_samples": samples,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps")
    parser.add_argument(
        "--bert-base-shape", action="store_true", help="random BertConfig() weights"
    )
    parser.add_argument("--setup", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    args = parser.parse_args()

    if args.setup:
        args.output.write_text(json.dumps(measure(args)))
        return
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (the shared AG News data is not on this machine?)")

    from rich.console import Console
    from rich.table import Table

    from newsclf.environment import machine_summary

    console = Console()
    results = []
    for setup in SETUPS:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            out = Path(handle.name)
        command = [sys.executable, __file__, "--setup", setup, "--output", str(out)]
        for name in (
            "model",
            "data",
            "rows",
            "batch_size",
            "grad_accum",
            "max_length",
            "warmup_steps",
            "steps",
        ):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        if args.bert_base_shape:
            command.append("--bert-base-shape")
        with console.status(f"training with the {setup} setup..."):
            completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"{setup} failed:\n{completed.stderr[-3000:]}")
        results.append(json.loads(out.read_text()))
        out.unlink()
        console.print(f"{setup}: {results[-1]['samples_per_s']} samples/s")

    base = results[0]["samples_per_s"]
    table = Table(title="training samples/s (ratio to the default Trainer)", title_justify="left")
    for name in ("setup", "precision", "length grouping", "samples/s", "ratio"):
        table.add_column(name)
    for r in results:
        table.add_row(
            r["setup"],
            r["precision"],
            str(r["group_by_length"]),
            f"{r['samples_per_s']:.1f}",
            f"{r['samples_per_s'] / base:.2f}x",
        )
    console.print(table)
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_summary(),
        "command": " ".join(["python", "benchmarks/bench_train.py", *sys.argv[1:]]),
        "model": args.model,
        "rows": args.rows,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "steps": args.steps,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    cpu = "".join(c if c.isalnum() else "-" for c in meta["machine"]["cpu"]).strip("-").lower()
    gpu = meta["machine"]["gpu"]
    gpu_part = "-" + "".join(c if c.isalnum() else "-" for c in gpu).lower() if gpu else ""
    stem = f"{meta['date'][:10]}-train-{cpu}-{meta['machine']['cores']}c{gpu_part}"
    (args.output_dir / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    lines = [
        f"# training benchmark, {meta['date']}",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, GPU: {gpu or 'none'}. "
        f"Model: {args.model}; {args.rows} rows; batch {args.batch_size} x accumulation {args.grad_accum}; "
        f"{args.steps} timed optimizer steps after {args.warmup_steps} warm-up steps.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| setup | precision | length grouping | samples/s | ratio |",
        "| --- | --- | --- | ---: | ---: |",
        *[
            f"| {r['setup']} | {r['precision']} | {r['group_by_length']} | {r['samples_per_s']:.1f} | "
            f"{r['samples_per_s'] / base:.2f}x |"
            for r in results
        ],
    ]
    (args.output_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    console.print(f"written: {args.output_dir / stem}.json and .md")


if __name__ == "__main__":
    main()
