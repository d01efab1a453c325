"""The one runner: every engine in its own process, built and warmed up one at a time, then
timed in interleaved rounds (each round runs every engine once, in a rotating order, so that a
noisy minute hits all of them alike). Figures are medians over rounds; ratios are to the
baseline engine of the same run and, for newsclf, to the best peer of the same run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.engines import REGISTRY, Engine

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Worker:
    engine: Engine
    process: subprocess.Popen[str]
    log: IO[str]
    provider: str = ""
    warmup_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    rows: int = 0
    accuracy: float | None = None
    peak_rss_mb: float | None = None

    def ask(self, request: str) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        if request:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(
                f"engine {self.engine.name} died (exit {self.process.returncode}); "
                f"see {self.log.name}"
            )
        return json.loads(line)


def start(engine: Engine, spec: dict[str, Any], log_dir: Path) -> Worker:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{engine.name}.log", "w", encoding="utf-8")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(spec | {"engine": engine.name})],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    worker = Worker(engine, process, log)
    ready = worker.ask("")
    worker.provider, worker.warmup_s = ready["provider"], ready["warmup_s"]
    return worker


def run_engines(
    names: Sequence[str], spec: dict[str, Any], rounds: int, log_dir: Path
) -> list[dict[str, Any]]:
    """Records per engine: median rows/s over `rounds`, every round's figure, ratios."""
    engines = []
    for name in names:
        engine = REGISTRY[name]
        if engine.missing():
            print(
                f"skip {name}: needs {', '.join(engine.missing())} (pip install 'newsclf[{engine.extra}]')"
            )
            continue
        engines.append(engine)
    workers = []
    for engine in engines:  # built and warmed one at a time: no contention
        print(f"starting {engine.name} ...", flush=True)
        workers.append(start(engine, spec, log_dir))
    for round_index in range(rounds):
        shift = round_index % len(workers)
        for worker in workers[shift:] + workers[:shift]:
            answer = worker.ask("run")
            worker.seconds.append(answer["seconds"])
            worker.rows, worker.accuracy = answer["rows"], answer["accuracy"]
        print(f"round {round_index + 1}/{rounds} done", flush=True)
    for worker in workers:
        worker.peak_rss_mb = worker.ask("quit")["peak_rss_mb"]
        worker.process.wait()
        worker.log.close()
    return _records(workers)


def _records(workers: list[Worker]) -> list[dict[str, Any]]:
    records = []
    for w in workers:
        speeds = [w.rows / s for s in w.seconds]
        records.append(
            {
                "engine": w.engine.name,
                "description": w.engine.description,
                "device": w.engine.device,
                "provider": w.provider,
                "rows": w.rows,
                "rounds": len(speeds),
                "rows_per_s": round(statistics.median(speeds), 1),
                "rows_per_s_each_round": [round(s, 1) for s in speeds],
                "accuracy": None if w.accuracy is None else round(w.accuracy, 5),
                "peak_rss_mb": round(w.peak_rss_mb or 0, 1),
                "warmup_s": round(w.warmup_s, 1),
                "newsclf": w.engine.newsclf,
            }
        )
    baseline = next((r for r in records if REGISTRY[r["engine"]].baseline), None)
    peers = [r for r in records if not r["newsclf"]]
    best_peer = max(peers, key=lambda r: r["rows_per_s"], default=None)
    for r in records:
        r["ratio_to_baseline"] = (
            round(r["rows_per_s"] / baseline["rows_per_s"], 2) if baseline else None
        )
        r["ratio_to_best_peer"] = (
            round(r["rows_per_s"] / best_peer["rows_per_s"], 2)
            if best_peer and r["newsclf"]
            else None
        )
        r["best_peer"] = best_peer["engine"] if best_peer and r["newsclf"] else None
    return records
