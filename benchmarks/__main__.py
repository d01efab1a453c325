"""python -m benchmarks SUITE ...: every measurement newsclf reports.

  classify   engines side by side on the same rows (own process each, warm, interleaved rounds)
  train      `newsclf train` itself against a default Trainer, samples/s over steady steps
  scale      newsclf classify on a large file (test rows repeated): speed and peak memory
  host       the host's ceiling: classify with an almost free model vs tokenizing alone
  make-model a bert-base-shaped model (random BertConfig() weights, the embedded tokenizer),
             optionally exported: for speed figures only

The GPU run (every stage, time-boxed, into one folder) is `python -m benchmarks.gpu_run`.

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

from benchmarks import host
from benchmarks.engines import BEFORE, REGISTRY, engine_named
from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.runner import ROOT, run_engines
from newsclf.io import write_json_atomic

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
    ("rows", "rows"),
    ("rows_per_s", "rows/s (median)"),
    ("stopped_by", "stopped by"),
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
    students = parse_students(args.students)
    for label in students:
        names += [f"{engine}@{label}" for engine in args.student_engines.split(",")]
    if args.before:  # each newsclf engine again, on the code of another checkout
        names += [f"{n}{BEFORE}" for n in names if engine_named(n).newsclf]
    layers = {label: _layers(Path(folders["model_dir"])) for label, folders in students.items()}
    layers[args.model_label] = _layers(model_dir)
    calibration = args.calibration_data or args.data.with_name("train.csv")
    timeboxes = parse_timeboxes(args.timebox)
    spec = {
        "model_dir": str(model_dir),
        "export_dir": str(export_dir),
        "data": str(args.data),
        "rows": args.rows,
        "batch_size": args.batch_size,
        "calibration": str(calibration) if calibration.is_file() else None,
        "warmup_rows": args.warmup_rows,
        "warmup_box_s": args.warmup_box,
        "slice_rows": args.slice_rows,
        "timeboxes": timeboxes,
        "models": students,
        "before": str(args.before.resolve()) if args.before else None,
    }
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="nbench-logs-"))
    meta = {
        "model": str(model_dir),
        "model_label": args.model_label,
        "data": str(args.data),
        "rows": args.rows,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "timeboxes_s": timeboxes,
        "slice_rows": args.slice_rows,
        "command": " ".join(sys.argv),
        "logs": str(log_dir),
    }
    if students:
        meta["students"] = {label: folders["export_dir"] for label, folders in students.items()}
    suite = args.suite_name or "classify"
    columns = CLASSIFY_COLUMNS
    if students:  # which model each row ran, and its depth
        columns = [CLASSIFY_COLUMNS[0], ("layers", "layers"), *CLASSIFY_COLUMNS[1:]]

    def write(records: list[dict]) -> tuple[Path, Path]:
        for record in records:
            record["model"] = record["engine"].partition("@")[2] or args.model_label
            record["layers"] = layers.get(record["model"])
            record["ratio_to_pipeline"] = record["ratio_to_baseline"]
        return write_results(
            suite,
            records,
            columns,
            meta,
            args.out,
            merge_on=("engine", "model"),
        )

    records = run_engines(
        names,
        spec,
        args.rounds,
        log_dir,
        parallel_start=args.parallel_start,
        on_result=write,  # every figure written as soon as it exists
    )
    paths = write(records)
    print(Path(paths[1]).read_text())


def parse_students(text: str | None) -> dict[str, dict[str, str]]:
    """`LABEL=RUN,...` -> {label: {"model_dir": RUN/best, "export_dir": RUN/onnx}}: other
    models (distilled students) whose exports the newsclf engines also run, as ENGINE@LABEL."""
    from newsclf.artifacts import resolve_checkpoint

    students: dict[str, dict[str, str]] = {}
    for item in filter(None, (text or "").split(",")):
        label, _, run = item.partition("=")
        if not label or not run or "@" in label:
            raise SystemExit(f"--students: {item!r} is not LABEL=RUN")
        model_dir, run_dir = resolve_checkpoint(Path(run))
        export_dir = (run_dir or model_dir.parent) / "onnx"
        students[label] = {"model_dir": str(model_dir), "export_dir": str(export_dir)}
    return students


def _layers(model_dir: Path) -> int | None:
    config = json.loads((model_dir / "config.json").read_text())
    return config.get("num_hidden_layers")


def parse_timeboxes(text: str | None) -> dict[str, float]:
    """`ENGINE=SECONDS,...` -> {engine: seconds}."""
    boxes: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        name, _, seconds = item.partition("=")
        if name.partition("@")[0] not in REGISTRY or not seconds:
            raise SystemExit(f"--timebox: {item!r} is not ENGINE=SECONDS with a known engine")
        boxes[name] = float(seconds)
    return boxes


# -- train -------------------------------------------------------------------------------------

TRAIN_COLUMNS = [
    ("setup", "setup"),
    ("model", "model"),
    ("provider", "provider"),
    ("precision", "precision"),
    ("samples_per_s", "samples/s (steady)"),
    ("ratio", "x default"),
    ("steps", "steps"),
    ("full_recipe_min", "120k x 4 epochs (min)"),
    ("test_accuracy", "test accuracy"),
    ("wall_s", "wall s"),
]


def train_suite(args: argparse.Namespace) -> None:
    records: list[dict] = []
    meta = {
        "command": " ".join(sys.argv),
        "rows": args.rows,
        "batch": f"{args.batch_size} x {args.grad_accum}",
    }
    suite = args.suite_name or "train"
    paths = None
    failed = []
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
            str(args.tokenizer or ""),
            args.model_size,
        ]
        print(f"training: {setup} ...", flush=True)
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{setup} failed:\n{out.stderr[-3000:]}", flush=True)
            failed.append(setup)
            continue
        record = json.loads(out.stdout.strip().splitlines()[-1])
        record["model"] = args.model_label or args.model
        records.append(record)
        print(f"  {setup}: {record['samples_per_s']} samples/s (steady)", flush=True)
        add_train_ratios(records)
        # written after every setup: a run cut short keeps what it measured
        paths = write_results(
            suite,
            records,
            TRAIN_COLUMNS,
            meta,
            args.out,
            merge_on=("setup", "model"),
        )
    if paths is not None:
        print(Path(paths[1]).read_text())
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def add_train_ratios(records: list[dict]) -> None:
    """Each record's samples/s over the default Trainer's of the same model, and the minutes
    the full recipe (120k rows x 4 epochs) would take at that rate."""
    for r in records:
        base = next(
            (
                b
                for b in records
                if b["setup"] == "default-trainer" and b.get("model") == r.get("model")
            ),
            None,
        )
        speed = r.get("samples_per_s")
        base_speed = base.get("samples_per_s") if base else None
        r["ratio"] = round(speed / base_speed, 2) if speed and base_speed else None
        r["full_recipe_min"] = round(120_000 * 4 / speed / 60, 1) if speed else None


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


# make-model --size: the bert-base shape (BertConfig(): 12 layers, 768 wide, 110M parameters),
# or a toy of the same family for rehearsals on the CPU, random weights; or the embedded
# MiniLM's weights (all six layers, or one) under a random head drawn wide (std 0.5), whose
# classes are then no near-ties that fp16 rounding alone would flip in a parity check.
EMBEDDED_SIZES = {"minilm": {}, "minilm-toy": {"num_hidden_layers": 1}}
# (The "host" size: inference almost free, for the host's ceiling and memory on large files.)
MODEL_SIZES = {
    "bert-base": {},
    "host": host.HOST_MODEL,
    "toy": {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 512,
    },
}


def make_model(args: argparse.Namespace) -> None:
    """A bert-base-shaped classifier with random weights and the embedded tokenizer (or the
    embedded MiniLM, MODEL_SIZES); with --export-device, exported (fp32, optimized, fp16) with
    parity checked there."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    from newsclf.artifacts import PreprocessingConfig
    from newsclf.export import ExportConfig, export_onnx
    from newsclf.training import embedded_model_dir

    labels = ["World", "Sports", "Business", "Sci/Tech"]
    names = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    tokenizer_dir = args.tokenizer or embedded_model_dir()
    size = getattr(args, "size", None) or "bert-base"
    if size in EMBEDDED_SIZES:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(
            embedded_model_dir(), **names, dtype=torch.float32, **EMBEDDED_SIZES[size]
        )
        torch.nn.init.normal_(model.classifier.weight, std=0.5)
    else:
        model = BertForSequenceClassification(BertConfig(**names, **MODEL_SIZES[size]))
    target = args.target
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(target)
    PreprocessingConfig(text_columns=["title", "description"]).save(target)
    print(f"{size} model in {target}", flush=True)
    if args.export_device:
        result = export_onnx(
            target,
            target.parent / f"{target.name}-onnx",
            ExportConfig(
                variants=["optimized", "fp16"],
                device=args.export_device,
                parity_file=args.data,
            ),
        )
        if getattr(args, "report", None):
            write_json_atomic(args.report, result.report)
        for variant in result.variants:
            print(
                f"  {variant.variant}: {variant.provider}, max |diff| {variant.max_abs_diff:.2e}, "
                f"labels agree {variant.label_agreement:.2%}, passed {variant.passed}",
                flush=True,
            )


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
    c.add_argument(
        "--timebox",
        help="ENGINE=SECONDS,...: these engines classify slices until their box is spent "
        "(the rate is over the rows they finished); the others classify every row",
    )
    c.add_argument(
        "--warmup-box", type=float, help="time box of a time-boxed engine's warm-up (seconds)"
    )
    c.add_argument("--slice-rows", type=int, default=4096, help="rows per time-boxed slice")
    c.add_argument(
        "--students",
        help="LABEL=RUN,...: other run folders (e.g. distilled students, exported to RUN/onnx) "
        "that the --student-engines also classify with, as ENGINE@LABEL, in the same rounds",
    )
    c.add_argument(
        "--student-engines",
        default="newsclf-auto",
        help="newsclf engines to run on each of --students (comma-separated)",
    )
    c.add_argument(
        "--parallel-start",
        action="store_true",
        help="build and warm every engine at once (warm-ups are not timed; saves GPU time)",
    )
    c.add_argument(
        "--before",
        type=Path,
        help="src folder of another newsclf checkout: each newsclf engine runs on it too",
    )
    c.add_argument("--log-dir", type=Path, help="engines' logs (default: a temporary folder)")
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
    t.add_argument("--tokenizer", type=Path, help="bert-base-shape: its tokenizer's folder")
    t.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="bert-base")
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
    m.add_argument("--size", choices=sorted(MODEL_SIZES | EMBEDDED_SIZES), default="bert-base")
    m.add_argument("--report", type=Path, help="also write the export report here")
    m.set_defaults(run=make_model)

    host.add_parser(sub)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
