"""Text cleaning, table formats, and the errors bad input gets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from newsclf.errors import InputError
from newsclf.io import (
    AtomicTableWriter,
    TableReader,
    choose_text_columns,
    clean_text,
    join_columns,
    read_table,
)
from newsclf.training import load_local_data
from tests.conftest import sample_rows, write_csv


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("It#39;s over", "It's over"),  # AG News's ampersand-less numeric entity
        ("quot;Hello quot; he said", '"Hello " he said'),  # and named one
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&amp;lt;b&amp;gt;bold", "bold"),  # doubly escaped tag, dropped once unescaped
        ("pay \\$457.5 million", "pay $457.5 million"),  # literal backslash
        ("Alberto\\Fujimori's bank", "Alberto Fujimori's bank"),
        ("a\x00b\x07c", "abc"),  # control characters dropped
        ("zero\u200bwidth", "zerowidth"),  # format characters dropped
        ("  runs   of\t\nspaces  ", "runs of spaces"),
        ("signed a contract; then left", "signed a contract; then left"),  # not an entity
        ("price #36;5", "price $5"),
        # An entity after an escaped tag is bare only once the tag is gone.
        (
            "documents, &lt;b&gt;quot;finding files&lt;/b&gt;quot;, it said",
            'documents, "finding files ", it said',
        ),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    assert clean_text(clean) == clean


def test_cleaning_a_cleaned_text_changes_nothing() -> None:
    """Classify cleans what it is given; texts cleaned once already must come out as they are."""
    for name in ("train.csv", "test.csv"):
        for row in sample_rows(name):
            once = clean_text(row["title"] + " " + row["description"])
            assert clean_text(once) == once


def test_join_columns_skips_missing_values() -> None:
    assert join_columns(["Title", None, float("nan"), " body "]) == "Title body"


def test_one_text_column_policy_requested_then_trained_then_auto() -> None:
    assert choose_text_columns(["label", "text"], where="f") == ["text"]
    both = ["title", "description", "label", "text"]
    assert choose_text_columns(both[:3], where="f") == ["title", "description"]
    assert choose_text_columns(["a", "b"], requested=["b", "a"], where="f") == ["b", "a"]
    # The model's training columns win over auto-detection when the table has them...
    assert choose_text_columns(both, trained=["title", "description"], where="f") == both[:2]
    # ...an explicit request wins over both, and missing trained columns fall back to auto.
    assert choose_text_columns(both, requested=["title"], trained=["text"], where="f") == ["title"]
    assert choose_text_columns(["text"], trained=["headline"], where="f") == ["text"]
    with pytest.raises(InputError, match="columns found: headline, label"):
        choose_text_columns(["headline", "label"], where="f.csv")
    with pytest.raises(InputError, match=r"'body' \(as trained\)"):
        choose_text_columns(["headline"], trained=["body"], where="f.csv")
    with pytest.raises(InputError, match="no column 'body'; columns found: a, b"):
        choose_text_columns(["a", "b"], requested=["body"], where="f.csv")


ROWS = [
    {"title": "Stocks fall", "description": "Markets slid", "label": "Business"},
    {"title": "Team wins, again", "description": 'The "Rovers" won', "label": "Sports"},
]


def _write_all_formats(folder: Path) -> dict[str, Path]:
    paths = {
        "csv": write_csv(
            folder / "d.csv",
            ["title", "description", "label"],
            [[r["title"], r["description"], r["label"]] for r in ROWS],
        ),
        "tsv": folder / "d.tsv",
        "jsonl": folder / "d.jsonl",
        "parquet": folder / "d.parquet",
    }
    paths["tsv"].write_text(
        "title\tdescription\tlabel\n"
        + "".join(f"{r['title']}\t{r['description']}\t{r['label']}\n" for r in ROWS).replace(
            '"Rovers"', "Rovers"
        ),
        encoding="utf-8",
    )
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(ROWS), paths["parquet"])
    return paths


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_each_format_loads(tmp_path: Path, fmt: str) -> None:
    path = _write_all_formats(tmp_path)[fmt]
    columns, chunk = read_table(path)
    assert columns == ["title", "description", "label"]
    assert [r["label"] for r in chunk.rows] == ["Business", "Sports"]
    assert chunk.rows[0]["title"] == "Stocks fall"
    # CSV/TSV/JSONL report source lines (header is line 1 in CSV/TSV); Parquet row numbers.
    expected = {"csv": [2, 3], "tsv": [2, 3], "jsonl": [1, 2], "parquet": [1, 2]}[fmt]
    assert chunk.line_numbers == expected


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_writer_round_trips_and_is_atomic(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    rows = [{"title": 'a, "quoted"', "label": "x"}, {"title": "b", "label": "y"}]
    batch = pa.RecordBatch.from_pylist(rows)
    with AtomicTableWriter(str(target), fmt, batch.schema) as writer:
        writer.write(batch)
        assert not target.exists()  # nothing final until the writer closes
    _, chunk = read_table(target)
    assert [r["title"] for r in chunk.rows] == ['a, "quoted"', "b"]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_writer_removes_partial_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    batch = pa.RecordBatch.from_pylist([{"a": 1}])
    with pytest.raises(RuntimeError), AtomicTableWriter(str(target), "csv", batch.schema) as writer:
        writer.write(batch)
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty"):
        TableReader(empty)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            '{"text": "ok", "label": "a"}\n\n{"text": "broken"\n',
            r"bad\.jsonl, line 3: not valid JSON",
        ),
        (
            "bad.jsonl",
            '{"text": "ok"}\n["a", "list"]\n',
            "line 2: expected a JSON object, found list",
        ),
        (
            "bad.csv",
            'text,label\n"multi\nline",a\nb,c,extra\n',
            r"bad\.csv, line 4: expected 2 fields .* found 3",
        ),
    ],
)
def test_malformed_row_names_the_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_table(path)


def test_skip_mode_records_bad_lines_and_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('text,label\nok,a\nb,c,extra\n"x"y,b\nfine,c\n', encoding="utf-8")
    reader = TableReader(path, on_error="skip")
    texts = [t for batch in reader.batches(2) for t in batch.column("text").to_pylist()]
    assert texts == ["ok", "fine"]
    assert [s.line for s in reader.skipped] == [3, 4]


def test_undecodable_bytes_give_line_and_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\nok,a\ncaf\xe9 au lait,b\n")
    with pytest.raises(
        InputError, match=r"latin1\.csv, line 3, byte 4 of that line: cannot decode"
    ):
        read_table(path)


def test_unknown_extension_needs_format(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="cannot tell the format"):
        TableReader(path)


def _load(train: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    settings = {
        "text_columns": [],
        "label_column": "label",
        "clean": True,
        "separator": " ",
        "validation_fraction": 0.25,
        "seed": 1,
    } | kwargs
    return load_local_data(train, None, None, **settings)  # type: ignore[arg-type]


def test_missing_label_column_lists_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["text", "topic"], [["a", "x"], ["b", "y"]])
    with pytest.raises(InputError, match="no label column 'label'; columns found: text, topic"):
        _load(path)


def test_empty_label_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["text", "label"], [["a", "x"], ["b", ""], ["c", "y"]])
    with pytest.raises(InputError, match=r"t\.csv, line 3: empty label"):
        _load(path)


def test_unknown_label_in_test_file(tmp_path: Path) -> None:
    rows = [[f"text {i}", "x" if i % 2 else "y"] for i in range(8)]
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    test = write_csv(tmp_path / "test.csv", ["text", "label"], [["a", "x"], ["b", "z"]])
    with pytest.raises(InputError, match=r"test\.csv, line 3: unknown label 'z'.*x, y"):
        load_local_data(
            train,
            None,
            test,
            text_columns=[],
            label_column="label",
            clean=True,
            separator=" ",
            validation_fraction=0.25,
            seed=1,
        )


def test_integer_labels_and_stratified_validation(tmp_path: Path) -> None:
    rows = [[f"text {i}", i % 2] for i in range(40)]
    data = _load(write_csv(tmp_path / "t.csv", ["text", "label"], rows))
    assert data.label_names == ["0", "1"]
    assert len(data.validation) == 10
    assert sorted(data.validation.labels) == [0] * 5 + [1] * 5  # class proportions kept
    assert not set(data.validation.texts) & set(data.train.texts)


def test_text_columns_are_joined_and_cleaned(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        ["title", "description", "label"],
        [["It#39;s", "a\\test", "x"], ["b", "c", "y"], ["d", "e", "x"], ["f", "g", "y"]],
    )
    data = _load(path, validation_fraction=0.5)
    assert data.text_columns == ["title", "description"]
    assert "It's a test" in data.train.texts + data.validation.texts
