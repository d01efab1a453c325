"""kill -9 at each write of classify, export and train, then a rerun: no output that looks
complete is left behind, the leftovers of the killed process are removed, an earlier export
stays as it was, and training resumes from its newest complete checkpoint, from any folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsclf.cli import app
from tests.conftest import SAMPLE_DIR, sample_rows, write_csv

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "newsclf", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(process: subprocess.Popen[bytes], ready: Callable[[], bool], limit: float) -> None:
    """kill -9 the process as soon as `ready()` holds (fail if it ends or times out first)."""
    deadline = time.monotonic() + limit
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the process ended before the kill: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the moment to kill never came")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def test_classify_killed_midway_leaves_no_output_and_the_rerun_cleans_up(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rows = sample_rows("test.csv")
    data = write_csv(
        tmp_path / "big.csv",
        ["label", "title", "description"],
        [[r["label"], r["title"], r["description"]] for _ in range(300) for r in rows],
    )
    out = tmp_path / "out.csv"
    process = _start(["classify", str(data), "--model", str(tiny_export.output_dir),
                      "--output", str(out), "--chunk-rows", "256"])  # fmt: skip
    _kill_when(process, lambda: any(p.stat().st_size for p in _partials(tmp_path)), 120)
    assert not out.exists() and _partials(tmp_path)  # nothing that looks complete

    args = ["classify", str(data), "--model", str(tiny_export.output_dir), "--output", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not _partials(tmp_path)  # the killed run's leftovers are gone
    with open(out, newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 300 * len(rows)


def test_export_killed_midway_keeps_the_earlier_export(
    tiny_run, tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "onnx"
    shutil.copytree(tiny_export.output_dir, target)
    manifest = (target / "newsclf_export.json").read_text()
    process = _start(["export", "--onnx", "--checkpoint", str(tiny_run.run_dir),
                      "--output", str(target), "--variants", "optimized,int8"])  # fmt: skip
    _kill_when(
        process, lambda: any(p.is_dir() and any(p.iterdir()) for p in _partials(tmp_path)), 180
    )
    assert (target / "newsclf_export.json").read_text() == manifest  # untouched
    assert _partials(tmp_path)

    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--output", str(target),
         "--variants", "fp32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not _partials(tmp_path) and not list(tmp_path.glob(".onnx.old"))
    assert json.loads((target / "newsclf_export.json").read_text())["variants"].keys() == {"fp32"}


@pytest.mark.slow
def test_train_killed_after_a_checkpoint_resumes_from_the_newest_complete_one_from_anywhere(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started with paths relative to one folder, killed, resumed and souped from another."""
    start = tmp_path / "start"
    (start / "data").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "train.csv", start / "data" / "train.csv")
    common = ["--model", str(tiny_bert_dir), "--train-file", "data/train.csv",
              "--epochs", "2", "--eval-steps", "4", "--patience", "10", "--batch-size", "16",
              "--grad-accum", "1", "--max-train-samples", "128", "--max-length", "32",
              "--precision", "fp32", "--learning-rate", "3e-3"]  # fmt: skip
    process = _start(["train", *common, "--output-dir", "runs/a"], cwd=start)
    checkpoints = start / "runs" / "a" / "checkpoints"
    _kill_when(process, lambda: _parses(checkpoints / "checkpoint-4" / "trainer_state.json"), 300)
    # A newer checkpoint that the kill cut short: only its first file written.
    shutil.rmtree(checkpoints / "checkpoint-8", ignore_errors=True)
    (checkpoints / "checkpoint-8").mkdir()
    (checkpoints / "checkpoint-8" / "config.json").write_text("{}")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = Path("..") / "start" / "runs" / "a"
    resumed = CliRunner().invoke(app, ["train", "--resume", "--output-dir", str(run)])
    assert resumed.exit_code == 0, resumed.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["resumed_from"].endswith("checkpoint-4")
    assert not (run / "checkpoints").exists()

    # A second run from the first folder; the soup of both, made from here.
    monkeypatch.chdir(start)
    second = CliRunner().invoke(app, ["train", *common, "--train-seed", "7", "--output-dir",
                                      "runs/b"])  # fmt: skip
    assert second.exit_code == 0, second.output
    monkeypatch.chdir(elsewhere)
    soup = CliRunner().invoke(
        app, ["soup", str(run), str(Path("..") / "start" / "runs" / "b"), "--output-dir", "soup"]
    )
    assert soup.exit_code == 0, soup.output
    assert (elsewhere / "soup" / "best" / "model.safetensors").is_file()
