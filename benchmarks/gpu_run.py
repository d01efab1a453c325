"""newsclf on a GPU, stage by stage: python -m benchmarks.gpu_run OUT_DIR --data AG_NEWS_DIR

  probe      `newsclf export --fp16` with parity on CUDA of a bert-base-shaped model and the
             embedded MiniLM (random weights, random head; ONNX Runtime's build and providers)
  classify   100,000 rows (the test rows repeated) end to end: `newsclf classify --device auto`
             against the Hugging Face pipeline and a PyTorch fp16 loop, those two time-boxed
  attention  ONNX Runtime's attention kernels against PyTorch SDPA (benchmarks/gpu_attention.py)
  train      newsclf train against a default Trainer, and variants (benchmarks/training.py)

Each stage runs in a process of its own within its time box (BOXES, seconds, sized for an
H200); one that overruns is stopped, recorded so, and the run goes on. Results go into OUT_DIR
as each stage ends (<date>-gpu-<stage>-<machine>.json and .md; the stages' status in
...-gpu-stages-...; logs/). AG_NEWS_DIR holds train.csv and test.csv. --quick rehearses every
stage at toy sizes, on the CPU where there is no GPU, on the sample data unless --data is given.
Needs newsclf with the `embedded` extra, a CUDA build of PyTorch and ONNX Runtime's CUDA
provider (docs/gpu.md); stages import torch first: its CUDA libraries serve ONNX Runtime too.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.results import write_results

BOXES = {"probe": 120, "classify": 110, "attention": 115, "train": 130}  # 475 s in all
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "src" / "newsclf" / "sample_data"
SETUPS = ("default-trainer", "newsclf", "newsclf-accumulate", "newsclf-ungrouped")


@dataclass(frozen=True)
class Sizes:
    models: dict[str, str]  # label: make-model --size
    rows: int  # classified per model
    slice_rows: int  # what a time-boxed engine classifies at a time
    box_s: float  # the time box of the pipeline and the PyTorch loop
    train: tuple[str, ...]  # training rows, optimizer steps, batch, accumulation
    setups: tuple[str, ...]
    shapes: list[tuple[int, int]]  # attention batches: rows, tokens


FULL = Sizes(
    {"bert-base-shape": "bert-base", "embedded": "minilm"}, 100_000, 2048, 5.0,
    ("8192", "60", "64", "2"), (*SETUPS, "newsclf-compile", "newsclf-cudagraphs"),
    [(1024, 64), (512, 128)],
)  # fmt: skip
QUICK = Sizes(
    {"bert-base-shape": "toy", "embedded": "minilm-toy"}, 400, 64, 1.0,
    ("256", "6", "8", "2"), (*SETUPS, "newsclf-compile"), [(8, 16), (8, 32)],
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        "python -m benchmarks.gpu_run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="the results folder")
    parser.add_argument("--data", type=Path, help="a folder with train.csv and test.csv")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a rehearsal")
    parser.add_argument("--stages", default=",".join(BOXES), help="comma-separated, in order")
    parser.add_argument("--work", type=Path, help="models and exports (default: a temp folder)")
    parser.add_argument("--stage", choices=BOXES, help=argparse.SUPPRESS)  # one, in this process
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data is None and not args.quick:
        parser.error("--data: a folder with AG News as train.csv and test.csv")
    args.data = args.data or SAMPLE_DATA
    if args.stage:
        import torch  # before onnxruntime: its CUDA libraries serve both

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and not args.quick and args.stage != "probe":
            sys.exit("no GPU here: rehearse with --quick")
        stage = {"probe": probe, "classify": classify, "attention": attention, "train": train}
        stage[args.stage](args, QUICK if args.quick else FULL, device)
        return
    if set(args.stages.split(",")) - set(BOXES):
        parser.error(f"--stages: choose from {', '.join(BOXES)}")
    args.work = args.work or Path(tempfile.mkdtemp(prefix="newsclf-gpu-"))
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    records, meta = [], {"command": " ".join(sys.argv), "work": str(args.work)}
    for name in args.stages.split(","):
        records.append(run_boxed(name, args))
        print(f"stage {name}: {records[-1]['status']}, {records[-1]['wall_s']} s", flush=True)
        columns = [(k, k) for k in ("stage", "status", "wall_s", "box_s")]
        write_results("gpu-stages", records, columns, meta, args.out)


def run_boxed(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The stage in a process group of its own, stopped with what it started at its box."""
    command = [sys.executable, "-m", "benchmarks.gpu_run", str(args.out), "--stage", name]
    command += ["--work", str(args.work), "--data", str(args.data), *["--quick"] * args.quick]
    command += ["--deadline", str(time.time() + BOXES[name])]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"} | cuda_library_path()
    started = time.perf_counter()
    with open(args.out / "logs" / f"{name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=BOXES[name])
            status = "ok" if code == 0 else f"failed (exit {code}, logs/{name}.log)"
        except subprocess.TimeoutExpired:
            status = "stopped at its time box"
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    wall = round(time.perf_counter() - started, 1)
    return {"stage": name, "status": status, "wall_s": wall, "box_s": BOXES[name]}


def cuda_library_path() -> dict[str, str]:
    """LD_LIBRARY_PATH with the lib folders of the nvidia-* wheels (PyTorch's CUDA and cuDNN),
    where ONNX Runtime's CUDA provider finds them when it is not installed beside them."""
    spec = importlib.util.find_spec("nvidia")
    bases = spec.submodule_search_locations if spec and spec.submodule_search_locations else []
    found = sorted({os.path.dirname(p) for b in bases for p in glob.glob(f"{b}/*/lib/lib*.so*")})
    found += [os.environ["LD_LIBRARY_PATH"]] if os.environ.get("LD_LIBRARY_PATH") else []
    return {"LD_LIBRARY_PATH": ":".join(found)} if found else {}


def probe(args: argparse.Namespace, sizes: Sizes, device: str) -> None:
    import onnxruntime as ort

    from benchmarks.__main__ import make_model
    from newsclf.errors import NewsclfError
    from newsclf.export import ExportConfig, export_onnx
    from newsclf.inference import cuda_driver_present

    meta = {"command": " ".join(sys.argv), "onnxruntime": ort.__version__, "file": ort.__file__}
    meta |= {"providers": ort.get_available_providers(), "nvidia_driver": cuda_driver_present()}
    env = subprocess.run([sys.executable, "-m", "newsclf", "env", "--json"], capture_output=True)
    if env.returncode == 0:  # a command of newer newsclf versions
        (args.out / "newsclf-env.json").write_bytes(env.stdout)
    note = None if meta["nvidia_driver"] else "no GPU here: parity on the CPU"
    records: list[dict[str, Any]] = [{"model": "runtime", "variant": ort.__version__, "note": note}]
    for label, size in sizes.models.items():
        model = args.work / label
        make_model(argparse.Namespace(target=model, tokenizer=None, export_device=None, size=size))
        check = "cuda" if meta["nvidia_driver"] else "cpu"  # every variant's parity there
        config = ExportConfig(variants=["fp16"], device=check, parity_file=args.data / "test.csv")
        try:
            variants = export_onnx(model, args.work / f"{label}-onnx", config).variants
        except NewsclfError as exc:  # no CUDA session, a parity failure: recorded, and on
            variants, records = [], [*records, {"model": label, "note": str(exc)}]
        for v in variants:
            record = {"model": label, "variant": v.variant, "provider": v.provider}
            record |= {"max_abs_diff": v.max_abs_diff, "labels": v.label_agreement}
            records.append(record | {"passed": v.passed, "note": v.fallback_reason})
        columns = ("model", "variant", "provider", "max_abs_diff", "labels", "passed", "note")
        write_results("gpu-probe", records, [(k, k) for k in columns], meta, args.out)


def classify(args: argparse.Namespace, sizes: Sizes, device: str) -> None:
    from benchmarks.__main__ import CLASSIFY_COLUMNS
    from benchmarks.rows import load_rows, write_csv
    from benchmarks.runner import run_engines
    from newsclf.artifacts import PreprocessingConfig

    cuda = device == "cuda"
    peers = ["pipeline-cuda", "torch-fp16-cuda-b256"] if cuda else ["pipeline", "torch-bf16-sorted"]
    test, records = args.data / "test.csv", []
    meta = {"command": " ".join(sys.argv), "data": str(test), "rows": sizes.rows}
    for label in sizes.models:
        model, export = args.work / label, args.work / f"{label}-onnx"
        spec = {"model_dir": str(model), "export_dir": str(export), "data": str(test)}
        spec |= {"rows": sizes.rows, "batch_size": 32, "calibration": None, "models": {}}
        spec |= {"warmup_rows": 4 * sizes.slice_rows, "warmup_box_s": sizes.box_s}
        spec |= {"slice_rows": sizes.slice_rows, "timeboxes": dict.fromkeys(peers, sizes.box_s)}
        found = run_engines(peers, spec, 1, args.work / f"logs-{label}", parallel_start=True)
        rows = load_rows(test, sizes.rows, PreprocessingConfig.load(export))
        source, report = write_csv(rows, args.work / "rows.csv"), args.work / f"{label}.json"
        runs = []
        # The preparing pool as --device auto makes it (processes), and in threads.
        for engine, extra in (
            ("newsclf-cli", []),
            ("newsclf-cli-threads", ["--prepare-pool", "threads"]),
        ):
            command = [sys.executable, "-m", "newsclf", "classify", str(source), "--model", str(export),
                       "--device", "auto", "--output", str(args.work / "out.csv"), "--report", str(report), *extra]  # fmt: skip
            started = time.perf_counter()
            out = subprocess.run(command, text=True, capture_output=True)
            print(out.stdout[-3000:], out.stderr[-3000:], flush=True)
            cli = {
                "engine": engine,
                "description": " ".join(["newsclf classify --device auto", *extra]),
            }
            cli |= {"wall_s": round(time.perf_counter() - started, 1), "error": out.stderr[-2000:]}
            if out.returncode == 0:
                figures, cli["error"] = json.loads(report.read_text()), None
                names = ("provider", "variant", "device", "rows", "accuracy", "fallback_reason",
                         "stage_seconds", "stage_busy_share", "prepare_pool", "prepare_workers")  # fmt: skip
                cli |= {k: figures.get(k) for k in names} | {"stopped_by": "rows"}
                speed = cli["rows_per_s"] = figures["throughput_rows_per_s"]
                peer = {r["engine"]: r["rows_per_s"] or 1e-9 for r in found}
                cli["ratio_to_baseline"] = round(speed / peer.get(peers[0], float("nan")), 2)
                cli["ratio_to_best_peer"] = round(
                    speed / max(peer.values(), default=float("nan")), 2
                )
            runs.append(cli)
        records += [r | {"model": label} for r in [*found, *runs]]
        write_results("gpu-classify", records, CLASSIFY_COLUMNS, meta, args.out)


def attention(args: argparse.Namespace, sizes: Sizes, device: str) -> None:
    from benchmarks import gpu_attention as table

    os.environ["ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO"] = "1"  # read as sessions are made
    model, export = args.work / "bert-base-shape", args.work / "bert-base-shape-onnx"
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    torch_rates = table.torch_sdpa(model, sizes.shapes, device)
    meta = {"command": " ".join(sys.argv), "torch_sdpa_rows_per_s": torch_rates}
    graphs = table.build_graphs(model, export / "model_fp16.onnx", args.work / "attention")
    print({form: str(graph) for form, graph in graphs.items()}, flush=True)
    records = []
    reference, stop = export / "model.onnx", args.deadline - 10
    for record in table.attention_table(graphs, reference, torch_rates, device, vocab, stop):
        records.append(record)
        print(record, flush=True)
        write_results("gpu-attention", records, table.COLUMNS, meta, args.out)


def train(args: argparse.Namespace, sizes: Sizes, device: str) -> None:
    from benchmarks.__main__ import TRAIN_COLUMNS, add_train_ratios, make_model

    model, (rows, _, batch, accum) = args.work / "bert-base-shape", sizes.train
    if not (model / "config.json").is_file():  # the probe stage makes it
        size = sizes.models["bert-base-shape"]
        make_model(argparse.Namespace(target=model, tokenizer=None, export_device=None, size=size))
    meta = {"command": " ".join(sys.argv), "rows": rows, "batch": f"{batch} x {accum}"}
    columns = [*TRAIN_COLUMNS[:4], ("micro_batches", "rows x micro-batches"), *TRAIN_COLUMNS[4:]]
    records: list[dict[str, Any]] = []
    for setup in sizes.setups:
        command = [sys.executable, "-m", "benchmarks.training", setup, str(model)]
        command += [str(args.data / "train.csv"), *sizes.train]
        record: dict[str, Any] = {"setup": setup, "model": "bert-base-shape"}
        try:
            left = max(args.deadline - time.time() - 5, 0.1)
            out = subprocess.run(command, text=True, capture_output=True, timeout=left)
            print(setup, out.stdout[-500:], out.stderr[-3000:], flush=True)
            if out.returncode != 0:
                record["error"] = out.stderr[-2000:]
            else:
                record |= json.loads(out.stdout.strip().splitlines()[-1]) | record
                step = record.get("step") or {"micro_batch": batch, "grad_accum": accum}
                record["micro_batches"] = f"{step['micro_batch']} x {step['grad_accum']}"
        except subprocess.TimeoutExpired:
            record["error"] = "stopped at the stage's time box"
        records.append(record)
        add_train_ratios(records)
        write_results("gpu-train", records, columns, meta, args.out)


if __name__ == "__main__":
    main()
