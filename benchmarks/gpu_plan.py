"""The GPU run of issue 22, in one place: calls, stages, sizes, per-stage GPU estimates and the
budget check. `gpu_session.sh` reads its sizes and stage lists from here, the tests check it,
and nothing else holds these numbers.

The lease: 15 minutes of device time in all (start-up, transfers, idle waits between calls
and every retry included); the machine goes back after 30 s idle, taking /tmp with it. So the
run is three calls made back to back, each writing what it has measured into $OUT as soon as
it has it, in the issue's priority order:

  1. ONNX Runtime 1.31.1 on CUDA; `newsclf export --onnx --optimize --fp16` of a bert-base
     shape with parity on CUDA; `newsclf classify --device auto` picking CUDA and fp16.
  2. Classify speed end to end (newsclf on >= 100,000 rows; the pipeline and a PyTorch fp16
     loop time-boxed), for the bert-base shape and the embedded MiniLM (its test accuracy on
     CUDA and on the CPU side by side).
  3. `newsclf train` on the bert-base shape against a default Trainer; then, if time is left,
     the embedded MiniLM fine-tuned with the README's settings.

Standard library only: it runs on the GPU machine before anything is unpacked, and in tests.

    python -m benchmarks.gpu_plan                 # the plan, the GPU estimates, the budget check
    python -m benchmarks.gpu_plan calls           # the three run(...) calls, exactly
    python -m benchmarks.gpu_plan env [--quick]   # sizes as shell assignments (gpu_session.sh)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# -- the lease -------------------------------------------------------------------------------

RUN_BUDGET_S = 600  # the run itself: every call's stages and transfers, the waits between calls
LEASE_S = 900  # all device time: the run, start-up and one retry
MAX_CALLS = 3
PER_CALL_LIMIT_S = 600  # the device tool's limit for one command
CARRY_LIMIT_MIB = 64.0  # the working tree plus carried paths, per call
CARRY_MARGIN_MIB = 2.0  # kept free under the limit, beyond the tree's allowance below
OUT_FILES_LIMIT = 8  # files that come back from $OUT per call
RESERVE_S = 5  # kept at the end of a call for writing stages.json and the last copies
TIMEOUT_FACTOR = 1.25  # a call's timeout_s: its worst-case estimate times this, plus 10 s

ORT_ARCHIVE = "ort-cuda-1.31.1-sm90only.tar.xz"
ORT_SHA256 = "5eb4449134b9ff13e212004ed2e510c7dd7c3c624101d89baadc3d28cc1bd5e0"

# The README's settings for the embedded model (lr 5e-5, batch 16, no accumulation, 4 epochs).
EMBEDDED_SETTINGS = {"learning_rate": 5e-5, "batch_size": 16, "grad_accum": 1, "epochs": 4.0}
AG_NEWS_TRAIN_ROWS = 9_307
AG_NEWS_TEST_ROWS = 3_800
VALIDATION_SHARE = 0.05  # newsclf train's default validation share


# -- what is already known -------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """Figures measured before (benchmarks/NOTES.md, GPU section; results/2026-11-26-gpu-*) or
    assumed, each said which. Rates that matter most come as (goal, worst)."""

    # Measured on an H100 (2026-11-26), bert-base, end to end: the pipeline and a PyTorch fp16
    # loop at batch 32 (that one with cuDNN attention on; off, it can only be faster).
    pipeline_rows_per_s: float = 1_085
    torch_fp16_rows_per_s: float = 1_600
    # newsclf through ORT CUDA fp16: the goal, and a worst case (tokenizing alone ran 8,500
    # rows/s in one process there; the worst case gives inference as long again, and more).
    newsclf_rows_per_s: tuple[float, float] = (20_000, 4_000)
    # newsclf train, bert-base, batch 64 x 2, bf16: 300-600 samples/s (299 measured before
    # cuDNN attention was turned off for training).
    train_samples_per_s: tuple[float, float] = (600, 300)
    default_trainer_samples_per_s: float = 624  # fp32, random batches, measured
    embedded_train_samples_per_s: float = 482  # MiniLM, README settings, measured (77.6 s wall)
    cpu_minilm_rows_per_s: float = 800  # assumed: ORT fp32 on 16 cores (151 on 2 cores here)
    # Export (make-model, torch.onnx dynamo, ORT fusions, fp16, parity on CUDA). Estimated from
    # the 2-core dev machine (2026-12-02, bert-base): export 21.0 s, optimizer 12.5 s, fp16
    # conversion 22.8 s, mostly one thread; the PyTorch reference on 16 cores ~8 s; three CUDA
    # sessions ~12 s; start, model and files ~15 s. The MiniLM has half the layers, a quarter
    # of the width.
    export_s: tuple[tuple[str, float], ...] = (("bert-base", 85.0), ("embedded", 30.0))
    model_load_s: tuple[tuple[str, float], ...] = (("bert-base", 3.0), ("embedded", 1.0))
    python_start_s: float = 8.0  # python3, torch and transformers imported, a CUDA context
    ort_session_s: float = 4.0  # an ORT CUDA session of bert-base (assumed)
    newsclf_file_s: float = 2.0  # per 100k rows: the CSV newsclf reads, the predictions read back
    unpack_s: float = 8.0  # the ORT archive (58 MiB of xz), sha256 included (assumed)
    results_s: float = 1.0
    # The lease around the calls (assumed until a session measures them).
    startup_s: float = 90.0  # "a minute or more"
    transfer_fixed_s: float = 5.0
    transfer_mib_per_s: float = 10.0
    gap_s: float = 15.0  # the session's turn between back-to-back calls: warm, idle, counted
    close_s: float = 5.0  # give_back straight after the last call

    def export(self, model: str) -> float:
        return dict(self.export_s)[model]

    def load(self, model: str) -> float:
        return dict(self.model_load_s)[model]


KNOWN = Known()
SCENARIOS = ("goal", "worst")


# -- sizes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What each stage runs. `FULL` on the GPU; `QUICK` rehearses every stage on the CPU."""

    model_size: str  # make-model --size: bert-base (BertConfig()) or toy
    model_label: str
    classify_rows: int  # rows newsclf classifies per model (test.csv repeated)
    rounds: int
    warmup_rows: int  # newsclf's warm-up (every shape seen once)
    warmup_box_s: float  # the baselines' warm-up, time-boxed
    slice_rows: int  # a time-boxed engine classifies slices of this many rows
    engines: tuple[tuple[str, float | None], ...]  # (engine, time box s or None: every row)
    cpu_engines: tuple[tuple[str, float | None], ...]  # the same roles, for a CPU rehearsal
    test_rows: int | None  # test.csv rows for accuracy checks (None: all 3,800)
    train_rows: int
    train_steps: int
    train_batch: int
    train_accum: int
    embedded_epochs: float  # the fine-tune that gives stage 2 an embedded model to classify
    embedded_max_samples: int | None
    finetune_epochs: float  # the README-settings fine-tune of stage 3

    def engine_names(self, device: str) -> list[str]:
        return [name for name, _ in (self.engines if device == "cuda" else self.cpu_engines)]

    def timebox_arg(self, device: str) -> str:
        """`name=seconds,...` for `python -m benchmarks classify --timebox`."""
        pairs = self.engines if device == "cuda" else self.cpu_engines
        return ",".join(f"{name}={box:g}" for name, box in pairs if box is not None)


FULL = Sizes(
    model_size="bert-base",
    model_label="bert-base-shape",
    classify_rows=100_000,
    rounds=1,
    warmup_rows=8_192,
    warmup_box_s=4.0,
    slice_rows=4_096,  # newsclf's chunk: baselines sort and pad within the same spans
    engines=(
        ("pipeline-cuda", 10.0),
        ("torch-fp16-cuda-b256", 6.0),
        ("torch-fp16-cuda-b1024", 6.0),
        ("newsclf-cuda", None),
    ),
    cpu_engines=(("pipeline", 10.0), ("torch-bf16-sorted", 6.0), ("newsclf-optimized", None)),
    test_rows=None,
    train_rows=16_384,
    train_steps=40,
    train_batch=64,
    train_accum=2,
    embedded_epochs=1.0,
    embedded_max_samples=None,
    finetune_epochs=EMBEDDED_SETTINGS["epochs"],
)
QUICK = Sizes(
    model_size="toy",
    model_label="toy-bert-shape",
    classify_rows=400,
    rounds=1,
    warmup_rows=64,
    warmup_box_s=1.0,
    slice_rows=64,
    engines=FULL.engines,
    cpu_engines=(("pipeline", 2.0), ("torch-bf16-sorted", 2.0), ("newsclf-optimized", None)),
    test_rows=200,
    train_rows=256,
    train_steps=5,
    train_batch=8,
    train_accum=1,
    embedded_epochs=1.0,
    embedded_max_samples=160,
    finetune_epochs=1.0,
)


def sizes(quick: bool = False) -> Sizes:
    return QUICK if quick else FULL


# -- stages and calls ------------------------------------------------------------------------

CLASSIFY_RESULTS = "{date}-gpu-classify-{gpu}"  # .json and .md, by benchmarks.results
TRAIN_RESULTS = "{date}-gpu-train-{gpu}"
SESSION_FILES = ("session.log", "stages.json")  # every call writes these into $OUT


@dataclass(frozen=True)
class Stage:
    name: str
    priority: int  # the order: 1, 2, 3
    what: str
    outputs: tuple[str, ...]  # files it writes into $OUT (results as stems: .json and .md)
    optional: bool = False  # starts only if its worst-case estimate fits the call's time left

    def out_files(self) -> set[str]:
        names: set[str] = set()
        for name in self.outputs:
            if name in (CLASSIFY_RESULTS, TRAIN_RESULTS):
                names |= {name + ".json", name + ".md"}
            else:
                names.add(name)
        return names


@dataclass(frozen=True)
class Call:
    number: int
    carry: tuple[str, ...]
    stages: tuple[Stage, ...]

    @property
    def command(self) -> str:
        return f"bash benchmarks/gpu_session.sh call{self.number}"

    def out_files(self) -> set[str]:
        files = set(SESSION_FILES)
        for stage in self.stages:
            files |= stage.out_files()
        return files


CALLS: tuple[Call, ...] = (
    Call(
        1,
        (".carry/ort", ".carry/lite"),
        (
            Stage(
                "runtime",
                1,
                "unpack ORT 1.31.1 to /tmp/ortsite; a CUDA session, checked against the CPU",
                ("gpu_probe.json",),
            ),
            Stage("assets", 1, "tokenizer and AG News rows to /tmp", ()),
            Stage(
                "export",
                1,
                "bert-base shape (BertConfig(), random), export --optimize --fp16, parity on CUDA",
                ("export_report-bert-base.json",),
            ),
            Stage(
                "classify-auto",
                1,
                "newsclf classify --device auto on test.csv: CUDA and fp16 by itself? Its labels "
                "in batches and one row at a time (batch invariance)",
                ("classify-auto-report.json", CLASSIFY_RESULTS),
            ),
            Stage(
                "classify-bert-base",
                2,
                "speed end to end: newsclf on 100k rows, baselines time-boxed",
                (CLASSIFY_RESULTS,),
            ),
        ),
    ),
    Call(
        2,
        (".carry/minilm", ".carry/lite"),
        (
            Stage("assets", 2, "the embedded MiniLM (fp16 copy) to /tmp", ()),
            Stage(
                "embedded-model",
                2,
                "MiniLM fine-tuned 1 epoch, exported, test accuracy on CUDA and CPU",
                ("export_report-embedded.json", CLASSIFY_RESULTS, TRAIN_RESULTS),
            ),
            Stage(
                "classify-embedded",
                2,
                "speed end to end for the MiniLM, as for the bert-base shape",
                (CLASSIFY_RESULTS,),
            ),
        ),
    ),
    Call(
        3,
        (".carry/lite",),
        (
            Stage("assets", 3, "(only if the machine was replaced: rows and tokenizer again)", ()),
            Stage(
                "train-bert-base",
                3,
                "newsclf train (64 x 2, bf16) vs a default Trainer (fp32)",
                (TRAIN_RESULTS,),
            ),
            Stage(
                "finetune-embedded",
                3,
                "MiniLM, README settings (lr 5e-5, batch 16, 4 epochs)",
                (TRAIN_RESULTS,),
                optional=True,
            ),
        ),
    ),
)

# Sizes of what travels, MiB: the working tree (tracked and untracked-not-ignored files:
# 0.7-1.1 MiB on 2026-12-02, 1 planned, the margin above covers more) and each carried folder as `python -m benchmarks gpu-assets`
# makes it. `carry_sizes()` and `tree_mib()` measure the real ones.
TREE = "working tree"
CARRY_MIB = {TREE: 1.0, ".carry/ort": 57.9, ".carry/lite": 1.2, ".carry/minilm": 44.0}


def call(number: int) -> Call:
    return next(c for c in CALLS if c.number == number)


def stage(call_number: int, name: str) -> Stage:
    found = [s for s in call(call_number).stages if s.name == name]
    if not found:
        raise KeyError(f"call {call_number} has no stage {name!r}")
    return found[0]


# -- estimates -------------------------------------------------------------------------------


def _classify_s(model: str, scenario: str, k: Known, s: Sizes) -> float:
    """Engines start in parallel (one process each), warm up, then each runs once per round:
    a time-boxed engine stops after the slice that crosses its box."""
    newsclf_rate = k.newsclf_rows_per_s[SCENARIOS.index(scenario)]
    start = (
        k.python_start_s
        + k.load(model)
        + max(
            s.warmup_box_s + s.slice_rows / k.pipeline_rows_per_s,  # the slice crossing the box
            k.ort_session_s + s.warmup_rows / newsclf_rate,
        )
    )
    timed = 0.0
    for engine, box in s.engines:
        if box is None:
            timed += s.classify_rows / newsclf_rate + k.newsclf_file_s * s.classify_rows / 1e5
        else:
            rate = (
                k.pipeline_rows_per_s if engine.startswith("pipeline") else k.torch_fp16_rows_per_s
            )
            timed += box + s.slice_rows / rate
    return start + s.rounds * timed + k.results_s


def _train_rows(max_samples: int | None) -> int:
    rows = AG_NEWS_TRAIN_ROWS if max_samples is None else min(max_samples, AG_NEWS_TRAIN_ROWS)
    return rows - math.ceil(rows * VALIDATION_SHARE)


def estimate(
    call_number: int, name: str, scenario: str = "worst", k: Known = KNOWN, s: Sizes = FULL
) -> float:
    """Seconds a stage takes on the GPU machine, from `k` and the sizes `s`."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}")
    worst = scenario == "worst"
    test_rows = s.test_rows or AG_NEWS_TEST_ROWS
    newsclf_rate = k.newsclf_rows_per_s[SCENARIOS.index(scenario)]
    if name == "runtime":
        return k.unpack_s + k.python_start_s + 2.0
    if name == "assets":
        return 2.0 if call_number < 3 else 1.0
    if name == "export":
        return k.export("bert-base")
    if name == "classify-auto":
        # + the batch-invariance check: 512 rows in batches, then one at a time (~3 ms each).
        invariance = k.python_start_s + k.ort_session_s + 512 * 0.003 + 512 / newsclf_rate
        return (
            k.python_start_s + k.ort_session_s + test_rows / newsclf_rate + 1.0 + k.results_s
        ) + invariance
    if name == "classify-bert-base":
        return _classify_s("bert-base", scenario, k, s)
    if name == "classify-embedded":
        return _classify_s("embedded", scenario, k, s)
    if name == "embedded-model":
        samples = _train_rows(s.embedded_max_samples) * s.embedded_epochs
        train = samples / k.embedded_train_samples_per_s + 3.0  # + evaluations, checkpoint
        accuracy = 3 * 2.0 + test_rows / k.cpu_minilm_rows_per_s + 2 * test_rows / newsclf_rate
        return k.python_start_s + train + k.export("embedded") + accuracy + k.results_s
    if name == "train-bert-base":
        samples = s.train_steps * s.train_batch * s.train_accum
        rate = k.train_samples_per_s[1 if worst else 0]
        each = k.python_start_s + k.load("bert-base") + 1.0
        newsclf = each + samples / rate + 4.0  # + evaluation, checkpoint
        default = each + samples / k.default_trainer_samples_per_s + 1.0
        return newsclf + default + k.results_s
    if name == "finetune-embedded":
        samples = _train_rows(None) * s.finetune_epochs
        epochs = math.ceil(s.finetune_epochs)
        return k.python_start_s + samples / k.embedded_train_samples_per_s + epochs * 1.0 + 2.0
    raise KeyError(f"no estimate for stage {name!r}")


def transfer_s(
    carry: tuple[str, ...], k: Known = KNOWN, sizes_mib: dict[str, float] | None = None
) -> float:
    return k.transfer_fixed_s + travel_mib(carry, sizes_mib) / k.transfer_mib_per_s


def travel_mib(carry: tuple[str, ...], sizes_mib: dict[str, float] | None = None) -> float:
    known = sizes_mib or CARRY_MIB
    return known[TREE] + sum(known[path] for path in carry)


def stages_s(c: Call, scenario: str, *, required_only: bool = False, k: Known = KNOWN) -> float:
    return sum(
        estimate(c.number, st.name, scenario, k)
        for st in c.stages
        if not (required_only and st.optional)
    )


def timeout_s(c: Call, k: Known = KNOWN) -> int:
    """timeout_s of the call's run(...): its worst case with room, in tens of seconds."""
    raw = TIMEOUT_FACTOR * stages_s(c, "worst", k=k) + 10
    return min(PER_CALL_LIMIT_S, int(math.ceil(raw / 10) * 10))


@dataclass
class Budget:
    """The whole run against the lease. Seconds throughout."""

    calls: list[dict[str, float]] = field(default_factory=list)
    run_goal_s: float = 0.0
    run_worst_s: float = 0.0
    run_required_worst_s: float = 0.0
    retry_s: float = 0.0  # a fresh start-up and the longest call again
    lease_worst_s: float = 0.0  # start-up and the whole run
    lease_with_retry_s: float = 0.0  # start-up, the run less optional stages, one retry
    ceiling_s: float = 0.0  # start-up and every call running to its timeout_s
    problems: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems


def budget(k: Known = KNOWN, sizes_mib: dict[str, float] | None = None) -> Budget:
    b = Budget()
    between = k.gap_s * (len(CALLS) - 1) + k.close_s
    for c in CALLS:
        move = transfer_s(c.carry, k, sizes_mib)
        entry = {
            "call": c.number,
            "transfer_s": move,
            "goal_s": move + stages_s(c, "goal", k=k),
            "worst_s": move + stages_s(c, "worst", k=k),
            "required_worst_s": move + stages_s(c, "worst", required_only=True, k=k),
            "timeout_s": timeout_s(c, k),
            "travel_mib": travel_mib(c.carry, sizes_mib),
            "out_files": len(c.out_files()),
        }
        b.calls.append(entry)
    b.run_goal_s = sum(e["goal_s"] for e in b.calls) + between
    b.run_worst_s = sum(e["worst_s"] for e in b.calls) + between
    b.run_required_worst_s = sum(e["required_worst_s"] for e in b.calls) + between
    b.retry_s = k.startup_s + max(e["required_worst_s"] for e in b.calls)
    b.lease_worst_s = k.startup_s + b.run_worst_s
    b.lease_with_retry_s = k.startup_s + b.run_required_worst_s + b.retry_s
    b.ceiling_s = k.startup_s + sum(e["transfer_s"] + e["timeout_s"] for e in b.calls) + between
    b.problems = _problems(b)
    return b


def _problems(b: Budget) -> list[str]:
    problems = []
    if len(CALLS) > MAX_CALLS:
        problems.append(f"{len(CALLS)} calls; at most {MAX_CALLS}")
    if b.run_worst_s > RUN_BUDGET_S:
        problems.append(f"the run takes {b.run_worst_s:.0f} s at worst; budget {RUN_BUDGET_S} s")
    if b.lease_worst_s > LEASE_S:
        problems.append(f"start-up and run: {b.lease_worst_s:.0f} s; lease {LEASE_S} s")
    if b.lease_with_retry_s > LEASE_S:
        problems.append(f"with one retry: {b.lease_with_retry_s:.0f} s; lease {LEASE_S} s")
    if b.ceiling_s > LEASE_S:
        problems.append(f"every call at its timeout: {b.ceiling_s:.0f} s; lease {LEASE_S} s")
    for e in b.calls:
        n = int(e["call"])
        if e["timeout_s"] < e["worst_s"] - e["transfer_s"]:
            problems.append(f"call {n}: timeout_s {e['timeout_s']} under its worst case")
        if e["travel_mib"] > CARRY_LIMIT_MIB - CARRY_MARGIN_MIB:
            problems.append(
                f"call {n}: {e['travel_mib']:.1f} MiB travels; limit {CARRY_LIMIT_MIB} less {CARRY_MARGIN_MIB} margin"
            )
        if e["out_files"] > OUT_FILES_LIMIT:
            problems.append(
                f"call {n}: {e['out_files']} files in $OUT; {OUT_FILES_LIMIT} come back"
            )
    order = [st.priority for c in CALLS for st in c.stages]
    if order != sorted(order):
        problems.append(f"stages are not in priority order: {order}")
    return problems


def may_start(call_number: int, name: str, elapsed_s: float, call_timeout_s: float | None) -> bool:
    """Whether a stage starts now. Required stages always start (a stage cut short still leaves
    what it wrote); an optional one only if its worst case fits the time left. No timeout
    (a rehearsal): everything starts."""
    if call_timeout_s is None or call_timeout_s <= 0:
        return True
    st = stage(call_number, name)
    if not st.optional:
        return True
    return elapsed_s + estimate(call_number, name, "worst") + RESERVE_S <= call_timeout_s


# -- what travels ----------------------------------------------------------------------------


def folder_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def tree_mib(root: Path = ROOT) -> float:
    """What travels without `carry`: tracked files and untracked ones git does not ignore."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [root / os.fsdecode(name) for name in listed if name]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def carry_sizes(root: Path = ROOT) -> dict[str, float]:
    """What travels as it is now: the tree, and the carried folders (missing ones at their
    planned size)."""
    sizes_now = {TREE: tree_mib(root)}
    for path, planned in CARRY_MIB.items():
        if path != TREE:
            sizes_now[path] = folder_mib(root / path) if (root / path).exists() else planned
    return sizes_now


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- reports ---------------------------------------------------------------------------------


def run_calls(k: Known = KNOWN) -> list[dict[str, object]]:
    """The device tool's run(...) arguments, call by call."""
    return [
        {"carry": list(c.carry), "command": c.command, "timeout_s": timeout_s(c, k)} for c in CALLS
    ]


def header_lines(k: Known = KNOWN) -> list[str]:
    """The three run(...) calls as gpu_session.sh's header shows them (a test keeps the two
    equal)."""
    return [
        f"#   run(carry={json.dumps(r['carry'])}, command={json.dumps(r['command'])}, timeout_s={r['timeout_s']})"
        for r in run_calls(k)
    ]


def render(
    k: Known = KNOWN, sizes_mib: dict[str, float] | None = None, only_call: int | None = None
) -> str:
    b = budget(k, sizes_mib)
    lines = ["GPU plan (issue 22): estimated GPU seconds, goal / worst case"]
    for c, e in zip(CALLS, b.calls, strict=True):
        if only_call is not None and c.number != only_call:
            continue
        lines.append(
            f"call {c.number}: carry {', '.join(c.carry)} ({e['travel_mib']:.1f} MiB travels, "
            f"~{e['transfer_s']:.0f} s), timeout_s {e['timeout_s']}, {e['out_files']} files in $OUT"
        )
        for st in c.stages:
            goal = estimate(c.number, st.name, "goal", k)
            worst = estimate(c.number, st.name, "worst", k)
            flag = " (if time is left)" if st.optional else ""
            lines.append(
                f"  P{st.priority} {st.name:<18} {goal:6.0f} / {worst:4.0f} s  {st.what}{flag}"
            )
        lines.append(
            f"  call {c.number} with its transfer: {e['goal_s']:.0f} / {e['worst_s']:.0f} s"
        )
    between = k.gap_s * (len(CALLS) - 1) + k.close_s
    lines += [
        f"waits between calls and the close: {between:.0f} s; start-up {k.startup_s:.0f} s",
        f"run: {b.run_goal_s:.0f} / {b.run_worst_s:.0f} s of {RUN_BUDGET_S} s",
        f"start-up + run: {b.lease_worst_s:.0f} s; + one retry (start-up and the longest call, "
        f"{b.retry_s:.0f} s, in place of the optional stages): {b.lease_with_retry_s:.0f} s; "
        f"every call at its timeout: {b.ceiling_s:.0f} s; lease {LEASE_S} s",
        "budget: fits" if b.fits else "budget: DOES NOT FIT: " + "; ".join(b.problems),
    ]
    return "\n".join(lines)


def shell_env(quick: bool) -> str:
    """Assignments for gpu_session.sh: the sizes, the stage lists, the timeouts."""
    s = sizes(quick)
    values: dict[str, object] = {
        "MODEL_SIZE": s.model_size,
        "MODEL_LABEL": s.model_label,
        "ROWS": s.classify_rows,
        "ROUNDS": s.rounds,
        "WARM_ROWS": s.warmup_rows,
        "WARM_BOX": f"{s.warmup_box_s:g}",
        "SLICE_ROWS": s.slice_rows,
        "ENGINES_CUDA": ",".join(s.engine_names("cuda")),
        "ENGINES_CPU": ",".join(s.engine_names("cpu")),
        "TIMEBOX_CUDA": s.timebox_arg("cuda"),
        "TIMEBOX_CPU": s.timebox_arg("cpu"),
        "TEST_ROWS": s.test_rows or "",
        "TRAIN_ROWS": s.train_rows,
        "TRAIN_STEPS": s.train_steps,
        "TRAIN_BATCH": s.train_batch,
        "TRAIN_ACCUM": s.train_accum,
        "ORT_ARCHIVE": ORT_ARCHIVE,
        "ORT_SHA256": ORT_SHA256,
    }
    for c in CALLS:
        values[f"CALL{c.number}_STAGES"] = " ".join(st.name for st in c.stages)
        values[f"CALL{c.number}_TIMEOUT"] = timeout_s(c)
    return "\n".join(f"{key}={shlex.quote(str(value))}" for key, value in values.items())


def record(
    path: Path,
    call_number: int,
    name: str,
    status: str,
    wall_s: float | None,
    rc: int | None = None,
    note: str | None = None,
    device: str | None = None,
    quick: bool = False,
) -> dict[str, object]:
    """Add one stage's outcome to the call's stages.json (written whole, atomically), beside
    the stage's GPU estimates."""
    data = (
        json.loads(path.read_text())
        if path.is_file()
        else {
            "call": call_number,
            "quick": quick,
            "device": device,
            "timeout_s": timeout_s(call(call_number)),
            "stages": [],
        }
    )
    st = stage(call_number, name)
    data["stages"].append(
        {
            "stage": name,
            "priority": st.priority,
            "status": status,
            "rc": rc,
            "wall_s": None if wall_s is None else round(wall_s, 1),
            "gpu_estimate_goal_s": round(estimate(call_number, name, "goal"), 1),
            "gpu_estimate_worst_s": round(estimate(call_number, name, "worst"), 1),
            "note": note,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
    return data


def cuda_library_dirs() -> list[str]:
    """The lib folders of the nvidia-* wheels (torch's CUDA 13 and cuDNN 9), where ONNX
    Runtime's CUDA provider finds its libraries when ORT is not installed beside them."""
    import glob
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = set()
    for base in spec.submodule_search_locations:
        for library in glob.glob(os.path.join(base, "*", "lib", "lib*.so*")):
            found.add(os.path.dirname(library))
    return sorted(found)


def ort_usable(site: Path) -> bool:
    """Whether the unpacked ONNX Runtime at `site` can load in this Python: the archive is
    built for CPython 3.12 (the GPU machine's); a rehearsal elsewhere uses its own."""
    import sysconfig

    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return (site / "onnxruntime" / "capi" / f"onnxruntime_pybind11_state{suffix}").is_file()


def summary(files: list[Path]) -> str:
    """The stages of a run (its stages.json files): status and wall time, beside the GPU
    estimates."""
    lines = [
        f"{'call':<5}{'stage':<20}{'status':<9}{'wall s':>8}{'GPU goal s':>12}{'GPU worst s':>13}"
    ]
    total = [0.0, 0.0, 0.0]
    for path in files:
        data = json.loads(path.read_text())
        for st in data["stages"]:
            wall = st["wall_s"]
            lines.append(
                f"{data['call']:<5}{st['stage']:<20}{st['status']:<9}"
                f"{'-' if wall is None else f'{wall:.1f}':>8}"
                f"{st['gpu_estimate_goal_s']:>12.0f}{st['gpu_estimate_worst_s']:>13.0f}"
            )
            total[0] += wall or 0.0
            total[1] += st["gpu_estimate_goal_s"]
            total[2] += st["gpu_estimate_worst_s"]
    lines.append(f"{'all':<5}{'':<20}{'':<9}{total[0]:>8.1f}{total[1]:>12.0f}{total[2]:>13.0f}")
    return "\n".join(lines)


def head_csv(source: Path, target: Path, rows: int) -> Path:
    """The header and the first `rows` records of a CSV (quoted newlines kept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(source, newline="", encoding="utf-8") as src,
        open(target, "w", newline="", encoding="utf-8") as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for index, row in enumerate(reader):
            if index >= rows:
                break
            writer.writerow(row)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="what")
    show = sub.add_parser("show", help="the plan and the budget check (the default)")
    show.add_argument("--call", type=int)
    show.add_argument("--measured", action="store_true", help="carry sizes as .carry/ holds them")
    sub.add_parser("calls", help="the run(...) calls as JSON")
    sub.add_parser("header", help="the run(...) calls as gpu_session.sh's header shows them")
    env = sub.add_parser("env", help="shell assignments for gpu_session.sh")
    env.add_argument("--quick", action="store_true")
    fits = sub.add_parser("fits", help="exit 0 if the stage may start now")
    fits.add_argument("stage")
    fits.add_argument("--call", type=int, required=True)
    fits.add_argument("--elapsed", type=float, required=True)
    fits.add_argument("--timeout", type=float, default=0.0, help="the call's timeout_s; 0: none")
    rec = sub.add_parser("record", help="add a stage's outcome to stages.json")
    rec.add_argument("file", type=Path)
    rec.add_argument("stage")
    rec.add_argument("--call", type=int, required=True)
    rec.add_argument("--status", required=True)
    rec.add_argument("--wall-s", type=float)
    rec.add_argument("--rc", type=int)
    rec.add_argument("--note")
    rec.add_argument("--device")
    rec.add_argument("--quick", action="store_true")
    head = sub.add_parser("head-csv", help="the first N records of a CSV")
    head.add_argument("source", type=Path)
    head.add_argument("target", type=Path)
    head.add_argument("rows", type=int)
    check = sub.add_parser("check-file", help="exit 0 if FILE's sha256 is the ORT archive's")
    check.add_argument("file", type=Path)
    sub.add_parser("cuda-libs", help="the nvidia-* wheels' lib folders, ':'-joined")
    usable = sub.add_parser("ort-usable", help="exit 0 if the ORT unpacked at SITE loads here")
    usable.add_argument("site", type=Path)
    summ = sub.add_parser("summary", help="stages.json files as a table")
    summ.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)

    what = args.what or "show"
    if what == "show":
        measured = carry_sizes() if getattr(args, "measured", False) else None
        print(render(sizes_mib=measured, only_call=getattr(args, "call", None)))
        return 0 if budget(sizes_mib=measured).fits else 1
    if what == "calls":
        print(json.dumps(run_calls(), indent=2))
    elif what == "header":
        print("\n".join(header_lines()))
    elif what == "env":
        print(shell_env(args.quick))
    elif what == "fits":
        timeout = args.timeout if args.timeout > 0 else None
        if not may_start(args.call, args.stage, args.elapsed, timeout):
            worst = estimate(args.call, args.stage, "worst")
            print(
                f"skip {args.stage}: {args.elapsed:.0f} s of {args.timeout:.0f} s used; it needs {worst:.0f} s"
            )
            return 1
    elif what == "record":
        record(
            args.file,
            args.call,
            args.stage,
            args.status,
            args.wall_s,
            args.rc,
            args.note,
            args.device,
            args.quick,
        )
    elif what == "head-csv":
        head_csv(args.source, args.target, args.rows)
    elif what == "cuda-libs":
        print(":".join(cuda_library_dirs()))
    elif what == "ort-usable":
        if not ort_usable(args.site):
            print(
                f"{args.site}: its onnxruntime is not built for this Python ({sys.version.split()[0]})"
            )
            return 1
    elif what == "summary":
        print(summary(args.files))
    elif what == "check-file":
        found = sha256(args.file)
        if found != ORT_SHA256:
            print(f"{args.file}: sha256 {found}, expected {ORT_SHA256}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
