"""Hostile text (markup, control characters, huge rows), names that look like markup, and
targets that cannot be written: a clear error before any work, or a correct run; never a
traceback after the work, never a lost or half-written output."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsclf.cli import app
from tests.conftest import LABELS, write_csv


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_texts_that_look_like_markup_are_printed_not_interpreted(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    hostile = ["[/b] closing tag first", "[bold red]alarm[/] $ [link=x]y[/link]", "a [/] b"]
    rows = [[LABELS[i % 4], text, text] for i in range(12) for text in hostile]
    data = write_csv(tmp_path / "in.csv", ["label", "title", "description"], rows)
    report = tmp_path / "report.json"
    code, output = _run(
        "classify", str(data), "--model", str(tiny_export.output_dir), "--variant", "fp32",
        "--report", str(report),
    )  # fmt: skip
    assert code == 0, output
    assert report.is_file()  # the report is not lost after the work
    assert "Most frequent confusions" in output
    assert any(text[:12] in output for text in hostile)  # shown as written


def test_a_missing_file_named_like_markup_is_named_as_it_is(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, output = _run("classify", str(tmp_path / "news[final].csv"), "--model",
                        str(tiny_export.output_dir))  # fmt: skip
    assert code == 2 and "news[final].csv: no such file" in " ".join(output.split())


def test_control_characters_and_a_huge_row_are_classified(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    huge = "markets " * 200_000  # 1.6 MB in one cell: truncated at the model's max length
    texts = ["tab\there\x00nul\x1besc", "\u202eright-to-left override", huge, "", "ok"]
    data = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in texts])
    out = tmp_path / "out.csv"
    code, output = _run("classify", str(data), "--model", str(tiny_export.output_dir),
                        "--output", str(out))  # fmt: skip
    assert code == 0, output
    with open(out, newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [row["text"] for row in written] == texts  # the input kept as it was
    assert all(row["predicted_label"] in LABELS for row in written)


def test_an_output_that_is_a_folder_fails_before_any_work(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = write_csv(tmp_path / "in.csv", ["text"], [["stocks rally"]])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    code, output = _run("classify", str(data), "--model", str(tiny_export.output_dir),
                        "--output", str(tmp_path / "taken"))  # fmt: skip
    assert code == 2 and "is a folder" in output and "Traceback" not in output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("target", ["report", "plots"])
def test_a_report_that_cannot_be_written_fails_before_the_work(
    target: str, tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data = write_csv(tmp_path / "in.csv", ["text", "label"], [["stocks rally", "Business"]])
    blocked = tmp_path / "blocked"
    if target == "report":
        blocked.mkdir()  # a folder where the report file should go
    else:
        blocked.write_text("a file where the plots folder should go")
    out = tmp_path / "out.csv"
    code, output = _run("classify", str(data), "--model", str(tiny_export.output_dir),
                        "--output", str(out), f"--{target}", str(blocked))  # fmt: skip
    assert code == 2 and str(blocked) in " ".join(output.split())
    assert not out.exists()  # stopped before classifying: nothing written, nothing lost


def test_plots_without_matplotlib_fail_before_the_work(
    tiny_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    data = write_csv(tmp_path / "in.csv", ["text", "label"], [["stocks rally", "Business"]])
    out = tmp_path / "out.csv"
    code, output = _run("classify", str(data), "--model", str(tiny_export.output_dir),
                        "--output", str(out), "--plots", str(tmp_path / "plots"))  # fmt: skip
    assert code == 2 and "pip install 'newsclf[plots]'" in output and not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_fails_before_any_work(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = write_csv(tmp_path / "in.csv", ["text"], [["stocks rally"]])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, output = _run("classify", str(data), "--model", str(tiny_export.output_dir),
                            "--output", str(locked / "out.csv"))  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert code == 2 and "permission denied" in output.lower()


def test_a_reader_that_leaves_early_stops_the_run_without_a_traceback(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """`classify --output - | head -2`: the pipe closes; the run stops with a message."""
    import subprocess
    import sys

    text = "stocks rally as the central bank holds rates " * 20
    data = write_csv(tmp_path / "big.csv", ["text"], [[text]] * 3000)  # beyond a pipe's buffer
    command = (
        f"{sys.executable} -m newsclf classify {data} --model {tiny_export.output_dir} "
        "--output - | head -2"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120
    )
    assert len(done.stdout.splitlines()) == 2
    assert "the output pipe was closed" in done.stderr and "Traceback" not in done.stderr
