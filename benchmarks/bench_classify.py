"""How much faster is newsclf classify than what a user would run instead, at what accuracy?

Every engine classifies the same rows with the same fine-tuned model, in its own subprocess
(so that peak memory is its own), one after the other on the same machine:

  pipeline        Hugging Face pipeline("text-classification"), PyTorch fp32: the baseline
  torch-bf16      a plain PyTorch loop with bf16 autocast, batches in file order
  torch-bf16-sorted  the same with batches sorted by length (newsclf's batching, for reference)
  newsclf-<v>     newsclf classify (file in, file out) with each exported variant <v>
  on CUDA also:   pipeline-cuda, torch-fp16-cuda, newsclf-<v>-cuda

Rows/s are end to end (tokenization included; newsclf also reads, cleans and writes the file).

    python benchmarks/bench_classify.py --model models/RUN --data ../shared/data/ag_news/test.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# -- one engine, in a subprocess -----------------------------------------------------------


def _texts_and_labels(data: Path, rows: int, model_dir: Path) -> tuple[list[str], list[str]]:
    """The rows as the model sees them: its saved text columns and cleaning."""
    from newsclf.config import PreprocessingConfig
    from newsclf.data import resolve_text_columns
    from newsclf.tables import read_table
    from newsclf.text import prepare_texts

    pre = PreprocessingConfig.load(model_dir)
    columns, chunk = read_table(data)
    trained = pre.text_columns if all(c in columns for c in pre.text_columns) else []
    text_columns = resolve_text_columns(columns, trained, str(data))
    records = chunk.rows[:rows]
    texts = prepare_texts(
        ([r.get(c) for c in text_columns] for r in records), clean=pre.clean, separator=" "
    )
    return texts, [str(r.get("label", "")) for r in records]


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _torch_engine(args: argparse.Namespace, best: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    texts, labels = _texts_and_labels(args.data, args.rows, best)
    cuda = args.engine.endswith("-cuda")
    device = torch.device("cuda" if cuda else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(best)
    dtype = torch.float16 if args.engine.startswith("torch-fp16") else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(best, dtype=dtype).to(device).eval()
    id2label = model.config.id2label
    latencies: list[float] = []
    tokens = 0

    if args.engine.startswith("pipeline"):
        classifier = pipeline(
            "text-classification", model=model, tokenizer=tokenizer, device=device
        )
        run_kwargs = {
            "batch_size": args.batch_size,
            "truncation": True,
            "max_length": args.max_length,
        }
        classifier(texts[: args.batch_size * 2], **run_kwargs)  # warm-up
        started = time.perf_counter()
        predicted = []
        for start in range(0, len(texts), args.batch_size):
            t0 = time.perf_counter()
            out = classifier(texts[start : start + args.batch_size], **run_kwargs)
            _sync(cuda)
            latencies.append(time.perf_counter() - t0)
            predicted += [o["label"] for o in out]
        wall = time.perf_counter() - started
        tokens = sum(
            len(i)
            for i in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]
        )
    else:
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if args.engine.startswith("torch-bf16")
            else torch.autocast("cuda", enabled=False)
            if cuda
            else torch.autocast("cpu", enabled=False)
        )

        def run(batch_texts: list[str]) -> np.ndarray:
            batch = tokenizer(
                batch_texts,
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode(), autocast:
                logits = model(**batch).logits
            return logits.float().argmax(-1).cpu().numpy(), int(batch["attention_mask"].sum())

        if cuda and args.engine.endswith("-sorted"):
            # As newsclf trains: no cuDNN attention, which plans anew for every batch length.
            torch.backends.cuda.enable_cudnn_sdp(False)
        run(texts[: args.batch_size])
        run(texts[args.batch_size : 2 * args.batch_size])  # warm-up
        started = time.perf_counter()
        order = list(range(len(texts)))
        if args.engine.endswith("-sorted"):  # what newsclf does: batches of similar length
            lengths = [
                len(i)
                for i in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]
            ]
            order = sorted(order, key=lengths.__getitem__)
        predicted_by_row: dict[int, str] = {}
        for start in range(0, len(texts), args.batch_size):
            rows = order[start : start + args.batch_size]
            t0 = time.perf_counter()
            ids, batch_tokens = run([texts[i] for i in rows])
            latencies.append(time.perf_counter() - t0)
            tokens += batch_tokens
            predicted_by_row.update(
                {row: id2label[int(i)] for row, i in zip(rows, ids, strict=True)}
            )
        predicted = [predicted_by_row[i] for i in range(len(texts))]
        wall = time.perf_counter() - started
    return _result(args, wall, len(texts), tokens, latencies, predicted, labels, device=str(device))


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _newsclf_engine(args: argparse.Namespace, export_dir: Path) -> dict[str, Any]:
    from newsclf.classify import ClassifyOptions, classify_file
    from newsclf.inference import OnnxClassifier
    from newsclf.runtime import ExportFolder

    variant = args.engine.removeprefix("newsclf-").removesuffix("-cuda")
    device = "cuda" if args.engine.endswith("-cuda") else "cpu"
    classifier = OnnxClassifier(
        ExportFolder.load(export_dir), device=device, variant=variant, batch_size=args.batch_size
    )
    source = args.data
    if args.rows:
        source = _first_rows(args.data, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        warm = _first_rows(args.data, args.batch_size * 2)
        classify_file(warm, classifier, ClassifyOptions(output=Path(tmp) / "warm.csv"))
        output = Path(tmp) / f"out{source.suffix}"
        result = classify_file(source, classifier, ClassifyOptions(output=output))
        predicted = [row["predicted_label"] for row in _read_rows(output)]
    labels = [str(r.get("label", "")) for r in _read_rows(source)]
    return _result(
        args,
        result.wall_s,
        result.rows,
        result.tokens,
        [ms / 1000 for ms in result.batch_latencies_ms],
        predicted,
        labels,
        device=device,
        provider=classifier.provider,
        stages=result.stages.__dict__,
    )


def _first_rows(data: Path, rows: int) -> Path:
    """The first `rows` rows of `data` as a CSV in a temporary folder (the same rows for all)."""
    target = Path(tempfile.gettempdir()) / f"newsclf-bench-{os.getpid()}-{rows}{data.suffix}"
    with (
        open(data, newline="", encoding="utf-8") as src,
        open(target, "w", newline="", encoding="utf-8") as out,
    ):
        reader = csv.reader(src)
        writer = csv.writer(out)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i >= rows:
                break
            writer.writerow(row)
    return target


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _result(
    args: argparse.Namespace,
    wall: float,
    rows: int,
    tokens: int,
    latencies: list[float],
    predicted: list[str],
    labels: list[str],
    **extra: Any,
) -> dict[str, Any]:
    known = [(p, t) for p, t in zip(predicted, labels, strict=False) if t]
    return {
        "engine": args.engine,
        "rows": rows,
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 2),
        "tokens_per_s": round(tokens / wall, 1),
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "latency_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "accuracy": round(float(np.mean([p == t for p, t in known])), 5) if known else None,
        "batch_size": args.batch_size,
        **extra,
    }


# -- the orchestrator ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from newsclf.environment import machine_summary

    return machine_summary()


def engines_for(export_dir: Path, cuda: bool) -> list[str]:
    from newsclf.runtime import ExportFolder

    variants = [
        v for v in ("fp32", "optimized", "int8") if v in ExportFolder.load(export_dir).variants
    ]
    engines = ["pipeline", "torch-bf16", "torch-bf16-sorted", *[f"newsclf-{v}" for v in variants]]
    if cuda:
        cuda_variants = [v for v in ("fp32", "fp16") if v in ExportFolder.load(export_dir).variants]
        engines += [
            "pipeline-cuda",
            "torch-fp16-cuda",
            *[f"newsclf-{v}-cuda" for v in cuda_variants],
        ]
    return engines


def run_engine(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        target = Path(out.name)
    command = [
        sys.executable,
        __file__,
        "--engine",
        engine,
        "--model",
        str(args.model),
        "--data",
        str(args.data),
        "--rows",
        str(args.rows),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--engine-output",
        str(target),
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"engine": engine, "error": completed.stderr.strip().splitlines()[-1:] or ["failed"]}
    result = json.loads(target.read_text())
    target.unlink()
    return result


def render(results: list[dict[str, Any]], baseline: str) -> Any:
    from rich.table import Table

    base = next((r for r in results if r["engine"] == baseline and "error" not in r), None)
    table = Table(title=f"classify throughput (ratio to {baseline})", title_justify="left")
    for name in (
        "engine",
        "rows/s",
        "ratio",
        "tokens/s",
        "p50 ms",
        "p95 ms",
        "peak RSS MB",
        "accuracy",
    ):
        table.add_column(name, justify="left" if name == "engine" else "right")
    for r in results:
        if "error" in r:
            table.add_row(r["engine"], "error: " + " ".join(r["error"]), *[""] * 6)
            continue
        ratio = r["rows_per_s"] / base["rows_per_s"] if base else float("nan")
        table.add_row(
            r["engine"],
            f"{r['rows_per_s']:,.1f}",
            f"{ratio:.2f}x",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['latency_p50_ms']:.1f}",
            f"{r['latency_p95_ms']:.1f}",
            f"{r['peak_rss_mb']:,.0f}",
            "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%",
        )
    return table


def markdown(results: list[dict[str, Any]], meta: dict[str, Any], baseline: str) -> str:
    base = next((r for r in results if r["engine"] == baseline and "error" not in r), None)
    lines = [
        f"# classify benchmark, {meta['date']}",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"GPU: {meta['machine']['gpu'] or 'none'}. Model: `{meta['model']}`. "
        f"Data: `{meta['data']}`, {meta['rows'] or 'all'} rows, batch {meta['batch_size']}, "
        f"max length {meta['max_length']}.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| engine | rows/s | ratio to pipeline | tokens/s | p50 ms | p95 ms | peak RSS MB | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['engine']} | error: {' '.join(r['error'])} | | | | | | |")
            continue
        ratio = r["rows_per_s"] / base["rows_per_s"] if base else float("nan")
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        lines.append(
            f"| {r['engine']} | {r['rows_per_s']:,.1f} | {ratio:.2f}x | {r['tokens_per_s']:,.0f} | "
            f"{r['latency_p50_ms']:.1f} | {r['latency_p95_ms']:.1f} | {r['peak_rss_mb']:,.0f} | {acc} |"
        )
    return "\n".join(lines) + "\n"


def results_stem(meta: dict[str, Any], kind: str) -> str:
    cpu = "".join(c if c.isalnum() else "-" for c in meta["machine"]["cpu"]).strip("-").lower()
    gpu = meta["machine"]["gpu"]
    gpu_part = "-" + "".join(c if c.isalnum() else "-" for c in gpu).lower() if gpu else ""
    return f"{meta['date'][:10]}-{kind}-{cpu}-{meta['machine']['cores']}c{gpu_part}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="run folder (with best/ and onnx/)"
    )
    parser.add_argument("--data", type=Path, required=True, help="labelled CSV")
    parser.add_argument("--rows", type=int, default=1000, help="rows to classify (0 = all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--engines", help="comma-separated subset of engines")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--engine-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    best, export_dir = args.model / "best", args.model / "onnx"
    if args.engine:  # a child process: one engine
        engine = _newsclf_engine if args.engine.startswith("newsclf-") else _torch_engine
        result = engine(args, export_dir if args.engine.startswith("newsclf-") else best)
        args.engine_output.write_text(json.dumps(result))
        return

    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (the shared AG News data is not on this machine?)")
    import torch
    from rich.console import Console

    console = Console(width=120)
    engines = (
        args.engines.split(",")
        if args.engines
        else engines_for(export_dir, torch.cuda.is_available())
    )
    results = []
    for engine in engines:
        with console.status(f"running {engine}..."):
            result = run_engine(args, engine)
        results.append(result)
        console.print(f"{engine}: {result.get('rows_per_s', result.get('error'))} rows/s")
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": str(args.model),
        "data": str(args.data),
        "rows": args.rows,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "command": " ".join(["python", "benchmarks/bench_classify.py", *sys.argv[1:]]),
        "python": platform.python_version(),
    }
    console.print(render(results, "pipeline"))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = results_stem(meta, "classify")
    (args.output_dir / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    (args.output_dir / f"{stem}.md").write_text(markdown(results, meta, "pipeline"))
    console.print(f"written: {args.output_dir / stem}.json and .md")


if __name__ == "__main__":
    main()
