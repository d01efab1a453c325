"""Label values as files hold them (class names, integers, "3", 3.0, empty cells) matched to a
model's classes, one way for training and classify."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from newsclf.errors import InputError


def label_key(value: Any) -> str | int | None:
    """Normalise a raw label: integers (also '3' and 3.0) stay integers, names are stripped;
    None for an empty cell."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def label_names_from(values: Sequence[str | int]) -> list[str]:
    """Class names in a stable order: integers numerically, names alphabetically.

    Raises:
        InputError: the values mix integers and names.
    """
    distinct = set(values)
    if all(isinstance(v, int) for v in distinct):
        return [str(v) for v in sorted(distinct)]  # type: ignore[type-var]
    if any(isinstance(v, int) for v in distinct):
        raise InputError(
            "Labels mix integers and class names: "
            f"{', '.join(map(str, sorted(distinct, key=str)[:10]))}. Use one kind."
        )
    return sorted(str(v) for v in distinct)


# Class index of a row without a usable label (empty, or a class the model lacks).
NO_LABEL = -1


class LabelMatcher:
    """Maps a file's label values to the model's classes: by name, or by class index when
    the model's classes are not themselves integers."""

    def __init__(self, label_names: Sequence[str]) -> None:
        self.index = {name: i for i, name in enumerate(label_names)}
        self.by_position = not all(name.lstrip("-").isdigit() for name in label_names)
        self.count = len(label_names)

    def __call__(self, value: Any) -> int | str | None:
        """Class index; None for an empty cell; the raw text for a label the model lacks."""
        key = label_key(value)
        if key is None:
            return None
        if str(key) in self.index:
            return self.index[str(key)]
        if isinstance(key, int) and self.by_position and 0 <= key < self.count:
            return key
        return str(key)

    def truth_of(self, column: Any, decode: bool = False) -> tuple[np.ndarray, int, Counter[str]]:
        """`truth` of an Arrow column, column-wise: each distinct value is matched once
        (`decode`: the values are JSON texts)."""
        import json

        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary.to_pylist()
        if decode:
            distinct = [None if v is None else json.loads(v) for v in distinct]
        # Code len(distinct) stands for a null.
        codes = pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False)
        counts = np.bincount(codes, minlength=len(distinct) + 1)
        index = np.full(len(distinct) + 1, NO_LABEL, dtype=np.int64)
        unlabelled = int(counts[len(distinct)])
        unknown: Counter[str] = Counter()
        for code, value in enumerate(distinct):
            matched = self(value)
            if matched is None:
                unlabelled += int(counts[code])
            elif isinstance(matched, str):
                if counts[code]:
                    unknown[matched] += int(counts[code])
            else:
                index[code] = matched
        truth = index[codes]
        return truth, unlabelled, unknown
