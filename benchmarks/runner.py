"""The one runner: every engine in its own process, built and warmed up (one at a time, or all
at once with `parallel_start`: warm-ups are not timed), then timed in interleaved rounds (each
round runs every engine once, in a rotating order, so that a noisy minute hits all of them
alike). Figures are medians over rounds; ratios are to the baseline engine of the same run and,
for newsclf, to the best peer of the same run. A time-boxed engine's figure is the rate over
the rows it finished inside its box. An engine that fails is reported with its error; the
others go on."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.engines import BEFORE, Engine, engine_named

ROOT = Path(__file__).resolve().parent.parent

OnResult = Callable[[list[dict[str, Any]]], None]


@dataclass
class Worker:
    engine: Engine
    process: subprocess.Popen[str]
    log: IO[str]
    timebox_s: float | None = None
    provider: str = ""
    warmup_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    rows: int = 0
    rows_each_round: list[int] = field(default_factory=list)
    accuracy: float | None = None
    stopped_by: str | None = None
    peak_rss_mb: float | None = None
    error: str | None = None

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
                f"see {self.log.name}:\n{_tail(Path(self.log.name))}"
            )
        return json.loads(line)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def launch(engine: Engine, spec: dict[str, Any], log_dir: Path) -> Worker:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{engine.name}.log", "w", encoding="utf-8")  # noqa: SIM115
    box = (spec.get("timeboxes") or {}).get(engine.name)
    worker_spec = {k: v for k, v in spec.items() if k not in ("timeboxes", "models")}
    # An engine of another model (ENGINE@LABEL, `classify --students`): its own folders.
    label = engine.name.removesuffix(BEFORE).partition("@")[2]
    worker_spec |= (spec.get("models") or {}).get(label, {})
    env = None
    if engine.name.endswith(BEFORE):  # newsclf from the other checkout, the harness from here
        env = os.environ | {"PYTHONPATH": f"{spec['before']}{os.pathsep}{ROOT}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.worker",
            json.dumps(worker_spec | {"engine": engine.name, "timebox_s": box}),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    return Worker(engine, process, log, timebox_s=box)


def wait_ready(worker: Worker) -> None:
    ready = worker.ask("")
    worker.provider, worker.warmup_s = ready["provider"], ready["warmup_s"]


def start(engine: Engine, spec: dict[str, Any], log_dir: Path) -> Worker:
    worker = launch(engine, spec, log_dir)
    wait_ready(worker)
    return worker


def run_engines(
    names: Sequence[str],
    spec: dict[str, Any],
    rounds: int,
    log_dir: Path,
    *,
    parallel_start: bool = False,
    on_result: OnResult | None = None,
) -> list[dict[str, Any]]:
    """Records per engine: median rows/s over `rounds`, every round's figure, ratios.
    `spec["timeboxes"]` maps engine names to seconds. `on_result` gets the records so far
    after every timed run (to write them as soon as they exist)."""
    engines = []
    for name in names:
        engine = engine_named(name)
        if engine.missing():
            print(
                f"skip {name}: needs {', '.join(engine.missing())} (pip install 'newsclf[{engine.extra}]')"
            )
            continue
        engines.append(engine)
    workers: list[Worker] = []
    if parallel_start:
        print(f"starting {', '.join(e.name for e in engines)} ...", flush=True)
        workers = [launch(engine, spec, log_dir) for engine in engines]
        for worker in workers:
            _ready_or_failed(worker)
    else:
        for engine in engines:  # built and warmed one at a time: no contention
            print(f"starting {engine.name} ...", flush=True)
            worker = launch(engine, spec, log_dir)
            _ready_or_failed(worker)
            workers.append(worker)
    alive = [w for w in workers if w.error is None]
    for round_index in range(rounds):
        shift = round_index % max(len(alive), 1)
        for worker in alive[shift:] + alive[:shift]:
            if worker.error is not None:
                continue
            try:
                answer = worker.ask("run")
            except RuntimeError as exc:
                worker.error = str(exc)
                print(f"{worker.engine.name} failed: {exc}", flush=True)
                continue
            worker.seconds.append(answer["seconds"])
            worker.rows_each_round.append(answer["rows"])
            worker.rows, worker.accuracy = answer["rows"], answer["accuracy"]
            worker.stopped_by = answer.get("stopped_by")
            print(
                f"  {worker.engine.name}: {answer['rows']:,} rows in {answer['seconds']:.1f} s "
                f"= {answer['rows'] / answer['seconds']:,.0f} rows/s"
                + (f" (time box {worker.timebox_s:g} s)" if worker.timebox_s else ""),
                flush=True,
            )
            if on_result is not None:
                on_result(_records(workers))
        print(f"round {round_index + 1}/{rounds} done", flush=True)
    for worker in workers:
        if worker.error is None:
            try:
                worker.peak_rss_mb = worker.ask("quit")["peak_rss_mb"]
            except RuntimeError as exc:
                worker.error = str(exc)
        worker.process.wait()
        worker.log.close()
    return _records(workers)


def _ready_or_failed(worker: Worker) -> None:
    try:
        wait_ready(worker)
    except RuntimeError as exc:
        worker.error = str(exc)
        print(f"{worker.engine.name} failed to start: {exc}", flush=True)


def _records(workers: list[Worker]) -> list[dict[str, Any]]:
    records = []
    for w in workers:
        if not w.seconds and w.error is None:
            continue  # not run yet
        speeds = [rows / s for rows, s in zip(w.rows_each_round, w.seconds, strict=True) if s > 0]
        records.append(
            {
                "engine": w.engine.name,
                "description": w.engine.description,
                "device": w.engine.device,
                "provider": w.provider or None,
                "rows": w.rows,
                "rounds": len(speeds),
                "rows_per_s": round(statistics.median(speeds), 1) if speeds else None,
                "rows_per_s_each_round": [round(s, 1) for s in speeds],
                "timebox_s": w.timebox_s,
                "stopped_by": w.stopped_by,
                "accuracy": None if w.accuracy is None else round(w.accuracy, 5),
                "peak_rss_mb": None if w.peak_rss_mb is None else round(w.peak_rss_mb, 1),
                "warmup_s": round(w.warmup_s, 1),
                "newsclf": w.engine.newsclf,
                "error": w.error[-2000:] if w.error else None,
            }
        )
    measured = [r for r in records if r["rows_per_s"]]
    baseline = next((r for r in measured if engine_named(r["engine"]).baseline), None)
    peers = [r for r in measured if not r["newsclf"]]
    best_peer = max(peers, key=lambda r: r["rows_per_s"], default=None)
    for r in records:
        r["ratio_to_baseline"] = (
            round(r["rows_per_s"] / baseline["rows_per_s"], 2)
            if baseline and r["rows_per_s"]
            else None
        )
        r["ratio_to_best_peer"] = (
            round(r["rows_per_s"] / best_peer["rows_per_s"], 2)
            if best_peer and r["newsclf"] and r["rows_per_s"]
            else None
        )
        r["best_peer"] = best_peer["engine"] if best_peer and r["newsclf"] else None
    return records
