"""python -m benchmarks SUITE ...: every measurement newsclf reports.

  classify   engines side by side on the same rows (own process each, warm, interleaved rounds)
  train      `newsclf train` itself against a default Trainer, samples/s over steady steps
  scale      newsclf classify on a large file (test rows repeated): speed and peak memory
  make-model a bert-base-shaped model (random BertConfig() weights, the embedded tokenizer),
             optionally exported: for speed figures only
  gpu-assets what the GPU machine lacks, in .carry/ (the embedded MiniLM as fp16, the rows)

Results: benchmarks/results/<date>-<suite>-<machine>.json and .md. Examples:

  python -m benchmarks classify --model models/embedded-agnews --data ../shared/data/ag_news/test.csv --rows 1000
  python -m benchmarks train --model embedded --data ../shared/data/ag_news/train.csv
  python -m benchmarks scale --model models/embedded-agnews/onnx --data ../shared/data/ag_news/test.csv --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.engines import REGISTRY
from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.runner import ROOT, run_engines

CPU_ENGINES = (
    "pipeline",
    "torch-bf16",
    "torch-bf16-sorted",
    "torch-compile-bf16-sorted",
    "openvino-bf16",
    "openvino-int8",
    "newsclf-fp32",
    "newsclf-optimized",
    "newsclf-int8",
    "newsclf-openvino",
)
CUDA_ENGINES = (
    "pipeline-cuda",
    "torch-fp16-cuda-b64",
    "torch-fp16-cuda-b256",
    "torch-fp16-cuda-b1024",
    "newsclf-cuda",
    "newsclf-fp32-cuda",
)
CLASSIFY_COLUMNS = [
    ("model", "model"),
    ("engine", "engine"),
    ("provider", "provider"),
    ("rows_per_s", "rows/s (median)"),
    ("ratio_to_baseline", "x baseline"),
    ("ratio_to_best_peer", "x best peer"),
    ("accuracy", "accuracy"),
    ("peak_rss_mb", "peak RSS MB"),
]


def classify_suite(args: argparse.Namespace) -> None:
    from newsclf.artifacts import ExportFolder, resolve_checkpoint

    model_dir, run_dir = resolve_checkpoint(args.model)
    export_dir = args.export or (run_dir or model_dir.parent) / "onnx"
    variants = ExportFolder.load(export_dir).variants
    names = (
        args.engines.split(",")
        if args.engines
        else list(CUDA_ENGINES if args.device == "cuda" else CPU_ENGINES)
    )
    names = [
        n
        for n in names
        if not (
            n.startswith("newsclf-")
            and n.split("-")[1] in ("fp32", "optimized", "int8")
            and n.split("-")[1] not in variants
        )
    ]
    calibration = args.calibration_data or args.data.with_name("train.csv")
    spec = {
        "model_dir": str(model_dir),
        "export_dir": str(export_dir),
        "data": str(args.data),
        "rows": args.rows,
        "batch_size": args.batch_size,
        "calibration": str(calibration) if calibration.is_file() else None,
        "warmup_rows": args.warmup_rows,
    }
    log_dir = Path(tempfile.mkdtemp(prefix="nbench-logs-"))
    records = run_engines(names, spec, args.rounds, log_dir)
    for record in records:
        record["model"] = args.model_label
    meta = {
        "model": str(model_dir),
        "model_label": args.model_label,
        "data": str(args.data),
        "rows": args.rows,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "command": " ".join(sys.argv),
        "logs": str(log_dir),
    }
    for record in records:
        record["ratio_to_pipeline"] = record["ratio_to_baseline"]
    suite = args.suite_name or "classify"
    paths = write_results(
        suite, records, CLASSIFY_COLUMNS, meta, args.out, merge_on=("engine", "model")
    )
    print(Path(paths[1]).read_text())


# -- train -------------------------------------------------------------------------------------

TRAIN_COLUMNS = [
    ("setup", "setup"),
    ("model", "model"),
    ("precision", "precision"),
    ("samples_per_s", "samples/s (steady)"),
    ("ratio", "x default"),
    ("steps", "steps"),
    ("full_recipe_min", "120k x 4 epochs (min)"),
    ("test_accuracy", "test accuracy"),
]


def train_suite(args: argparse.Namespace) -> None:
    records = []
    for setup in args.setups.split(","):
        command = [
            sys.executable,
            "-m",
            "benchmarks.training",
            setup,
            args.model,
            str(args.data),
            str(args.rows),
            str(args.steps),
            str(args.batch_size),
            str(args.grad_accum),
        ]
        print(f"training: {setup} ...", flush=True)
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{setup} failed:\n{out.stderr[-3000:]}")
        record = json.loads(out.stdout.strip().splitlines()[-1])
        record["model"] = args.model_label or args.model
        records.append(record)
    base = next((r for r in records if r["setup"] == "default-trainer"), None)
    for r in records:
        r["ratio"] = round(r["samples_per_s"] / base["samples_per_s"], 2) if base else None
        r["full_recipe_min"] = round(120_000 * 4 / r["samples_per_s"] / 60, 1)
    meta = {
        "command": " ".join(sys.argv),
        "rows": args.rows,
        "batch": f"{args.batch_size} x {args.grad_accum}",
    }
    suite = args.suite_name or "train"
    paths = write_results(
        suite, records, TRAIN_COLUMNS, meta, args.out, merge_on=("setup", "model")
    )
    print(Path(paths[1]).read_text())


# -- scale -------------------------------------------------------------------------------------

SCALE_COLUMNS = [
    ("input", "input"),
    ("rows", "rows"),
    ("rows_per_s", "rows/s"),
    ("vs_small", "vs small file"),
    ("peak_rss_mb", "peak RSS MB"),
    ("wall_s", "wall s"),
    ("rows_out_in_order", "all rows, in order"),
]


def scale_suite(args: argparse.Namespace) -> None:
    import csv

    from benchmarks.rows import load_rows, write_csv
    from newsclf.artifacts import PreprocessingConfig

    pre = PreprocessingConfig.load(args.model)
    work = Path(tempfile.mkdtemp(prefix="nbench-scale-"))
    small = write_csv(load_rows(args.data, None, pre), work / "small.csv")
    big = write_csv(load_rows(args.data, args.rows, pre), work / "big.csv")
    records = []
    for label, path in (("small (before)", small), ("large", big), ("small (after)", small)):
        report = work / "report.json"
        output = work / "out.csv"
        command = [
            sys.executable,
            "-m",
            "newsclf",
            "classify",
            str(path),
            "--model",
            str(args.model),
            "--output",
            str(output),
            "--report",
            str(report),
            *args.classify_args.split(),
        ]
        print(f"{label}: {' '.join(command)}", flush=True)
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        figures = json.loads(report.read_text())
        with (
            open(path, newline="", encoding="utf-8") as a,
            open(output, newline="", encoding="utf-8") as b,
        ):
            in_order = all(
                x == {k: y[k] for k in x}
                for x, y in zip(csv.DictReader(a), csv.DictReader(b), strict=True)
            )
        records.append(
            {
                "input": label,
                "rows": figures["rows"],
                "rows_per_s": figures["throughput_rows_per_s"],
                "peak_rss_mb": figures["peak_rss_mb"],
                "wall_s": figures["wall_time_s"],
                "variant": figures["variant"],
                "provider": figures["provider"],
                "rows_out_in_order": in_order,
            }
        )
    small_speed = (records[0]["rows_per_s"] + records[2]["rows_per_s"]) / 2
    for r in records:
        r["vs_small"] = round(r["rows_per_s"] / small_speed, 3)
    meta = {"command": " ".join(sys.argv), "model": str(args.model)}
    paths = write_results("scale", records, SCALE_COLUMNS, meta, args.out)
    print(Path(paths[1]).read_text())


# -- helpers for GPU runs ----------------------------------------------------------------------


def make_model(args: argparse.Namespace) -> None:
    """A bert-base-shaped classifier with random weights and the embedded tokenizer; with
    --export-device, exported (fp32, optimized, fp16) with parity checked there."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from newsclf.artifacts import PreprocessingConfig
    from newsclf.export import ExportConfig, export_onnx
    from newsclf.training import embedded_model_dir

    labels = ["World", "Sports", "Business", "Sci/Tech"]
    tokenizer_dir = args.tokenizer or embedded_model_dir()
    config = BertConfig(
        num_labels=4,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model = BertForSequenceClassification(config)
    target = args.target
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(target)
    PreprocessingConfig(text_columns=["title", "description"]).save(target)
    print(f"bert-base-shaped model in {target}")
    if args.export_device:
        result = export_onnx(
            target,
            target.parent / f"{target.name}-onnx",
            ExportConfig(
                optimize=True, fp16=True, device=args.export_device, parity_file=args.data
            ),
        )
        print(json.dumps(result.report, indent=2))


def gpu_assets(args: argparse.Namespace) -> None:
    """.carry/minilm (the embedded MiniLM as fp16: 45 MB, under the carry limit; newsclf
    trains in fp32 master weights whatever the checkpoint's dtype) and .carry/ag_news."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from newsclf.training import embedded_model_dir

    source = embedded_model_dir()
    model_dir = args.target / "minilm"
    model_dir.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in (".json", ".txt"):
            shutil.copy(path, model_dir / path.name)
    weights = {
        k: v.to(torch.float16) if v.is_floating_point() else v
        for k, v in load_file(source / "model.safetensors").items()
    }
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    data_dir = args.target / "ag_news"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "test.csv"):
        shutil.copy(args.data / name, data_dir / name)
    total = sum(p.stat().st_size for p in args.target.rglob("*") if p.is_file())
    print(f"{args.target}: {total / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="suite", required=True)

    c = sub.add_parser("classify", help="engines side by side")
    c.add_argument("--model", type=Path, required=True, help="run folder or HF model folder")
    c.add_argument("--export", type=Path, help="newsclf export (default RUN/onnx)")
    c.add_argument("--model-label", default="embedded")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--rows", type=int, default=1000)
    c.add_argument("--rounds", type=int, default=5)
    c.add_argument("--warmup-rows", type=int, help="warm up on this many rows (default: all)")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    c.add_argument("--engines", help=f"comma-separated, from: {', '.join(REGISTRY)}")
    c.add_argument(
        "--calibration-data", type=Path, help="training rows (default: train.csv beside --data)"
    )
    c.add_argument("--suite-name")
    c.add_argument("--out", type=Path, default=RESULTS_DIR)
    c.set_defaults(run=classify_suite)

    t = sub.add_parser("train", help="newsclf train against a default Trainer")
    t.add_argument(
        "--model", default="embedded", help="embedded, a model folder, or bert-base-shape"
    )
    t.add_argument("--model-label")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--rows", type=int, default=4096)
    t.add_argument(
        "--steps", type=int, default=12, help="optimizer steps (the first fifth is warm-up)"
    )
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--grad-accum", type=int, default=2)
    t.add_argument("--setups", default="default-trainer,newsclf")
    t.add_argument("--suite-name")
    t.add_argument("--out", type=Path, default=RESULTS_DIR)
    t.set_defaults(run=train_suite)

    s = sub.add_parser("scale", help="a large file: speed and memory")
    s.add_argument("--model", type=Path, required=True, help="export folder")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--rows", type=int, default=1_000_000)
    s.add_argument("--classify-args", default="--device cpu")
    s.add_argument("--out", type=Path, default=RESULTS_DIR)
    s.set_defaults(run=scale_suite)

    m = sub.add_parser("make-model", help="bert-base-shaped random model")
    m.add_argument("--target", type=Path, required=True)
    m.add_argument("--tokenizer", type=Path)
    m.add_argument("--export-device", choices=("cpu", "cuda", "auto"))
    m.add_argument("--data", type=Path, help="parity texts for the export")
    m.set_defaults(run=make_model)

    g = sub.add_parser("gpu-assets", help="build .carry/ for the GPU machine")
    g.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ag_news")
    g.add_argument("--target", type=Path, default=ROOT / ".carry")
    g.set_defaults(run=gpu_assets)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
