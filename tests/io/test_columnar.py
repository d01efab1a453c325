"""The columnar path equals the exact, row-by-row one: pyarrow's readers give the rows Python's
csv and json modules give (and name bad lines through them), `model_texts` gives `clean_text`'s
texts, the JSON Lines writer writes what `json.dumps` writes, labels match as one by one."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsclf.errors import InputError
from newsclf.io import (
    AtomicTableWriter,
    LabelMatcher,
    TableReader,
    model_texts,
    prepare_texts,
)
from newsclf.io import tables as tables_module
from tests.conftest import SHARED_AG_NEWS as SHARED
from tests.conftest import sample_rows

FIXTURE = HealthCheck.function_scoped_fixture

# The hostile texts of the fault suite, and AG News's own quirks.
HOSTILE = [
    "tab\there\x00nul\x1besc",
    "\u202eright-to-left override",
    "[bold red]alarm[/] $ [link=x]y[/link]",
    "a [/] b",
    "markets " * 2000,
    "",
    "   ",
    "ok",
    "It#39;s over",
    "quot;Hello quot; he said",
    "&amp;lt;b&amp;gt;bold",
    "documents, &lt;b&gt;quot;finding files&lt;/b&gt;quot;, it said",
    "pay \\$457.5 million",
    "zero\u200bwidth",
    "  runs   of\t\nspaces  ",
    "signed a contract; then left",
    'He said "no", then "yes"',
    "line\nbreak and\r\nwindows",
    "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001f600",
    "\u00a0non-breaking\u00a0",
    "\x1cfile separator\x1f",
]


def _batches(path: Path, rows: int = 5, **options: str) -> list[pa.RecordBatch]:
    return list(TableReader(path, **options).batches(rows))


def _rows_of(batches: list[pa.RecordBatch]) -> list[dict]:
    return [row for batch in batches for row in batch.to_pylist()]


def _write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _exact(path: Path, **options: str) -> list[dict]:
    return [row for _, row in TableReader(path, **options).records()]


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_csv_rows_equal_the_exact_readers(tmp_path: Path, delimiter: str) -> None:
    rows = [[str(i), text, text[::-1]] for i, text in enumerate(HOSTILE)]
    path = _write_csv(tmp_path / f"t.{'csv' if delimiter == ',' else 'tsv'}", ["id", "a", "b"],
                      rows, delimiter)  # fmt: skip
    batches = _batches(path, rows=4)
    assert [b.num_rows for b in batches] == [4, 4, 4, 4, 4, 1]  # chunks of exactly `rows`
    assert (
        _rows_of(batches)
        == _exact(path)
        == [dict(zip(["id", "a", "b"], r, strict=True)) for r in rows]
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
                 min_size=2, max_size=2),
        min_size=1, max_size=30,
    )
)  # fmt: skip
def test_any_csv_python_writes_reads_back_the_same(tmp_path: Path, rows: list[list[str]]) -> None:
    path = _write_csv(tmp_path / "h.csv", ["a", "b"], rows)
    assert _rows_of(_batches(path, rows=7)) == _exact(path)


def test_shared_rows_read_the_same_both_ways() -> None:
    if not SHARED.is_dir():
        pytest.skip("no shared AG News data")
    for name in ("train.csv", "test.csv", "test.jsonl"):
        path = SHARED / name
        if path.exists():
            assert _rows_of(_batches(path, rows=1000)) == _exact(path), name


def test_a_quote_strict_csv_rejects_is_named_not_read_as_pyarrow_would(tmp_path: Path) -> None:
    """pyarrow reads `"x"y` as `xy`; strict CSV rejects it: the line is named, and with skip
    it is skipped, after the rows before it were read by pyarrow."""
    good = [[f"row {i}", "a"] for i in range(20)]
    path = tmp_path / "q.csv"
    _write_csv(path, ["text", "label"], good)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('"x"y,b\nfine,c\n')
    with pytest.raises(InputError, match=r"q\.csv, line 22: malformed CSV row"):
        _batches(path)
    reader = TableReader(path, on_error="skip")
    texts = [t for b in reader.batches(8) for t in b.column("text").to_pylist()]
    assert texts == [r[0] for r in good] + ["fine"]
    assert [s.line for s in reader.skipped] == [22]


def test_a_row_longer_than_a_block_goes_on_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "BLOCK_BYTES", 256)
    rows = [[f"short {i}", "x"] for i in range(30)] + [["long " * 200, "y"]]
    rows += [[f"after {i}", "z"] for i in range(9)]
    path = _write_csv(tmp_path / "long.csv", ["text", "label"], rows)
    batches = _batches(path, rows=8)
    assert [b.num_rows for b in batches] == [8, 8, 8, 8, 8]
    assert _rows_of(batches) == [{"text": a, "label": b} for a, b in rows]


def test_bad_utf8_is_named_by_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\n" + b"ok,a\n" * 50 + b"caf\xe9,b\n")
    with pytest.raises(InputError, match=r"bad\.csv, line 52, byte 4 of that line"):
        _batches(path)


def test_jsonl_keeps_value_types_and_writes_them_back(tmp_path: Path) -> None:
    records = [
        {"text": "a", "n": 1, "x": 1.5, "flag": True, "mixed": 1, "meta": {"k": [1, 2]}},
        {"text": "b", "n": 2, "x": 2, "flag": False, "mixed": "two", "late": None},
        {"text": "c\u00e9", "n": None, "x": float("nan"), "mixed": [3], "late": "here"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    reader = TableReader(path)
    schema = reader.schema()
    assert reader.columns == ["text", "n", "x", "flag", "mixed", "meta", "late"]
    assert [str(schema.field(n).type) for n in ("n", "x", "flag")] == ["int64", "double", "bool"]
    batch = pa.Table.from_batches(_batches(path)).combine_chunks().to_batches()[0]
    out = tmp_path / "out.jsonl"
    with AtomicTableWriter(str(out), "jsonl", schema) as writer:
        writer.write(batch)
    back = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for original, written in zip(records, back, strict=True):
        for key in reader.columns:  # every value as it was; a missing key is null
            expected, got = original.get(key), written[key]
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(got)
            else:  # a key of integers and decimals is read as decimals: 2 comes back as 2.0
                assert got == expected and (type(got) is type(expected) or key == "x"), key
    # CSV writes strings as themselves, other JSON values as JSON.
    as_csv = tmp_path / "out.csv"
    with AtomicTableWriter(str(as_csv), "csv", schema) as writer:
        writer.write(batch)
    rows = list(csv.DictReader(io.StringIO(as_csv.read_text(encoding="utf-8"))))
    assert [r["mixed"] for r in rows] == ["1", "two", "[3]"]
    assert rows[0]["meta"] == '{"k": [1, 2]}'


def test_jsonl_blocks_that_pyarrow_rejects_are_read_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "BLOCK_BYTES", 64)
    lines = [json.dumps({"text": f"row {i}", "n": i}) for i in range(40)]
    lines[17] = '{"text": "dup", "n": 1, "n": 2}'  # pyarrow refuses duplicate keys
    lines[25] = "{not json"
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"in\.jsonl, line 26: not valid JSON"):
        TableReader(path)  # the scan finds it before any work
    reader = TableReader(path, on_error="skip")
    rows = _rows_of(list(reader.batches(9)))
    assert [r["text"] for r in rows] == [json.loads(x)["text"] for i, x in enumerate(lines)
                                         if i != 25]  # fmt: skip
    assert rows[17]["n"] == 2 and [s.line for s in reader.skipped] == [26]


def test_parquet_batches_keep_the_files_types(tmp_path: Path) -> None:
    table = pa.table({"text": ["a", "b", "c"], "score": pa.array([1.5, None, 2.0])})
    pq.write_table(table, tmp_path / "in.parquet")
    batches = _batches(tmp_path / "in.parquet", rows=2)
    assert [b.num_rows for b in batches] == [2, 1]
    assert pa.Table.from_batches(batches).equals(table)


# -- text -------------------------------------------------------------------------------------


def _texts_both_ways(columns: dict[str, list], clean: bool, separator: str = " ") -> tuple:
    batch = pa.RecordBatch.from_pydict(columns)
    names = list(columns)
    got = model_texts(batch, names, clean=clean, separator=separator).to_pylist()
    rows = zip(*(columns[n] for n in names), strict=True)
    return got, prepare_texts(rows, clean=clean, separator=separator)


@pytest.mark.parametrize("clean", [True, False])
def test_model_texts_equal_clean_text_on_hostile_and_sample_rows(clean: bool) -> None:
    rows = sample_rows("train.csv") + sample_rows("test.csv")
    titles = [r["title"] for r in rows] + HOSTILE + [None, "", " x"]
    bodies = [r["description"] for r in rows] + HOSTILE[::-1] + ["y", None, "z "]
    got, expected = _texts_both_ways({"title": titles, "description": bodies}, clean)
    assert got == expected
    got, expected = _texts_both_ways({"text": titles}, clean, separator=" | ")
    assert got == expected


def test_model_texts_equal_clean_text_on_every_shared_row() -> None:
    if not SHARED.is_dir():
        pytest.skip("no shared AG News data")
    test = [row for _, row in TableReader(SHARED / "test.csv").records()]
    train = [row for _, row in TableReader(SHARED / "train.csv").records()]
    columns = {"title": [r["title"] for r in test], "description": [r["description"] for r in test]}
    got, expected = _texts_both_ways(columns, clean=True)
    assert got == expected
    got, expected = _texts_both_ways({"text": [r["text"] for r in train]}, clean=True)
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=40)), st.text(max_size=40)),
             min_size=1, max_size=20),
    st.booleans(),
)  # fmt: skip
def test_model_texts_equal_clean_text_on_any_text(pairs: list, clean: bool) -> None:
    columns = {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}
    got, expected = _texts_both_ways(columns, clean)
    assert got == expected


# AG News's quirks and what could fool a column-wise cleaner: pieces of entities, tags,
# doubly escaped text, runs of spaces, backslashes, a character outside ASCII.
QUIRKS = ["#39;", "#36;", "#151;", "quot;", "amp;", "&", "&lt;", "&gt;", "&amp;", "&#39;",
          "&quot;", "<b>", "</a>", "<A HREF=x>", ";", "#", "x", "Stocks", " ", "  ", "\\",
          "lt;", "gt;", "nbsp;", "&#38;", "&#0039;", "\u00e9", "\t"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.sampled_from(QUIRKS), max_size=14).map("".join), max_size=12))
def test_column_wise_cleaning_equals_clean_text_on_entity_soup(texts: list[str]) -> None:
    got, expected = _texts_both_ways({"text": texts}, clean=True)
    assert got == expected


def test_model_texts_of_non_string_columns_as_python_joins_them() -> None:
    got, expected = _texts_both_ways({"n": [1, None, 3], "t": ["a", "b", None]}, clean=True)
    assert got == expected == ["1 a", "b", "3"]


# -- writing ------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from([1.0, 1e-7, 0.1 + 0.2, 1e16, float("inf"), -0.0]),
    st.text(max_size=20),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.text(max_size=20), st.integers(0, 9), st.floats(allow_nan=False),
                          st.booleans()), min_size=1, max_size=20))  # fmt: skip
def test_json_lines_are_what_json_dumps_writes(tmp_path: Path, rows: list[tuple]) -> None:
    records = [{"s": s, "i": i, "f": f, "b": b} for s, i, f, b in rows]
    records[0]["s"] = 'quote " backslash \\ control \x01 newline \n tab \t \u2028'
    batch = pa.RecordBatch.from_pylist(records)
    out = tmp_path / "o.jsonl"
    with AtomicTableWriter(str(out), "jsonl", batch.schema) as writer:
        writer.write(batch)
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    assert out.read_text(encoding="utf-8") == expected


def test_review_and_output_writers_are_atomic_for_every_format(tmp_path: Path) -> None:
    batch = pa.RecordBatch.from_pylist([{"a": "x", "n": 1}])
    for fmt in ("csv", "tsv", "jsonl", "parquet"):
        target = tmp_path / f"o.{fmt}"
        with pytest.raises(RuntimeError), AtomicTableWriter(str(target), fmt, batch.schema) as w:
            w.write(batch)
            raise RuntimeError("stop")
        assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# -- labels and batching ------------------------------------------------------------------------


def _reference_truth(matcher: LabelMatcher, values: list) -> tuple:
    """The value-by-value matching this replaced (newsclf 0.3)."""
    truth = np.full(len(values), -1, dtype=np.int64)
    unlabelled, unknown = 0, Counter()
    for i, value in enumerate(values):
        matched = matcher(value)
        if matched is None:
            unlabelled += 1
        elif isinstance(matched, str):
            unknown[matched] += 1
        else:
            truth[i] = matched
    return truth, unlabelled, unknown


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["World", " Sports ", "Business", "x", ""]),
                          st.sampled_from(["0", "3", "7", "-1"])), max_size=40))  # fmt: skip
def test_labels_matched_column_wise_as_one_by_one(values: list) -> None:
    matcher = LabelMatcher(["Business", "Sci/Tech", "Sports", "World"])
    truth, unlabelled, unknown = matcher.truth_of(pa.array(values, pa.string()))
    expected = _reference_truth(matcher, values)
    assert truth.tolist() == expected[0].tolist()
    assert (unlabelled, unknown) == expected[1:]


def _reference_batches(lengths: np.ndarray, max_rows: int, max_tokens: int | None, fixed: bool):
    """The row-by-row batching this replaced (newsclf 0.3)."""
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    for i, row in enumerate(order):
        rows = i - start + 1
        full = rows > max_rows or (
            max_tokens is not None and rows > 1 and rows * int(lengths[row]) > max_tokens
        )
        if full or (fixed and i > start and lengths[row] != lengths[order[start]]):
            batches.append(order[start:i])
            start = i
    if start < len(order):
        batches.append(order[start:])
    return batches


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(2, 128), max_size=300),
    st.integers(1, 64),
    st.one_of(st.none(), st.integers(1, 4000)),
    st.booleans(),
)
def test_batches_are_those_of_the_row_by_row_rule(
    lengths: list[int], max_rows: int, max_tokens: int | None, fixed: bool
) -> None:
    from newsclf.inference import token_budget_batches

    array = np.asarray(lengths, dtype=np.int32)
    got = token_budget_batches(array, max_rows, max_tokens, fixed=fixed)
    expected = _reference_batches(array, max_rows, max_tokens, fixed)
    assert [b.tolist() for b in got] == [b.tolist() for b in expected]


def test_padded_feeds_equal_the_row_by_row_padding(tiny_export) -> None:  # type: ignore[no-untyped-def]
    from newsclf.inference import Classifier, ClassifierConfig

    classifier = Classifier(tiny_export.output_dir, ClassifierConfig(device="cpu", variant="fp32"))
    texts = [" ".join(random.Random(i).choices(["stocks", "rally", "cup"], k=i)) for i in range(30)]
    encoded = classifier.encode(texts)
    rows = np.array([3, 0, 29, 11])
    feeds = classifier.feeds(encoded, rows)
    ids = [classifier.encoder._reference.encode(texts[r]).ids for r in rows]
    width = max(map(len, ids))
    expected = [row + [classifier.pad_id] * (width - len(row)) for row in ids]
    assert feeds["input_ids"].tolist() == expected
    assert feeds["attention_mask"].tolist() == [[1] * len(r) + [0] * (width - len(r)) for r in ids]
