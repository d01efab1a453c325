"""One engine in its own process: build it, warm it up (outside the timing), then classify the
rows each time the runner asks, and say how long it took.

Protocol: the runner writes `run` or `quit` lines to stdin; the worker answers one JSON line per
request on its original stdout (libraries' own prints are sent to stderr).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from benchmarks.engines import REGISTRY, Context
from benchmarks.rows import load_rows


def main() -> None:
    spec = json.loads(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the libraries print goes to stderr, not into the protocol

    def say(message: dict[str, object]) -> None:
        protocol.write(json.dumps(message) + "\n")

    from newsclf.artifacts import PreprocessingConfig

    engine = REGISTRY[spec["engine"]]
    model_dir = Path(spec["model_dir"])
    export_dir = Path(spec["export_dir"]) if spec.get("export_dir") else None
    pre = PreprocessingConfig.load(export_dir or model_dir)
    rows = load_rows(Path(spec["data"]), spec["rows"], pre)
    calibration = (
        load_rows(Path(spec["calibration"]), 300, pre) if spec.get("calibration") else None
    )
    context = Context(
        model_dir, export_dir, spec["batch_size"], pre.max_length, calibration=calibration
    )
    started = time.perf_counter()
    classify, provider = engine.build(context)
    # Warm-up: by default one full pass, so every shape has been seen (fair to oneDNN and JIT
    # compilers); on a GPU a head of the rows (the slowest engines would take minutes).
    classify(rows.head(spec["warmup_rows"]) if spec.get("warmup_rows") else rows)
    say({"ready": True, "provider": provider, "warmup_s": time.perf_counter() - started})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        predicted = classify(rows)
        seconds = time.perf_counter() - t0
        known = [(p, t) for p, t in zip(predicted, rows.labels, strict=True) if t]
        accuracy = sum(p == t for p, t in known) / len(known) if known else None
        say({"seconds": seconds, "rows": len(predicted), "accuracy": accuracy})
    say({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


if __name__ == "__main__":
    main()
