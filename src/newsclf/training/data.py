"""Labelled text data for training: local files or the hub, text columns, labels, splits."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsclf.errors import InputError, OfflineError
from newsclf.io import (
    Chunk,
    choose_text_columns,
    label_key,
    label_names_from,
    prepare_texts,
    read_table,
    texts_from_rows,
)
from newsclf.training.config import TrainingConfig
from newsclf.training.hub import OFFLINE_HINT, hub_reachable


@dataclass
class LabeledTexts:
    """One split: model-ready texts and integer labels."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabeledTexts:
        return LabeledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices])


@dataclass
class TrainingData:
    train: LabeledTexts
    validation: LabeledTexts
    test: LabeledTexts | None
    label_names: list[str]
    text_columns: list[str]
    source: str
    validation_source: str


@dataclass
class _RawSplit:
    texts: list[str]
    labels: list[str | int]
    line_numbers: list[int]
    path: str


def _read_labeled_file(
    path: Path,
    text_columns: Sequence[str],
    label_column: str,
    clean: bool,
    separator: str,
    trained: Sequence[str] = (),
) -> tuple[_RawSplit, list[str]]:
    columns, chunk = read_table(path)
    where = str(path)
    if not chunk.rows:
        raise InputError(f"{where}: the file has a header but no rows.")
    text_cols = choose_text_columns(columns, requested=text_columns, trained=trained, where=where)
    if label_column not in columns:
        raise InputError(
            f"{where}: no label column {label_column!r}; columns found: {', '.join(columns)}. "
            "Pass --label-column."
        )
    labels = _collect_labels(chunk, label_column, where)
    texts = texts_from_rows(chunk.rows, text_cols, clean=clean, separator=separator)
    return _RawSplit(texts, labels, chunk.line_numbers, where), text_cols


def _collect_labels(chunk: Chunk, label_column: str, where: str) -> list[str | int]:
    labels: list[str | int] = []
    for row, line in zip(chunk.rows, chunk.line_numbers, strict=True):
        key = label_key(row.get(label_column))
        if key is None:
            raise InputError(f"{where}, line {line}: empty label in column {label_column!r}.")
        labels.append(key)
    return labels


def _encode(split: _RawSplit, label_names: list[str]) -> LabeledTexts:
    index = {name: i for i, name in enumerate(label_names)}
    encoded = []
    for value, line in zip(split.labels, split.line_numbers, strict=True):
        i = index.get(str(value))
        if i is None:
            raise InputError(
                f"{split.path}, line {line}: unknown label {value!r}; the training data has "
                f"{', '.join(label_names)}."
            )
        encoded.append(i)
    return LabeledTexts(split.texts, encoded)


def stratified_split(
    data: LabeledTexts, fraction: float, seed: int
) -> tuple[LabeledTexts, LabeledTexts]:
    """Carve a validation split that keeps the class proportions (at least one row per class
    that has two or more rows)."""
    if not 0 < fraction < 1:
        raise InputError(f"The validation fraction must be between 0 and 1, not {fraction}.")
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(data.labels):
        by_class.setdefault(label, []).append(i)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in sorted(by_class):
        indices = by_class[label]
        rng.shuffle(indices)
        take = round(len(indices) * fraction)
        take = min(max(take, 1), len(indices) - 1) if len(indices) > 1 else 0
        val_idx.extend(indices[:take])
        train_idx.extend(indices[take:])
    if not val_idx:
        raise InputError("Too few rows to carve a validation split; pass --validation-file.")
    rng.shuffle(train_idx)
    rng.shuffle(val_idx)
    return data.subset(train_idx), data.subset(val_idx)


def carve_validation(
    train: LabeledTexts, fraction: float, seed: int, source: str
) -> tuple[LabeledTexts, LabeledTexts, str]:
    """Train and validation rows from one split, and where the validation rows came from;
    fraction 0 keeps every row for training and no validation."""
    if fraction == 0:
        return train, LabeledTexts([], []), "none (--validation-fraction 0: every row trains)"
    train, validation = stratified_split(train, fraction, seed)
    return train, validation, f"{fraction:.0%} of {source}, stratified, seed {seed}"


def load_local_data(
    train_file: Path,
    validation_file: Path | None,
    test_file: Path | None,
    *,
    text_columns: Sequence[str],
    label_column: str,
    clean: bool,
    separator: str,
    validation_fraction: float,
    seed: int,
) -> TrainingData:
    train_raw, text_cols = _read_labeled_file(
        train_file, text_columns, label_column, clean, separator
    )
    others = {}
    for name, path in (("validation", validation_file), ("test", test_file)):
        if path is not None:
            # The columns found in the training file, where these files have them too.
            others[name], _ = _read_labeled_file(
                path, text_columns, label_column, clean, separator, trained=text_cols
            )
    label_names = label_names_from(train_raw.labels)
    if len(label_names) < 2:
        raise InputError(f"{train_file}: the training data has only one class ({label_names[0]}).")
    train = _encode(train_raw, label_names)
    if "validation" in others:
        validation = _encode(others["validation"], label_names)
        validation_source = str(validation_file)
    else:
        train, validation, validation_source = carve_validation(
            train, validation_fraction, seed, str(train_file)
        )
    test = _encode(others["test"], label_names) if "test" in others else None
    return TrainingData(
        train, validation, test, label_names, text_cols, str(train_file), validation_source
    )


def load_hub_data(
    dataset: str,
    *,
    text_columns: Sequence[str],
    label_column: str,
    clean: bool,
    separator: str,
    validation_fraction: float,
    seed: int,
) -> TrainingData:
    """A hub dataset through `datasets` (train + test splits, ClassLabel names)."""
    if not hub_reachable():
        raise OfflineError(
            f"Cannot download dataset {dataset!r}: the hub is unreachable. {OFFLINE_HINT}"
        )
    import datasets

    try:
        loaded = datasets.load_dataset(dataset)
    except (ConnectionError, OSError) as exc:
        raise OfflineError(f"Cannot download dataset {dataset!r} ({exc}). {OFFLINE_HINT}") from exc
    if "train" not in loaded:
        raise InputError(f"Dataset {dataset!r} has no 'train' split (splits: {list(loaded)}).")
    train_split = loaded["train"]
    columns = list(train_split.column_names)
    text_cols = choose_text_columns(columns, requested=text_columns, where=f"dataset {dataset}")
    if label_column not in columns:
        raise InputError(f"Dataset {dataset!r} has no column {label_column!r}; columns: {columns}.")
    feature = train_split.features[label_column]
    names = getattr(feature, "names", None)

    def convert(split: Any) -> LabeledTexts:
        texts = prepare_texts(
            zip(*(split[c] for c in text_cols), strict=True), clean=clean, separator=separator
        )
        return LabeledTexts(texts, [int(v) for v in split[label_column]])

    train = convert(train_split)
    label_names = list(names) if names else [str(i) for i in sorted(set(train.labels))]
    if "validation" in loaded:
        validation = convert(loaded["validation"])
        validation_source = f"{dataset} validation split"
    else:
        train, validation, validation_source = carve_validation(
            train, validation_fraction, seed, f"{dataset} train"
        )
    test = convert(loaded["test"]) if "test" in loaded else None
    return TrainingData(train, validation, test, label_names, text_cols, dataset, validation_source)


def class_counts(data: LabeledTexts, label_names: Sequence[str]) -> dict[str, int]:
    counts = Counter(data.labels)
    return {name: counts.get(i, 0) for i, name in enumerate(label_names)}


def load_training_data(cfg: TrainingConfig) -> TrainingData:
    """The train, validation and test rows a run with `cfg` uses (the same split every time).

    Raises:
        InputError, OfflineError: bad or unreachable data.
    """
    pre = cfg.preprocessing
    common = {
        "text_columns": pre.text_columns,
        "label_column": pre.label_column,
        "clean": pre.clean,
        "separator": pre.text_separator,
        "validation_fraction": cfg.validation_fraction,
        "seed": cfg.seed,
    }
    if cfg.train_file is not None:
        return load_local_data(cfg.train_file, cfg.validation_file, cfg.test_file, **common)
    if not cfg.dataset:
        raise InputError("Give --train-file (a local file) or --dataset (a hub dataset).")
    return load_hub_data(cfg.dataset, **common)
