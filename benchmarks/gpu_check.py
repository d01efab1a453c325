"""Everything newsclf wants to know about a GPU machine, in one run (issue: GPU run).

1. environment: GPU, driver, torch / ONNX Runtime versions, and whether an ONNX Runtime session
   asked for CUDA really runs on it (session.get_providers(), not the available list)
2. training speed of the recipe on a bert-base-shaped model (random BertConfig() weights),
   bf16 + length grouping against a default fp32 Trainer; projected time for 120,000 x 4 epochs
3. a real fine-tune of the embedded MiniLM on the AG News rows: the recipe, and the settings
   newsclf documents for the small model; test accuracy and wall time
4. classify throughput on AG News texts for the bert-base shape and the fine-tuned MiniLM:
   pipeline on CUDA (baseline), PyTorch fp16, and newsclf with the CUDA provider if it works
5. export parity on CUDA (fp32, fp16) where the CUDA provider works

Without CUDA it runs every part it can on the CPU at toy sizes (--quick), as a rehearsal.

    python benchmarks/gpu_check.py --assets .carry --out results-folder
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmark scripts

from bench_scale import repeated  # noqa: E402 - found through the path set just above

# Settings newsclf documents for the embedded MiniLM (README, "Training the embedded model").
EMBEDDED_SETTINGS = {"learning_rate": 5e-5, "batch_size": 16, "grad_accum": 1, "epochs": 4.0}
FULL_RECIPE_ROWS = 120_000 * 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def step(results: dict[str, Any], name: str, func: Callable[[], Any], deadline: float) -> Any:
    """Run one part; record its result or its error, never stop the others."""
    if time.time() > deadline:
        results[name] = {"skipped": "time budget spent"}
        log(f"{name}: skipped (time budget)")
        return None
    started = time.time()
    log(f"{name}: start")
    try:
        value = func()
        results[name] = value
    except Exception as exc:
        results[name] = {
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc()[-2000:],
        }
        value = None
    log(f"{name}: done in {time.time() - started:.1f} s")
    return value


# -- 1. environment -------------------------------------------------------------------------


def ort_cuda_truth(work: Path) -> dict[str, Any]:
    """Create a real session asked for CUDA on a tiny graph and read what it runs on."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    info: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
    }
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        import contextlib
        import io

        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                preload()
            info["preload_dlls"] = printed.getvalue().strip() or "ok"
        except Exception as exc:
            info["preload_dlls"] = f"{type(exc).__name__}: {exc}; {printed.getvalue().strip()}"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())],
    )
    path = work / "probe.onnx"
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    probe.ir_version = 9  # what every onnxruntime >= 1.15 reads
    onnx.save(probe, str(path))
    try:
        session = ort.InferenceSession(
            str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        info["session_providers"] = session.get_providers()
        out = session.run(None, {"x": np.ones((2, 4), dtype=np.float32)})[0]
        info["probe_output_ok"] = bool(np.allclose(out, 1.0))
    except Exception as exc:
        info["session_error"] = f"{type(exc).__name__}: {exc}"
        info["session_providers"] = []
    info["cuda_usable"] = info["session_providers"][:1] == ["CUDAExecutionProvider"]
    return info


def environment(work: Path) -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "torch_cuda": torch.version.cuda,
        }
        try:
            smi = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            env["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            env["nvidia_smi"] = str(exc)
    env["onnxruntime"] = ort_cuda_truth(work)
    from newsclf.environment import cpu_cores, cpu_model

    env |= {"cpu": cpu_model(), "cores": cpu_cores()}
    return env


# -- 2. training speed ----------------------------------------------------------------------


def training_speed(assets: Path, quick: bool) -> dict[str, Any]:
    from bench_train import measure

    out: dict[str, Any] = {}
    for setup in ("default", "newsclf"):
        args = argparse.Namespace(
            setup=setup,
            model=str(assets / "minilm"),
            data=assets / "ag_news" / "train.csv",
            rows=512 if quick else 8192,
            batch_size=8 if quick else 64,
            grad_accum=1 if quick else 2,
            max_length=128,
            warmup_steps=1 if quick else 5,
            steps=1 if quick else 30,
            bert_base_shape=True,
        )
        result = measure(args)
        result["projected_full_recipe_minutes"] = round(
            FULL_RECIPE_ROWS / result["samples_per_s"] / 60, 1
        )
        out[setup] = result
        log(f"  bert-base training, {setup}: {result['samples_per_s']} samples/s")
    out["ratio"] = round(out["newsclf"]["samples_per_s"] / out["default"]["samples_per_s"], 2)
    out["floor_samples_per_s"], out["goal_samples_per_s"] = 2000, 5000
    return out


# -- 3. a real fine-tune --------------------------------------------------------------------


def fine_tune(
    assets: Path, work: Path, quick: bool, name: str, settings: dict[str, Any]
) -> dict[str, Any]:
    from rich.console import Console

    from newsclf.config import TrainingConfig
    from newsclf.training import NewsTrainer

    config = TrainingConfig(
        model=str(assets / "minilm"),
        train_file=assets / "ag_news" / "train.csv",
        test_file=assets / "ag_news" / ("test_small.csv" if quick else "test.csv"),
        output_dir=work / f"run-{name}",
        max_train_samples=64 if quick else None,
        **(settings | ({"epochs": 1.0} if quick else {})),
    )
    started = time.time()
    result = NewsTrainer(config, Console(quiet=True)).train()
    m = result.metrics
    return {
        "settings": {
            k: getattr(config, k) for k in ("learning_rate", "batch_size", "grad_accum", "epochs")
        },
        "test_accuracy": m["test"]["accuracy"],
        "test_f1_macro": m["test"]["f1_macro"],
        "wall_time_s": round(time.time() - started, 1),
        "train_samples_per_s": m["training"]["samples_per_s"],
        "precision": m["training"]["precision"],
        "stopped_early": m["stopped_early"],
        "epochs_completed": m["epochs_completed"],
        "run_dir": str(result.run_dir),
    }


# -- 4. classify throughput -----------------------------------------------------------------


def bert_base_model(assets: Path, work: Path) -> Path:
    """A bert-base-shaped classifier with random weights, the embedded tokenizer, newsclf files."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from newsclf.config import PreprocessingConfig

    folder = work / "bert-base-random" / "best"
    labels = ["Business", "Sci/Tech", "Sports", "World"]
    torch.manual_seed(0)
    config = BertConfig(
        num_labels=4,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(assets / "minilm").save_pretrained(folder)
    PreprocessingConfig(text_columns=["title", "description"]).save(folder)
    (folder.parent / "parity_sample.jsonl").write_text(
        "".join(
            json.dumps({"text": f"sample news text number {i}", "label": i % 4}) + "\n"
            for i in range(64)
        )
    )
    return folder.parent


def classify_throughput(
    run_dir: Path, data: Path, rows: int, cuda_ort: bool, quick: bool
) -> dict[str, Any]:
    import torch
    from bench_classify import _newsclf_engine, _torch_engine

    if torch.cuda.is_available():
        # Batch 32 as on the CPU; sorted fp16 also at 256, where a GPU stops being launch-bound.
        runs = [
            ("pipeline-cuda", 32),
            ("torch-fp16-cuda", 32),
            ("torch-fp16-cuda-sorted", 32),
            ("torch-fp16-cuda-sorted", 256),
        ]
    else:
        runs = [("pipeline", 32), ("torch-bf16", 32), ("torch-bf16-sorted", 32)]
    if cuda_ort:
        runs += [("newsclf-fp32-cuda", 32), ("newsclf-fp16-cuda", 32), ("newsclf-fp16-cuda", 256)]
    results = {}
    for engine, batch in runs:
        key = f"{engine}@{batch}"
        args = argparse.Namespace(
            engine=engine, data=data, rows=rows, batch_size=batch, max_length=128
        )
        try:
            if engine.startswith("newsclf-"):
                results[key] = _newsclf_engine(args, run_dir / "onnx")
            else:
                results[key] = _torch_engine(args, run_dir / "best")
            log(f"  {run_dir.name} {key}: {results[key]['rows_per_s']} rows/s")
        except Exception as exc:
            results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  {run_dir.name} {key}: error {exc}")
    base = results.get(f"{runs[0][0]}@{runs[0][1]}", {}).get("rows_per_s")
    for r in results.values():
        if base and "rows_per_s" in r:
            r["ratio_to_pipeline"] = round(r["rows_per_s"] / base, 2)
    return results


def export_parity(run_dir: Path) -> dict[str, Any]:
    from newsclf.export import ExportOptions, export_onnx

    result = export_onnx(run_dir, None, ExportOptions(fp16=True, device="cuda"))
    return {"variants": [v.to_dict() for v in result.variants]}


# -- main -----------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> str:
    lines = ["", "==== newsclf GPU check: summary ===="]
    env = results.get("environment", {})
    ort_info = env.get("onnxruntime", {}) if isinstance(env, dict) else {}
    lines.append(
        f"GPU: {env.get('gpu', 'none')}  torch {env.get('torch')}  onnxruntime {ort_info.get('onnxruntime')}"
    )
    lines.append(f"ORT available providers: {ort_info.get('available_providers')}")
    lines.append(
        f"ORT session asked for CUDA runs on: {ort_info.get('session_providers')} (usable: {ort_info.get('cuda_usable')})"
    )
    speed = results.get("training_speed", {})
    for setup in ("default", "newsclf"):
        if isinstance(speed.get(setup), dict):
            s = speed[setup]
            lines.append(
                f"train bert-base {setup:8s}: {s['samples_per_s']:>9} samples/s ({s['precision']}), "
                f"full recipe ~{s['projected_full_recipe_minutes']} min"
            )
    for key in ("finetune_recipe", "finetune_embedded_settings"):
        f = results.get(key, {})
        if "test_accuracy" in f:
            lines.append(
                f"{key}: test accuracy {100 * f['test_accuracy']:.2f}% in {f['wall_time_s']} s"
            )
    for key in ("classify_bert_base", "classify_minilm"):
        for engine, r in (results.get(key) or {}).items():
            if isinstance(r, dict) and "rows_per_s" in r:
                lines.append(
                    f"{key} {engine:20s}: {r['rows_per_s']:>10,.0f} rows/s  x{r.get('ratio_to_pipeline', '-')}"
                )
    for key, value in results.items():
        if isinstance(value, dict) and "error" in value:
            lines.append(f"ERROR in {key}: {value['error']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets", type=Path, default=Path(".carry"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check-out")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/newsclf-gpu-check"))
    parser.add_argument(
        "--budget-s", type=float, default=420, help="skip remaining parts after this"
    )
    parser.add_argument("--quick", action="store_true", help="toy sizes (automatic without CUDA)")
    args = parser.parse_args()

    import torch

    quick = args.quick or not torch.cuda.is_available()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget_s
    results: dict[str, Any] = {"quick": quick}
    if quick:
        repeated(
            args.assets / "ag_news" / "test.csv", args.assets / "ag_news" / "test_small.csv", 200
        )

    def save() -> None:
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")

    env = step(results, "environment", lambda: environment(args.work), deadline)
    save()
    cuda_ort = bool(env and env["onnxruntime"]["cuda_usable"])
    step(results, "training_speed", lambda: training_speed(args.assets, quick), deadline)
    save()
    recipe = step(
        results,
        "finetune_recipe",
        lambda: fine_tune(args.assets, args.work, quick, "recipe", {}),
        deadline,
    )
    save()
    step(
        results,
        "finetune_embedded_settings",
        lambda: fine_tune(args.assets, args.work, quick, "embedded-settings", EMBEDDED_SETTINGS),
        deadline,
    )
    save()

    # 12,000 rows: the first H100 call (38,000) ran out of its 8 minutes in the classify part.
    rows = 300 if quick else 12_000
    data = repeated(args.assets / "ag_news" / "test.csv", args.work / f"test_x{rows}.csv", rows)
    bert_run = bert_base_model(args.assets, args.work)
    minilm_run = (
        Path(results["finetune_embedded_settings"]["run_dir"])
        if isinstance(results.get("finetune_embedded_settings"), dict)
        and "run_dir" in results["finetune_embedded_settings"]
        else (Path(recipe["run_dir"]) if recipe else None)
    )
    if cuda_ort:
        step(results, "export_parity_bert_base", lambda: export_parity(bert_run), deadline)
        if minilm_run:
            step(results, "export_parity_minilm", lambda: export_parity(minilm_run), deadline)
        save()
    step(
        results,
        "classify_bert_base",
        lambda: classify_throughput(bert_run, data, rows, cuda_ort, quick),
        deadline,
    )
    save()
    if minilm_run:
        step(
            results,
            "classify_minilm",
            lambda: classify_throughput(minilm_run, data, rows, cuda_ort, quick),
            deadline,
        )
    save()
    text = summary(results)
    (args.out / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
