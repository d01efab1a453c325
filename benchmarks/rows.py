"""The one row sampler: rows of a table as the model sees them, and files made of them."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

from newsclf.artifacts import PreprocessingConfig
from newsclf.io import choose_text_columns, read_table, texts_from_rows


@dataclass(frozen=True)
class Rows:
    """Rows of a labelled table: the model's texts (cleaned as trained) and the label names."""

    source: str
    columns: list[str]
    records: list[dict[str, object]]
    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> Rows:
        return self.slice(0, n)

    def slice(self, start: int, stop: int) -> Rows:
        return Rows(
            self.source,
            self.columns,
            self.records[start:stop],
            self.texts[start:stop],
            self.labels[start:stop],
        )


def load_rows(data: Path, rows: int | None, pre: PreprocessingConfig) -> Rows:
    """The first `rows` rows of `data` (all when None), repeated in order when the file has
    fewer (so that start-up costs do not dominate a GPU run). Each row of the file is cleaned
    once, however often it repeats."""
    columns, chunk = read_table(data)
    records = chunk.rows if rows is None else chunk.rows[:rows]
    text_columns = choose_text_columns(columns, trained=pre.text_columns, where=str(data))
    texts = texts_from_rows(records, text_columns, clean=pre.clean, separator=pre.text_separator)
    labels = [str(r.get(pre.label_column, "")) for r in records]
    if rows is not None:
        take = list(itertools.islice(itertools.cycle(range(len(records))), rows))
        records = [records[i] for i in take]
        texts = [texts[i] for i in take]
        labels = [labels[i] for i in take]
    return Rows(str(data), columns, records, texts, labels)


def write_csv(rows: Rows, path: Path) -> Path:
    """The rows as a CSV with the source's columns (what a file-based engine reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows.columns)
        writer.writeheader()
        writer.writerows(rows.records)
    return path
