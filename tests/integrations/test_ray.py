"""newsclf classify --engine ray: the local engine's output, row for row, on one shared local
Ray cluster (2 CPUs) for the whole module."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from newsclf.cli import app
from newsclf.errors import InputError
from newsclf.inference import (
    Classifier,
    ClassifierConfig,
    ClassifyConfig,
    ClassifyResult,
    classify_file,
)
from newsclf.integrations.ray import RayConfig
from tests.conftest import SHARED_AG_NEWS, read_csv, sample_rows, write_csv

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

HEADER = ["id", "title", "description", "label"]
# Tiny Ray batches: the rows of each file spread over several blocks and both actors.
RAY = RayConfig(workers=2, threads_per_worker=1, batch_rows=7)
CLASSIFIER = ClassifierConfig(device="cpu", variant="fp32", batch_size=3)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def export_dir(tiny_export) -> Path:  # type: ignore[no-untyped-def]
    return Path(tiny_export.output_dir)


def _rows() -> list[list[str]]:
    return [
        [f"row-{i}", r["title"], r["description"], r["label"]]
        for i, r in enumerate(sample_rows("test.csv"))
    ]


def _split_files(folder: Path, rows: list[list[str]], sizes: list[int]) -> Path:
    folder.mkdir()
    start = 0
    for part, size in enumerate(sizes):
        write_csv(folder / f"part-{part}.csv", HEADER, rows[start : start + size])
        start += size
    assert start == len(rows)
    return folder


def _local(export_dir: Path, source: Path, output: Path, **config: Any) -> ClassifyResult:
    classifier = Classifier(
        export_dir, ClassifierConfig(device="cpu", variant="fp32", batch_size=3)
    )
    return classify_file(source, classifier, ClassifyConfig(**config), output=output)


def _assert_same_rows(local: list[dict[str, str]], other: list[dict[str, str]]) -> None:
    assert len(other) == len(local)
    for a, b in zip(local, other, strict=True):
        assert {k: v for k, v in a.items() if k != "confidence"} == {
            k: v for k, v in b.items() if k != "confidence"
        }
        assert float(b["confidence"]) == pytest.approx(float(a["confidence"]), abs=1e-5)


def test_ray_equals_local_row_for_row_over_files_and_blocks(export_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from newsclf.integrations.ray import classify_with_ray

    rows = _rows()
    whole = write_csv(tmp_path / "all.csv", HEADER, rows)
    folder = _split_files(tmp_path / "in", rows, [37, 1, 62])
    local = _local(export_dir, whole, tmp_path / "local.csv")
    result = classify_with_ray(
        folder, export_dir, CLASSIFIER, ClassifyConfig(), RAY, output=tmp_path / "ray.csv"
    )

    local_rows, ray_rows = read_csv(tmp_path / "local.csv"), read_csv(tmp_path / "ray.csv")
    assert [r["id"] for r in ray_rows] == [f"row-{i}" for i in range(len(rows))]  # input order
    _assert_same_rows(local_rows, ray_rows)
    # fp32 gives a row the same numbers in any batch: the same bytes as the local engine's.
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert result.rows == local.rows == len(rows)
    assert result.tokens == local.tokens
    # The same report: metrics from the workers' counts equal the local engine's.
    assert result.metrics is not None and local.metrics is not None
    assert result.metrics.confusion_matrix == local.metrics.confusion_matrix
    assert result.metrics.accuracy == pytest.approx(local.metrics.accuracy)
    assert result.metrics.f1_macro == pytest.approx(local.metrics.f1_macro)
    assert result.metrics.per_class == pytest.approx(local.metrics.per_class)
    assert result.confusions == local.confusions
    assert result.labelled_rows == local.labelled_rows
    # The actors' rows add up. (Which of the two actors gets work depends on which is ready
    # first: a tiny input may all go to one.)
    assert 1 <= len(result.workers) <= 2
    assert sum(w.rows for w in result.workers) == len(rows)
    assert all(w.rows > 0 and w.busy_s > 0 for w in result.workers)
    assert result.classifier.threads == 1 and result.classifier.variant == "fp32"
    assert not list(tmp_path.glob(".*.partial"))


def test_ray_writes_the_local_engines_bytes_for_the_shared_test_rows(
    export_dir, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from newsclf.integrations.ray import classify_with_ray

    source = SHARED_AG_NEWS / "test.jsonl"
    if not source.exists():
        pytest.skip("no shared AG News data")
    local = _local(export_dir, source, tmp_path / "local.jsonl", probabilities=True)
    ray_result = classify_with_ray(
        source, export_dir, CLASSIFIER, ClassifyConfig(probabilities=True),
        RayConfig(workers=2, threads_per_worker=1), output=tmp_path / "ray.jsonl",
    )  # fmt: skip
    assert ray_result.rows == local.rows == 3800
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert ray_result.metrics is not None and local.metrics is not None
    assert ray_result.metrics.confusion_matrix == local.metrics.confusion_matrix
    assert ray_result.confusions == local.confusions


def test_malformed_line_named_by_file_and_line_and_skipped(export_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from newsclf.integrations.ray import classify_with_ray

    rows = _rows()[:30]
    folder = _split_files(tmp_path / "in", rows, [10, 20])
    second = folder / "part-1.csv"
    lines = second.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = 'row-x,"unterminated title,desc,Sports\n'  # line 6 of the second file
    lines[8] = "row-y,only two\n"  # line 9
    second.write_text("".join(lines), encoding="utf-8")

    output = tmp_path / "out.csv"
    with pytest.raises(InputError, match=r"part-1\.csv, line 6"):
        classify_with_ray(folder, export_dir, CLASSIFIER, ClassifyConfig(), RAY, output=output)
    assert not output.exists() and not list(tmp_path.glob(".*.partial"))

    result = classify_with_ray(
        folder, export_dir, CLASSIFIER, ClassifyConfig(on_error="skip"), RAY, output=output
    )
    # As the local engine skips them, file by file; the file is named in each reason.
    first_local = _local(export_dir, folder / "part-0.csv", tmp_path / "l0.csv")
    second_local = _local(export_dir, second, tmp_path / "l1.csv", on_error="skip")
    assert second_local.skipped_lines and second_local.skipped_lines[0].line == 6
    assert [s.line for s in result.skipped_lines] == [s.line for s in second_local.skipped_lines]
    assert all(s.reason.startswith(f"{second}: ") for s in result.skipped_lines)
    written = read_csv(output)
    expected = read_csv(tmp_path / "l0.csv") + read_csv(tmp_path / "l1.csv")
    _assert_same_rows(expected, written)
    assert result.rows == first_local.rows + second_local.rows == len(written) < 30
    assert "row-y" not in {r["id"] for r in written}


def test_cli_engine_ray_report_and_part_files(export_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = _rows()[:40]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    _local(export_dir, source, tmp_path / "local.csv")
    common = [
        "classify",
        str(source),
        "--model",
        str(export_dir),
        "--device",
        "cpu",
        "--variant",
        "fp32",
        "--batch-size",
        "3",
        "--engine",
        "ray",
        "--workers",
        "2",
        "--threads-per-worker",
        "1",
    ]
    result = CliRunner().invoke(
        app,
        [*common, "--output", str(tmp_path / "ray.csv"), "--report", str(tmp_path / "r.json")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", result.output)
    assert "Ray workers (" in text and "accuracy" in text and "WARNING" not in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["engine"] == "ray" and report["rows"] == 40
    assert 1 <= len(report["ray"]["workers"]) <= 2
    assert sum(w["rows"] for w in report["ray"]["workers"]) == 40
    local_rows = read_csv(tmp_path / "local.csv")
    _assert_same_rows(local_rows, read_csv(tmp_path / "ray.csv"))

    # The fast path: Ray's readers and part files; every row once, whatever the order.
    parts = tmp_path / "parts"
    result = CliRunner().invoke(app, [*common, "--output", f"{parts}/"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    written = [r for p in sorted(parts.glob("*.csv")) for r in read_csv(p)]
    by_id = {r["id"]: r for r in written}
    assert len(by_id) == len(written) == 40
    _assert_same_rows(local_rows, [by_id[r["id"]] for r in local_rows])
    assert not list(tmp_path.glob(".*.partial"))


def test_without_ray_says_how_to_install(export_dir, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsclf.integrations.ray import classify_with_ray

    source = write_csv(tmp_path / "in.csv", HEADER, _rows()[:3])
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'newsclf\[ray\]'"):
        classify_with_ray(source, export_dir, CLASSIFIER, output=tmp_path / "out.csv")


def test_ray_writes_the_local_review_column_file_and_figures(export_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--min-confidence on Ray: the same needs_review column (written by the driver on the
    ordered path, by the actors into part files), the same review file, and coverage, histogram
    and examples merged from the workers equal to the local engine's."""
    from newsclf.integrations.ray import classify_with_ray

    source = write_csv(tmp_path / "in.csv", HEADER, _rows())
    plain = _local(export_dir, source, tmp_path / "plain.csv")
    p = round(
        float(np.median([float(r["confidence"]) for r in read_csv(tmp_path / "plain.csv")])), 3
    )
    config = ClassifyConfig(min_confidence=p)
    classifier = Classifier(export_dir, CLASSIFIER)
    local = classify_file(
        source, classifier, config, output=tmp_path / "local.csv", review_output=tmp_path / "lr.csv"
    )
    assert plain.review_rows == 0 and 0 < local.review_rows < local.rows
    ordered = classify_with_ray(
        source, export_dir, CLASSIFIER, config, RAY,
        output=tmp_path / "ray.csv", review_output=tmp_path / "rr.csv",
    )  # fmt: skip
    local_rows = read_csv(tmp_path / "local.csv")
    assert "needs_review" in local_rows[0]
    _assert_same_rows(local_rows, read_csv(tmp_path / "ray.csv"))
    _assert_same_rows(read_csv(tmp_path / "lr.csv"), read_csv(tmp_path / "rr.csv"))
    parts = tmp_path / "parts"
    to_parts = classify_with_ray(source, export_dir, CLASSIFIER, config, RAY, output=f"{parts}/")
    by_id = {r["id"]: r for p in sorted(parts.glob("*.csv")) for r in read_csv(p)}
    _assert_same_rows(local_rows, [by_id[r["id"]] for r in local_rows])
    for result in (ordered, to_parts):
        assert result.review_rows == local.review_rows
        assert result.coverage == local.coverage
        assert result.confidence_histogram == local.confidence_histogram
        assert result.predicted_counts == local.predicted_counts
        assert [b.rows for b in result.reliability] == [b.rows for b in local.reliability]
    assert ordered.confusions == local.confusions  # examples by row number: the driver's rows
    with pytest.raises(InputError, match="--review-output needs one output file"):
        classify_with_ray(
            source, export_dir, CLASSIFIER, config, RAY,
            output=f"{tmp_path / 'p2'}/", review_output=tmp_path / "r2.csv",
        )  # fmt: skip
