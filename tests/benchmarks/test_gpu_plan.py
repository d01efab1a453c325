"""The GPU run's plan (benchmarks/gpu_plan.py), its time boxes and its script, without a GPU."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from benchmarks import gpu_plan
from benchmarks.gpu_plan import CALLS, FULL, KNOWN, QUICK, budget, estimate, may_start
from benchmarks.timebox import run_timeboxed

SCRIPT = Path(gpu_plan.__file__).with_name("gpu_session.sh")


# -- the budget --------------------------------------------------------------------------------


def test_the_plan_fits_ten_minutes_and_the_lease_with_a_retry() -> None:
    b = budget()
    assert b.fits, b.problems
    assert len(CALLS) <= 3
    assert b.run_goal_s <= b.run_worst_s <= 600
    assert b.lease_with_retry_s <= 900
    assert b.ceiling_s <= 900  # every call running to its timeout_s stays inside the lease
    for entry in b.calls:
        assert entry["worst_s"] - entry["transfer_s"] <= entry["timeout_s"] <= 600


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"newsclf_rows_per_s": (20_000, 400)}, "worst"),  # newsclf far below its worst case
        ({"startup_s": 400.0}, "lease"),
        ({"export_s": (("bert-base", 900.0), ("embedded", 30.0))}, "timeout_s"),
        ({"gap_s": 200.0}, "run takes"),
    ],
)
def test_the_budget_check_fails_when_the_figures_do_not_fit(change: dict, problem: str) -> None:
    b = budget(dataclasses.replace(KNOWN, **change))
    assert not b.fits
    assert any(problem in p for p in b.problems), b.problems


def test_what_travels_fits_the_carry_limit_and_a_bigger_asset_does_not() -> None:
    assert all(e["travel_mib"] <= 62 for e in budget().calls)
    # the runtime (57.9 MiB) and the MiniLM (44 MiB) can never share a call
    assert not any({".carry/ort", ".carry/minilm"} <= set(c.carry) for c in CALLS)
    heavier = dict(gpu_plan.CARRY_MIB) | {".carry/lite": 5.0}
    assert any("MiB travels" in p for p in budget(sizes_mib=heavier).problems)


def test_timeouts_follow_the_worst_case_estimates() -> None:
    slower = dataclasses.replace(KNOWN, train_samples_per_s=(600, 100))
    assert gpu_plan.timeout_s(CALLS[2], slower) > gpu_plan.timeout_s(CALLS[2])
    assert gpu_plan.timeout_s(CALLS[0], slower) == gpu_plan.timeout_s(CALLS[0])


# -- stages: priority order, outputs in $OUT ---------------------------------------------------


def test_stages_run_in_the_issues_priority_order() -> None:
    order = [st.priority for c in CALLS for st in c.stages]
    assert order == sorted(order)
    first = [st.name for st in CALLS[0].stages if st.priority == 1]
    assert first == ["runtime", "assets", "export", "classify-auto"]
    assert all(st.priority == 1 for st in CALLS[0].stages[:4])
    optional = [(c.number, st.name) for c in CALLS for st in c.stages if st.optional]
    assert optional == [(3, "finetune-embedded")]  # only the last stage of the last call


def test_each_measuring_stage_writes_into_out_and_each_call_returns_everything() -> None:
    for c in CALLS:
        assert len(c.out_files()) <= gpu_plan.OUT_FILES_LIMIT
        for st in c.stages:
            if st.name != "assets":
                assert st.outputs, f"{st.name} writes nothing into $OUT"
    text = SCRIPT.read_text()
    for c in CALLS:
        for st in c.stages:
            body = _stage_body(text, st.name)
            if st.outputs:  # its files go to $OUT (directly, or mirrored from the results)
                assert '"$OUT' in body or "classify_model" in body, st.name
    assert '--mirror "$OUT"' in _function(text, "classify_model")


def test_the_script_reads_its_stage_lists_and_sizes_from_the_plan() -> None:
    env = dict(line.split("=", 1) for line in gpu_plan.shell_env(quick=False).splitlines())
    for c in CALLS:
        names = shlex.split(env[f"CALL{c.number}_STAGES"])[0].split()
        assert names == [st.name for st in c.stages]
        assert int(env[f"CALL{c.number}_TIMEOUT"]) == gpu_plan.timeout_s(c)
    assert int(env["ROWS"]) >= 100_000
    text = SCRIPT.read_text()
    assert 'eval "$settings"' in text and "plan env" in text
    # no size of the plan is repeated in the script
    for number in ("100000", "100_000", "16384", "8192", "4096"):
        assert not re.search(rf"\b{number}\b", text), number


def test_the_scripts_header_shows_the_plans_calls() -> None:
    text = SCRIPT.read_text()
    block = text.split("# BEGIN run calls")[1].split("# END run calls")[0]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    assert lines == gpu_plan.header_lines()
    for call, line in zip(gpu_plan.run_calls(), lines, strict=True):
        assert f"timeout_s={call['timeout_s']}" in line


def test_a_rehearsal_never_writes_into_benchmarks_results() -> None:
    text = SCRIPT.read_text()
    assert "benchmarks/results" not in text.split("set -uo pipefail")[1]
    suites = [line for line in text.splitlines() if "--suite-name" in line]
    assert suites and all('--out "$RESULTS"' in line for line in suites)
    assert "RESULTS=$WORK/results" in text


def _function(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}\(\) \{{(.*?)^\}}", text, re.S | re.M)
    one_line = re.search(rf"^{re.escape(name)}\(\) \{{(.*)\}}$", text, re.M)
    assert match or one_line, f"no function {name} in {SCRIPT.name}"
    return (match or one_line).group(1)


def _stage_body(text: str, stage: str) -> str:
    return _function(text, "stage_" + stage.replace("-", "_"))


# -- starting stages, recording them ------------------------------------------------------------


def test_required_stages_always_start_and_the_optional_one_only_if_it_fits() -> None:
    timeout = gpu_plan.timeout_s(CALLS[2])
    needs = estimate(3, "finetune-embedded", "worst")
    assert may_start(3, "train-bert-base", timeout - 1, timeout)
    assert may_start(3, "finetune-embedded", 20, timeout)
    assert not may_start(3, "finetune-embedded", timeout - needs, timeout)
    assert may_start(3, "finetune-embedded", 10_000, None)  # a rehearsal has no limit


def test_stages_json_holds_each_stage_beside_its_gpu_estimates(tmp_path: Path) -> None:
    path = tmp_path / "stages.json"
    gpu_plan.record(path, 1, "runtime", "ok", 12.34, rc=0, device="cpu", quick=True)
    gpu_plan.record(path, 1, "export", "failed", 3.0, rc=1)
    data = json.loads(path.read_text())
    assert data["call"] == 1 and data["quick"] is True
    assert [s["stage"] for s in data["stages"]] == ["runtime", "export"]
    assert data["stages"][0]["wall_s"] == 12.3
    assert data["stages"][1]["gpu_estimate_worst_s"] == pytest.approx(KNOWN.export("bert-base"))
    assert "export" in gpu_plan.summary([path])
    with pytest.raises(KeyError):
        gpu_plan.record(path, 2, "runtime", "ok", 1.0)  # runtime belongs to call 1


def test_quick_sizes_are_toys_of_the_same_plan() -> None:
    assert QUICK.classify_rows < 1_000 < FULL.classify_rows
    assert [n for n, _ in QUICK.engines] == [n for n, _ in FULL.engines]
    assert QUICK.model_size == "toy" and FULL.model_size == "bert-base"
    from benchmarks.engines import REGISTRY

    for s in (FULL, QUICK):
        for name, box in s.engines + s.cpu_engines:
            assert name in REGISTRY
            assert (box is None) == REGISTRY[name].newsclf  # baselines boxed, newsclf not


def test_head_csv_keeps_quoted_newlines(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text('label,text\nA,"one\ntwo"\nB,three\nC,four\n', encoding="utf-8")
    gpu_plan.head_csv(source, tmp_path / "out.csv", 2)
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [["label", "text"], ["A", "one\ntwo"], ["B", "three"]]


# -- time boxes ----------------------------------------------------------------------------------


class _Rows:
    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def slice(self, start: int, stop: int) -> _Rows:
        return _Rows(self.items[start:stop])


class _Clock:
    """A slow engine: 10 ms a row on a fake clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[int] = []

    def __call__(self) -> float:
        return self.now

    def classify(self, rows: _Rows) -> list[str]:
        self.calls.append(len(rows))
        self.now += 0.01 * len(rows)
        return [f"label-{x}" for x in rows.items]


def test_a_timeboxed_baseline_stops_by_its_time_limit_and_reports_the_rate_over_what_ran() -> None:
    clock = _Clock()
    rows = _Rows([str(i) for i in range(100_000)])
    timed = run_timeboxed(clock.classify, rows, box_s=5.0, slice_rows=128, clock=clock)
    assert timed.stopped_by == "time"
    assert 5.0 <= timed.seconds < 5.0 + 128 * 0.01 + 1e-9  # at most one slice over the box
    assert timed.rows == sum(clock.calls) < len(rows)
    assert all(n == 128 for n in clock.calls)  # whole slices only
    assert timed.rows_per_s == pytest.approx(100.0)
    assert timed.predicted == [f"label-{i}" for i in range(timed.rows)]


def test_without_a_box_or_with_time_to_spare_every_row_runs() -> None:
    clock = _Clock()
    rows = _Rows([str(i) for i in range(300)])
    whole = run_timeboxed(clock.classify, rows, None, 128, clock=clock)
    assert (whole.rows, whole.stopped_by, clock.calls) == (300, "rows", [300])
    clock.calls.clear()
    roomy = run_timeboxed(clock.classify, rows, 60.0, 128, clock=clock)
    assert (roomy.rows, roomy.stopped_by, clock.calls) == (300, "rows", [128, 128, 44])


def test_the_runners_figures_are_rates_over_the_rows_each_engine_ran() -> None:
    from benchmarks.engines import REGISTRY
    from benchmarks.runner import Worker, _records

    def worker(name: str, rows: int, seconds: float, **extra: object) -> Worker:
        w = Worker(REGISTRY[name], None, None, **extra)  # type: ignore[arg-type]
        if rows:
            w.rows, w.rows_each_round, w.seconds = rows, [rows], [seconds]
        return w

    records = _records(
        [
            worker("pipeline-cuda", 3_000, 3.0, timebox_s=2.5, stopped_by="time"),
            worker("torch-fp16-cuda-b256", 20_000, 2.0, timebox_s=1.0, stopped_by="time"),
            worker("newsclf-cuda", 100_000, 5.0, stopped_by="rows"),
            worker("torch-fp16-cuda-b1024", 0, 0.0, error="CUDA out of memory"),
        ]
    )
    by = {r["engine"]: r for r in records}
    assert (
        by["pipeline-cuda"]["rows_per_s"] == 1_000 and by["pipeline-cuda"]["stopped_by"] == "time"
    )
    assert by["newsclf-cuda"]["rows_per_s"] == 20_000
    assert by["newsclf-cuda"]["ratio_to_baseline"] == 20.0
    assert by["newsclf-cuda"]["ratio_to_best_peer"] == 2.0
    assert by["newsclf-cuda"]["best_peer"] == "torch-fp16-cuda-b256"
    assert by["torch-fp16-cuda-b1024"]["rows_per_s"] is None
    assert "out of memory" in by["torch-fp16-cuda-b1024"]["error"]


def test_timebox_argument_parsing() -> None:
    from benchmarks.__main__ import parse_timeboxes

    assert parse_timeboxes(FULL.timebox_arg("cuda")) == {
        "pipeline-cuda": 10.0,
        "torch-fp16-cuda-b256": 6.0,
        "torch-fp16-cuda-b1024": 6.0,
    }
    assert parse_timeboxes(None) == {}
    with pytest.raises(SystemExit):
        parse_timeboxes("no-such-engine=3")


# -- repeated rows, priority 1, collecting -------------------------------------------------------


def test_repeated_rows_keep_their_order_and_slices(tmp_path: Path) -> None:
    from benchmarks.rows import load_rows
    from newsclf.artifacts import PreprocessingConfig

    source = tmp_path / "t.csv"
    source.write_text(
        "label,title,description\nWorld,A &amp; B,x\nSports,C,y\nBusiness,D,z\n", encoding="utf-8"
    )
    rows = load_rows(source, 7, PreprocessingConfig(text_columns=["title", "description"]))
    assert len(rows) == 7
    assert rows.labels == ["World", "Sports", "Business"] * 2 + ["World"]
    assert rows.texts[0] == rows.texts[3] == rows.texts[6] == "A & B x"
    assert rows.slice(2, 4).labels == ["Business", "World"]
    assert len(load_rows(source, 2, PreprocessingConfig(text_columns=["title"]))) == 2


def test_priority_one_needs_every_part_on_cuda() -> None:
    from benchmarks.gpu import CUDA_PROVIDER, priority1_verdict

    probe = {"session_providers": [CUDA_PROVIDER, "CPUExecutionProvider"]}
    export = {
        "passed": True,
        "variants": [
            {"variant": v, "provider": CUDA_PROVIDER, "label_agreement": 1.0}
            for v in ("fp32", "optimized", "fp16")
        ],
    }
    auto = {"provider": CUDA_PROVIDER, "variant": "fp16"}
    assert priority1_verdict(probe, export, auto)["all_met"]
    cpu_auto = {"provider": "CPUExecutionProvider", "variant": "optimized"}
    assert not priority1_verdict(probe, export, cpu_auto)["all_met"]
    export_cpu = export | {"variants": [{"variant": "fp32", "provider": "CPUExecutionProvider"}]}
    assert not priority1_verdict(probe, export_cpu, auto)["all_met"]
    assert not priority1_verdict({"session_providers": ["CPUExecutionProvider"]}, None, None)[
        "all_met"
    ]


def test_collect_merges_the_calls_results_into_one_file(tmp_path: Path) -> None:
    import argparse

    from benchmarks.gpu import collect

    machine = {"gpu": "NVIDIA H200", "cpu": "x", "cores": 16}
    stem = "2026-12-03-gpu-classify-nvidia-h200"

    def results(folder: str, records: list[dict]) -> Path:
        path = tmp_path / folder / f"{stem}.json"
        path.parent.mkdir()
        data = {"suite": "gpu-classify", "machine": machine, "runs": [{"call": folder}]}
        path.write_text(json.dumps(data | {"records": records}))
        return path.parent

    call1 = results(
        "call1", [{"engine": "newsclf-cuda", "model": "bert-base-shape", "rows_per_s": 1}]
    )
    call2 = results(
        "call2",
        [
            {"engine": "newsclf-cuda", "model": "embedded", "rows_per_s": 2},
            {"engine": "newsclf-cuda", "model": "bert-base-shape", "rows_per_s": 3},
        ],
    )
    target = tmp_path / "results"
    collect(argparse.Namespace(sources=[call1, call2], target=target))
    merged = json.loads((target / f"{stem}.json").read_text())
    speeds = {(r["model"], r["rows_per_s"]) for r in merged["records"]}
    assert speeds == {("embedded", 2), ("bert-base-shape", 3)}  # the later call wins
    assert [r["call"] for r in merged["runs"]] == ["call1", "call2"]
    assert (target / f"{stem}.md").is_file()


# -- results leave as soon as they exist ---------------------------------------------------------


class _FakeProcess:
    def wait(self) -> int:
        return 0


class _FakeLog:
    name = "fake.log"

    def close(self) -> None:
        pass


def test_the_runner_hands_over_every_figure_as_it_comes_and_survives_a_failing_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import runner
    from benchmarks.engines import REGISTRY

    answers = {
        "pipeline-cuda": {"seconds": 2.0, "rows": 2_000, "accuracy": 0.9, "stopped_by": "time"},
        "newsclf-cuda": {"seconds": 5.0, "rows": 100_000, "accuracy": 0.9, "stopped_by": "rows"},
    }

    def launch(engine, spec, log_dir):  # type: ignore[no-untyped-def]
        worker = runner.Worker(
            engine, _FakeProcess(), _FakeLog(), spec["timeboxes"].get(engine.name)
        )  # type: ignore[arg-type]

        def ask(request: str) -> dict:
            if request == "":
                return {"provider": "p", "warmup_s": 1.0}
            if request == "quit":
                return {"peak_rss_mb": 100.0}
            if engine.name not in answers:
                raise RuntimeError(f"engine {engine.name} died")
            return answers[engine.name]

        worker.ask = ask  # type: ignore[method-assign]
        return worker

    monkeypatch.setattr(runner, "launch", launch)
    seen: list[list[str]] = []
    records = runner.run_engines(
        ["pipeline-cuda", "torch-fp16-cuda-b256", "newsclf-cuda"],
        {"timeboxes": {"pipeline-cuda": 2.0, "torch-fp16-cuda-b256": 1.0}},
        1,
        Path("unused"),
        parallel_start=True,
        on_result=lambda rs: seen.append(sorted(r["engine"] for r in rs if r["rows_per_s"])),
    )
    assert seen == [["pipeline-cuda"], ["newsclf-cuda", "pipeline-cuda"]]
    by = {r["engine"]: r for r in records}
    assert by["torch-fp16-cuda-b256"]["error"] and by["torch-fp16-cuda-b256"]["rows_per_s"] is None
    assert by["newsclf-cuda"]["ratio_to_baseline"] == 20.0
    assert by["pipeline-cuda"]["timebox_s"] == 2.0
    assert REGISTRY["pipeline-cuda"].baseline


def test_results_are_mirrored_into_out_each_time_they_are_written(tmp_path: Path) -> None:
    from benchmarks.results import write_results

    machine = {"gpu": "NVIDIA H200", "cpu": "x", "cores": 16}
    results, out = tmp_path / "results", tmp_path / "out"
    columns = [("engine", "engine"), ("rows_per_s", "rows/s")]
    for n, model in enumerate(("bert-base-shape", "embedded")):
        write_results(
            "gpu-classify",
            [{"engine": "newsclf-cuda", "model": model, "rows_per_s": n}],
            columns,
            {"call": n},
            results,
            merge_on=("engine", "model"),
            mirror=out,
            machine=machine,
        )
    (json_file,) = out.glob("*-gpu-classify-nvidia-h200.json")
    assert {r["model"] for r in json.loads(json_file.read_text())["records"]} == {
        "bert-base-shape",
        "embedded",
    }
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".md"]
