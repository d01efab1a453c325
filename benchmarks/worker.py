"""One engine in its own process: build it, warm it up (outside the timing), then classify the
rows each time the runner asks, and say how long it took.

Protocol: the runner writes `run` or `quit` lines to stdin; the worker answers one JSON line per
request on its original stdout (libraries' own prints are sent to stderr).

A time-boxed engine (`timebox_s` in the spec) classifies slices of `slice_rows` rows until its
box is spent and reports the rows it finished (`benchmarks.timebox`); the others classify every
row in one call.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from benchmarks.engines import Context, engine_named
from benchmarks.rows import load_rows
from benchmarks.timebox import run_timeboxed

DEFAULT_SLICE_ROWS = 4096


def main() -> None:
    spec = json.loads(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the libraries print goes to stderr, not into the protocol

    def say(message: dict[str, object]) -> None:
        protocol.write(json.dumps(message) + "\n")

    from newsclf.artifacts import PreprocessingConfig

    engine = engine_named(spec["engine"])
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
    box = spec.get("timebox_s")
    slice_rows = spec.get("slice_rows") or DEFAULT_SLICE_ROWS
    started = time.perf_counter()
    classify, provider = engine.build(context)
    # Warm-up: by default one full pass, so every shape has been seen (fair to oneDNN and JIT
    # compilers); on a GPU a head of the rows (the slowest engines would take minutes), and
    # for a time-boxed engine its own, shorter box.
    warm = rows.head(spec["warmup_rows"]) if spec.get("warmup_rows") else rows
    run_timeboxed(classify, warm, spec.get("warmup_box_s") if box else None, slice_rows)
    prepare = getattr(classify, "prepare", None)
    if prepare is not None:  # e.g. newsclf's input file, written once outside the timing
        prepare(rows)
    say({"ready": True, "provider": provider, "warmup_s": time.perf_counter() - started})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        timed = run_timeboxed(classify, rows, box, slice_rows)
        known = [
            (p, t) for p, t in zip(timed.predicted, rows.labels[: timed.rows], strict=True) if t
        ]
        accuracy = sum(p == t for p, t in known) / len(known) if known else None
        say(
            {
                "seconds": timed.seconds,
                "rows": timed.rows,
                "accuracy": accuracy,
                "stopped_by": timed.stopped_by,
            }
        )
    say({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


if __name__ == "__main__":
    main()
