"""The output's columns come from the whole input: keys that first appear late are kept, a
prediction column anywhere in the input is refused, Parquet keeps the input's types."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from newsclf.cli import app
from newsclf.io import TableReader


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_key_that_first_appears_late_is_a_column_of_the_output(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    records = [{"text": f"row {i} about markets"} for i in range(5)]
    records[3]["source"] = "wire"
    data = _jsonl(tmp_path / "in.jsonl", records)
    assert TableReader(data).columns == ["text", "source"]
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["classify", str(data), "--model", str(tiny_export.output_dir), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "source", "predicted_label", "confidence"]
    assert [r["source"] for r in rows] == ["", "", "", "wire", ""]


def test_a_prediction_column_anywhere_in_the_input_is_refused(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = _jsonl(tmp_path / "in.jsonl", [{"text": "a"}, {"text": "b", "predicted_label": "x"}])
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["classify", str(data), "--model", str(tiny_export.output_dir), "--output", str(out)]
    )
    assert result.exit_code == 2 and "already has column(s) predicted_label" in result.output
    assert not out.exists()


def test_a_malformed_line_fails_before_any_work(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "a"}\n' * 3 + "{not json\n" + '{"text": "b"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["classify", str(data), "--model", str(tiny_export.output_dir), "--output", str(out)]
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "in.jsonl, line 4: not valid JSON" in text
    assert not out.exists()


def test_stdin_names_the_line_where_the_keys_change(tiny_export) -> None:  # type: ignore[no-untyped-def]
    lines = '{"text": "a"}\n{"text": "b"}\n{"text": "c", "extra": 1}\n'
    done = subprocess.run(
        [sys.executable, "-m", "newsclf", "classify", "-", "--model", str(tiny_export.output_dir),
         "--output", "-"],
        input=lines, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "<stdin>, line 3: key(s) 'extra' first appear here" in " ".join(done.stderr.split())


def test_parquet_keeps_the_input_types_when_the_first_chunk_is_empty(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    table = pa.table(
        {
            "text": [f"row {i} about the cup final" for i in range(6)],
            "score": pa.array([None, None, None, 1.5, 2.5, None], pa.float64()),
            "tag": pa.array([None, None, None, "x", None, "y"], pa.string()),
        }
    )
    data = tmp_path / "in.parquet"
    pq.write_table(table, data)
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(
        app,
        ["classify", str(data), "--model", str(tiny_export.output_dir), "--output", str(out),
         "--chunk-rows", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = pq.read_table(out)
    assert written.schema.field("score").type == pa.float64()
    assert written.schema.field("tag").type == pa.string()
    assert written.column("score").to_pylist() == table.column("score").to_pylist()
    assert written.schema.field("confidence").type == pa.float64()
