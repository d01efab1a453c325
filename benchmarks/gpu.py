"""The GPU run's steps that are not engine races (benchmarks/gpu_plan.py holds the plan):

  probe           is ONNX Runtime really on CUDA: a session's providers, its output vs the CPU's
  auto-check      `newsclf classify --device auto`: did it pick CUDA and fp16 by itself; with the
                  probe and the export report, the verdict on priority 1
  embedded-model  the embedded MiniLM fine-tuned for one epoch (README settings), exported with
                  parity, its test accuracy on CUDA and on the CPU side by side
  finetune        the embedded MiniLM fine-tuned with the README's settings: accuracy, wall time
  collect         the results files a GPU run sent back, merged into benchmarks/results/

Results go into the suites `gpu-classify` and `gpu-train` (benchmarks/results.py names the
files), in --results, copied into --mirror (a call's $OUT) each time they change. Without
CUDA every step runs on the CPU (a rehearsal), saying so.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_plan import EMBEDDED_SETTINGS, sizes
from newsclf.io import write_json_atomic

CUDA_PROVIDER = "CUDAExecutionProvider"
CLASSIFY_SUITE = "gpu-classify"
TRAIN_SUITE = "gpu-train"


def probe(out: Path) -> dict[str, Any]:
    """A session asked for CUDA: what it really runs on, and CUDA's output against the CPU's
    on the same graph and inputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from newsclf.inference import CUDA, cuda_driver_present

    rng = np.random.default_rng(0)
    weight = helper.make_tensor("W", TensorProto.FLOAT, [64, 64], rng.random(4096).astype("f4"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["M"]), helper.make_node("Softmax", ["M"], ["Y"])],
        "probe",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    data = model.SerializeToString()
    x = rng.random((8, 64)).astype("f4")
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    info: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "onnx": onnx.__version__,
        "available_providers": ort.get_available_providers(),
        "nvidia_driver": cuda_driver_present(),
    }
    try:
        session = ort.InferenceSession(data, providers=[CUDA, "CPUExecutionProvider"])
        info["session_providers"] = session.get_providers()
        gpu = session.run(None, {"X": x})[0]
        info["max_abs_diff_cuda_vs_cpu"] = float(np.abs(gpu - cpu).max())
    except Exception as exc:  # recorded, not raised: the probe reports what it saw
        info["cuda_error"] = f"{type(exc).__name__}: {exc}"
    info["cuda_works"] = info.get("session_providers", [None])[0] == CUDA
    write_json_atomic(out / "gpu_probe.json", info)
    print(json.dumps(info, indent=2))
    return info


# -- results ---------------------------------------------------------------------------------


def write_records(
    suite: str,
    records: list[dict[str, Any]],
    meta: dict[str, Any],
    results: Path,
    mirror: Path | None,
) -> None:
    """Merged into the day's `suite` file (by engine or setup, and model), copied to `mirror`."""
    from benchmarks.__main__ import CLASSIFY_COLUMNS, TRAIN_COLUMNS
    from benchmarks.results import write_results

    if suite == CLASSIFY_SUITE:
        columns, key = CLASSIFY_COLUMNS, ("engine", "model")
    else:
        columns, key = TRAIN_COLUMNS, ("setup", "model")
    write_results(suite, records, columns, meta, results, merge_on=key, mirror=mirror)


def priority1_verdict(
    probe_info: dict[str, Any] | None,
    export_report: dict[str, Any] | None,
    auto_report: dict[str, Any] | None,
) -> dict[str, Any]:
    """Priority 1 of the GPU run, each part from its own file: a CUDA session; the export
    checked on CUDA (fp32 and optimized within tolerance with TF32 off, fp16 by agreement);
    `classify --device auto` on CUDA with fp16."""
    verdict: dict[str, Any] = {}
    if probe_info is not None:
        verdict["cuda_session"] = (probe_info.get("session_providers") or [None])[
            0
        ] == CUDA_PROVIDER
    if export_report is not None:
        variants = {v["variant"]: v for v in export_report.get("variants", [])}
        verdict["export_passed"] = bool(export_report.get("passed"))
        verdict["export_providers"] = {name: v.get("provider") for name, v in variants.items()}
        verdict["export_on_cuda"] = bool(variants) and all(
            v.get("provider") == CUDA_PROVIDER for v in variants.values()
        )
        verdict["fp16_label_agreement"] = variants.get("fp16", {}).get("label_agreement")
    if auto_report is not None:
        verdict["auto_provider"] = auto_report.get("provider")
        verdict["auto_variant"] = auto_report.get("variant")
        verdict["auto_picked_cuda_fp16"] = (
            auto_report.get("provider") == CUDA_PROVIDER and auto_report.get("variant") == "fp16"
        )
    checks = [
        k
        for k in ("cuda_session", "export_passed", "export_on_cuda", "auto_picked_cuda_fp16")
        if k in verdict
    ]
    verdict["all_met"] = bool(checks) and all(verdict[k] for k in checks)
    return verdict


def _load(path: Path | None) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def batch_invariance(export: Path, data: Path, device: str, rows: int = 512) -> dict[str, Any]:
    """The auto variant's answers for the first `rows` texts, in its usual batches and one row
    at a time: newsclf promises the same label whatever the batch (bit-identical numbers on the
    CPU variants; on CUDA this measures it)."""
    import numpy as np

    from benchmarks.rows import load_rows
    from newsclf import Classifier, ClassifierConfig

    classifier = Classifier(export, ClassifierConfig(device=device))  # type: ignore[arg-type]
    texts = load_rows(data, rows, classifier.preprocessing).texts
    batched = classifier.predict_proba(texts)
    alone = np.stack([classifier.predict_proba([t])[0] for t in texts])
    result = {
        "variant": classifier.variant,
        "provider": classifier.provider,
        "rows": len(texts),
        "max_abs_diff": float(np.abs(batched - alone).max()),
        "label_flips": int((batched.argmax(1) != alone.argmax(1)).sum()),
        "bit_identical": bool(np.array_equal(batched, alone)),
    }
    print("batch invariance:", json.dumps(result))
    return result


def auto_check(args: argparse.Namespace) -> int:
    report = _load(args.report)
    if report is None:
        print(f"no report at {args.report}: classify --device auto failed")
        return 1
    verdict = priority1_verdict(_load(args.probe), _load(args.export_report), report)
    invariance = batch_invariance(args.export, args.data, args.expect) if args.export else None
    record = {
        "engine": "newsclf-auto",
        "description": "newsclf classify --device auto (file in, file out), one cold run",
        "model": args.model_label,
        "provider": report.get("provider"),
        "variant": report.get("variant"),
        "device": report.get("device"),
        "rows": report.get("rows"),
        "rows_per_s": report.get("throughput_rows_per_s"),
        "accuracy": report.get("accuracy"),
        "fallback_reason": report.get("fallback_reason"),
        "priority1": verdict,
        "batch_invariance": invariance,
    }
    meta = {"model_label": args.model_label, "auto_report": str(args.report)}
    write_records(CLASSIFY_SUITE, [record], meta, args.results, args.mirror)
    print("priority 1:", json.dumps(verdict, indent=2))
    if args.expect == "cuda" and not verdict.get("auto_picked_cuda_fp16"):
        return 1
    return 0


# -- the embedded MiniLM ---------------------------------------------------------------------


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _train_record(
    setup: str, result: Any, wall_s: float, settings: dict[str, Any]
) -> dict[str, Any]:
    metrics = json.loads((Path(result.run_dir) / "metrics.json").read_text(encoding="utf-8"))
    training = metrics["training"]
    return {
        "setup": setup,
        "model": "embedded",
        "provider": "torch-cuda" if _cuda() else "torch-cpu",
        "precision": training.get("precision"),
        "samples_per_s": training.get("steady_samples_per_s"),
        "samples_per_s_all_steps": training.get("samples_per_s"),
        "steps": result.steps,
        "test_accuracy": result.test.accuracy if result.test else None,
        "wall_s": round(wall_s, 1),
        "settings": settings,
        "device": training.get("device"),
    }


def _fine_tune(
    model: Path,
    train_file: Path,
    test_file: Path,
    output: Path,
    epochs: float,
    max_samples: int | None,
) -> tuple[Any, float]:
    from newsclf import TrainingConfig, train

    config = TrainingConfig(
        model=str(model),
        train_file=train_file,
        test_file=test_file,
        output_dir=output,
        max_train_samples=max_samples,
        **{**EMBEDDED_SETTINGS, "epochs": epochs},
    )
    started = time.perf_counter()
    result = train(config)
    return result, time.perf_counter() - started


def embedded_model(args: argparse.Namespace) -> int:
    """The embedded MiniLM fine-tuned for stage 2 (README settings, fewer epochs), exported
    (fp32, optimized, fp16; parity on `--device`), then test.csv classified on CUDA (fp16, what
    --variant auto picks, and fp32) and on the CPU (fp32): accuracies side by side, which must
    agree within 0.2 points."""
    import torch

    from newsclf import (
        Classifier,
        ClassifierConfig,
        ClassifyConfig,
        ExportConfig,
        classify_file,
        export_onnx,
    )

    s = sizes(args.quick)
    cuda = torch.cuda.is_available()
    run_dir = args.work / "embedded-run"
    result, wall = _fine_tune(
        args.model,
        args.data / "train.csv",
        args.test,
        run_dir,
        s.embedded_epochs,
        s.embedded_max_samples,
    )
    settings = {
        **EMBEDDED_SETTINGS,
        "epochs": s.embedded_epochs,
        "max_train_samples": s.embedded_max_samples,
    }
    record = _train_record(f"newsclf-{s.embedded_epochs:g}-epoch", result, wall, settings)
    meta = {"model_label": "embedded", "data": str(args.data), "test": str(args.test)}
    write_records(TRAIN_SUITE, [record], meta, args.results, args.mirror)
    print(f"fine-tuned in {wall:.1f} s: test accuracy {record['test_accuracy']}", flush=True)

    export_dir = args.work / "embedded-onnx"
    export = export_onnx(
        run_dir, export_dir, ExportConfig(variants=["optimized", "fp16"], device=args.device)
    )
    write_json_atomic(args.mirror / "export_report-embedded.json", export.report)
    for variant in export.variants:
        print(
            f"  {variant.variant}: {variant.provider}, max |diff| {variant.max_abs_diff:.2e}, agree {variant.label_agreement:.2%}",
            flush=True,
        )

    records = []
    runs = [("cuda", "auto"), ("cuda", "fp32"), ("cpu", "fp32")]
    for device, variant in runs:
        if device == "cuda" and (not cuda or args.device != "cuda"):
            continue
        classifier = Classifier(export_dir, ClassifierConfig(device=device, variant=variant))  # type: ignore[arg-type]
        out = classify_file(
            args.test,
            classifier,
            ClassifyConfig(),
            output=args.work / f"pred-{device}-{variant}.csv",
        )
        records.append(
            {
                "engine": f"newsclf-test-{device}-{classifier.variant}",
                "description": f"newsclf classify {args.test.name} on {device} ({classifier.variant}): accuracy",
                "model": "embedded",
                "provider": classifier.provider,
                "variant": classifier.variant,
                "rows": out.rows,
                "rows_per_s": round(out.rows_per_s, 1),
                "accuracy": out.metrics.accuracy if out.metrics else None,
            }
        )
    cpu = next((r for r in records if r["provider"] != CUDA_PROVIDER), None)
    for r in records:
        if (
            r is not cpu
            and cpu is not None
            and r["accuracy"] is not None
            and cpu["accuracy"] is not None
        ):
            r["accuracy_minus_cpu_points"] = round(100 * (r["accuracy"] - cpu["accuracy"]), 3)
            r["within_0_2_points_of_cpu"] = abs(r["accuracy_minus_cpu_points"]) <= 0.2
    write_records(
        CLASSIFY_SUITE, records, meta | {"export": str(export_dir)}, args.results, args.mirror
    )
    for r in records:
        print(
            f"  {r['engine']}: accuracy {r['accuracy']}, {r['provider']}, {r['rows_per_s']} rows/s",
            flush=True,
        )
    failed = [r for r in records if r.get("within_0_2_points_of_cpu") is False]
    return 1 if failed else 0


def finetune(args: argparse.Namespace) -> int:
    """The embedded MiniLM with the README's settings (lr 5e-5, batch 16, no accumulation,
    4 epochs) on the shared rows: test accuracy and wall time."""
    s = sizes(args.quick)
    result, wall = _fine_tune(
        args.model,
        args.data / "train.csv",
        args.test,
        args.work / "embedded-readme",
        s.finetune_epochs,
        s.embedded_max_samples,
    )
    settings = {
        **EMBEDDED_SETTINGS,
        "epochs": s.finetune_epochs,
        "max_train_samples": s.embedded_max_samples,
    }
    record = _train_record("newsclf-readme-settings", result, wall, settings)
    write_records(TRAIN_SUITE, [record], {"model_label": "embedded"}, args.results, args.mirror)
    print(json.dumps(record, indent=2, default=str))
    return 0


# -- collect ---------------------------------------------------------------------------------


def collect(args: argparse.Namespace) -> int:
    """Merge the gpu-classify and gpu-train files found under `sources` (in the order given:
    later calls win on the same engine or setup and model) into `--target`, keeping each
    file's date and machine in its name."""
    from benchmarks.__main__ import CLASSIFY_COLUMNS, TRAIN_COLUMNS
    from benchmarks.results import write_results

    merged: dict[str, dict[str, Any]] = {}
    for source in args.sources:
        files = [source] if source.is_file() else sorted(source.rglob("*-gpu-*.json"))
        for path in files:
            data = json.loads(path.read_text())
            if data.get("suite") not in (CLASSIFY_SUITE, TRAIN_SUITE):
                continue
            key = ("engine", "model") if data["suite"] == CLASSIFY_SUITE else ("setup", "model")
            entry = merged.setdefault(path.stem, {"data": data, "records": {}})
            entry["data"] = data | {"runs": entry["data"].get("runs", []) + data.get("runs", [])}
            for record in data["records"]:
                entry["records"][tuple(record.get(k) for k in key)] = record
    for stem, entry in merged.items():
        data = entry["data"]
        columns = CLASSIFY_COLUMNS if data["suite"] == CLASSIFY_SUITE else TRAIN_COLUMNS
        meta = {k: v for k, v in data.items() if k not in ("suite", "machine", "runs", "records")}
        json_path, _ = write_results(
            data["suite"],
            list(entry["records"].values()),
            columns,
            meta,
            args.target,
            stem=stem,
            machine=data["machine"],
        )
        # keep every call's settings, not only the last one's
        written = json.loads(json_path.read_text())
        written["runs"] = _unique(data.get("runs", []))
        write_json_atomic(json_path, written)
        print(f"{json_path}: {len(entry['records'])} records")
    return 0


def _unique(items: list[Any]) -> list[Any]:
    seen, kept = set(), []
    for item in items:
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--out", type=Path, required=True)

    def results_args(a: argparse.ArgumentParser) -> None:
        a.add_argument("--results", type=Path, required=True, help="the results folder (merged)")
        a.add_argument("--mirror", type=Path, required=True, help="a copy goes here ($OUT)")

    a = sub.add_parser("auto-check")
    a.add_argument("--report", type=Path, required=True)
    a.add_argument("--probe", type=Path)
    a.add_argument("--export-report", type=Path)
    a.add_argument("--model-label", required=True)
    a.add_argument("--expect", choices=("cuda", "cpu"), default="cuda")
    a.add_argument("--export", type=Path, help="the export: also measure batch invariance")
    a.add_argument("--data", type=Path, help="labelled rows for the batch-invariance check")
    results_args(a)
    for name in ("embedded-model", "finetune"):
        e = sub.add_parser(name)
        e.add_argument("--model", type=Path, required=True, help="the embedded MiniLM's folder")
        e.add_argument("--data", type=Path, required=True, help="folder with train.csv")
        e.add_argument("--test", type=Path, required=True, help="the labelled test file")
        e.add_argument("--work", type=Path, required=True)
        e.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="ONNX Runtime's")
        e.add_argument("--quick", action="store_true", help="toy sizes (CPU rehearsal)")
        results_args(e)
    c = sub.add_parser("collect")
    c.add_argument("sources", type=Path, nargs="+", help="folders or files a GPU run sent back")
    c.add_argument("--target", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    for name in ("out", "work", "mirror"):
        if getattr(args, name, None) is not None:
            getattr(args, name).mkdir(parents=True, exist_ok=True)
    if args.what == "probe":
        probe(args.out)
        return 0
    run = {
        "auto-check": auto_check,
        "embedded-model": embedded_model,
        "finetune": finetune,
        "collect": collect,
    }
    return run[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
