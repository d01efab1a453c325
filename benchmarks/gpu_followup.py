"""Second, short GPU call: why small kernels are slow there, and the classify runs left out.

Launch overhead: the first call's figures (bert-base fp16 at ~20 ms per batch of 32) point at
per-kernel cost, not arithmetic; this measures it directly and reruns classify at batch 256.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def launch_overhead() -> dict:
    import torch

    x = torch.ones(16, device="cuda")
    for _ in range(100):
        x.add_(1)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(2000):
        x.add_(1)
    torch.cuda.synchronize()
    per_launch_us = (time.perf_counter() - t) / 2000 * 1e6
    env = {
        k: v for k, v in os.environ.items() if k.startswith(("CUDA", "TORCH", "NVIDIA", "PYTORCH"))
    }
    return {"per_launch_us": round(per_launch_us, 1), "env": env}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/newsclf-gpu-check"))
    parser.add_argument("--rows", type=int, default=12000)
    args = parser.parse_args()
    from bench_classify import _torch_engine
    from bench_scale import repeated

    results: dict = {"launch": launch_overhead()}
    print(results["launch"], flush=True)
    data = repeated(Path(".carry/ag_news/test.csv"), args.work / "test_followup.csv", args.rows)
    for name, run in (("bert_base", "bert-base-random"), ("minilm", "run-embedded-settings")):
        best = args.work / run / "best"
        if not best.is_dir():
            results[name] = {"error": f"{best} missing (fresh machine)"}
            continue
        for engine, batch in (
            ("torch-fp16-cuda-sorted", 256),
            ("pipeline-cuda", 256),
            ("torch-fp16-cuda", 32),
        ):
            ns = argparse.Namespace(
                engine=engine, data=data, rows=args.rows, batch_size=batch, max_length=128
            )
            try:
                r = _torch_engine(ns, best)
            except Exception as exc:
                r = {"error": f"{type(exc).__name__}: {exc}"}
            results.setdefault(name, {})[f"{engine}@{batch}"] = r
            print(name, engine, batch, r.get("rows_per_s", r.get("error")), flush=True)
            (args.out / "gpu_followup.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
