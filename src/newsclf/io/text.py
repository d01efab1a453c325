"""From table rows to model texts, the same way for training, export and classify: which
columns hold the text (one policy), how they are joined, and how the text is cleaned.

`model_texts` does it column-wise for Arrow batches: the columns are joined by Arrow, and only
the rows a vectorised check finds in need (an entity or what could become one, a tag, a
backslash, anything but printable ASCII, a run of spaces, a space at either end) go through
`clean_text` one by one; every other row is already what `clean_text` would return.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from newsclf.errors import InputError

# AG News lost many ampersands: "It#39;s" for "It&#39;s", "quot;" for "&quot;". Only restore
# names that are real entities and do not continue a word, so that "contract;" stays as it is.
_BARE_NUMERIC_ENTITY = re.compile(r"(?<!&)#(\d{2,5}|x[0-9a-fA-F]{2,4});")
_BARE_NAMED_ENTITY = re.compile(
    r"(?<![&;A-Za-z])(quot|amp|lt|gt|apos|nbsp|hellip|rsquo|lsquo|rdquo|ldquo|mdash|ndash|pound|euro);"
)
# Simple inline tags such as <b>…</b> that unescaping brings out of "&lt;b&gt;".
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,200})?/?>")
_WHITESPACE = re.compile(r"\s+")


def _drop_control_characters(text: str) -> str:
    # Whitespace controls become spaces (collapsed below); the rest of categories Cc/Cf go.
    return "".join(
        " " if ch in "\t\n\r\v\f" else ch
        for ch in text
        if ch in "\t\n\r\v\f" or unicodedata.category(ch) not in ("Cc", "Cf")
    )


def clean_text(text: str) -> str:
    """Unescape HTML entities (also AG News's ampersand-less ones), turn literal backslashes
    into spaces, drop control characters and inline tags, collapse whitespace."""
    # Until nothing changes (three rounds at most): the data has doubly escaped entities
    # ("&amp;lt;"), and an entity right after an escaped tag ("&lt;b&gt;quot;") is bare only
    # once the tag is gone. So cleaning a cleaned text changes nothing.
    for _ in range(3):
        before = text
        text = _BARE_NUMERIC_ENTITY.sub(r"&#\1;", text)
        text = _BARE_NAMED_ENTITY.sub(r"&\1;", text)
        text = _HTML_TAG.sub(" ", html.unescape(text))
        if text == before:
            break
    text = text.replace("\\", " ")
    if not text.isprintable():
        text = _drop_control_characters(text)
    return _WHITESPACE.sub(" ", text).strip()


def join_columns(parts: Sequence[object], separator: str = " ") -> str:
    """Join one row's text fields; missing values (None, NaN) count as empty."""
    pieces = []
    for part in parts:
        if part is None or (isinstance(part, float) and part != part):
            continue
        piece = str(part).strip()
        if piece:
            pieces.append(piece)
    return separator.join(pieces)


def prepare_texts(
    rows: Iterable[Sequence[object]], *, clean: bool, separator: str = " "
) -> list[str]:
    """Rows of text-column values -> model texts, cleaned when the model was trained so."""
    texts = [join_columns(parts, separator) for parts in rows]
    if clean:
        texts = [clean_text(t) for t in texts]
    return texts


# Tried in order when neither the caller nor the model names the text columns.
AUTO_TEXT_COLUMNS = (("text",), ("title", "description"))


def parse_text_columns(value: str | Sequence[str] | None) -> list[str]:
    """'title,description' -> ['title', 'description']; None or '' -> [] (auto-detect)."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [p.strip() for p in parts if p.strip()]


def choose_text_columns(
    available: Sequence[str],
    *,
    requested: Sequence[str] = (),
    trained: Sequence[str] = (),
    where: str,
) -> list[str]:
    """The one text-column policy. `requested` (from the command line) when given: every one
    must exist. Else the columns the model was trained on, when the table has them all. Else
    auto-detection: `text`, then `title` + `description`."""
    if requested:
        missing = [c for c in requested if c not in available]
        if missing:
            raise InputError(
                f"{where}: no column {', '.join(map(repr, missing))}; "
                f"columns found: {', '.join(available) or '(none)'}."
            )
        return list(requested)
    if trained and all(c in available for c in trained):
        return list(trained)
    for candidate in AUTO_TEXT_COLUMNS:
        if all(c in available for c in candidate):
            return list(candidate)
    looked_for = "'text', then 'title' + 'description'"
    if trained:
        looked_for = f"{' + '.join(map(repr, trained))} (as trained), then {looked_for}"
    raise InputError(
        f"{where}: no text column found (looked for {looked_for}); "
        f"columns found: {', '.join(available) or '(none)'}. Pass --text-column."
    )


def texts_from_rows(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, clean: bool, separator: str
) -> list[str]:
    """Model texts from table rows (dicts): the text columns joined, cleaned if trained so."""
    return prepare_texts(
        ([row.get(c) for c in columns] for row in rows), clean=clean, separator=separator
    )


_ENTITY_NAMES = "quot|amp|lt|gt|apos|nbsp|hellip|rsquo|lsquo|rdquo|ldquo|mdash|ndash|pound|euro"
# A text that matches none of these is left as it is by `clean_text` (see the module).
# Matching too much only costs speed: such rows go the longer way.
_NEEDS_CLEANING = rf"[&<\\]|#x?[0-9A-Fa-f]+;|(?:{_ENTITY_NAMES});|[^\x20-\x7e]|  |^ | $"
# A value whose ends `str.strip()` may treat otherwise than trimming spaces.
_ODD_ENDS = r"^[^\x20-\x7e]|[^\x20-\x7e]$"


def model_texts(batch: Any, columns: Sequence[str], *, clean: bool, separator: str = " ") -> Any:
    """The model's texts of a record batch's text `columns`, as an Arrow string array: equal,
    row for row, to `prepare_texts` of the same values (JSON-text values decoded first)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from newsclf.io.tables import is_json_field

    fields = [batch.schema.field(name) for name in columns]
    parts = [batch.column(name) for name in columns]
    if any(is_json_field(f) or not pa.types.is_string(f.type) for f in fields):
        values = [_python_values(p, f) for p, f in zip(parts, fields, strict=True)]
        texts = prepare_texts(zip(*values, strict=True), clean=clean, separator=separator)
        return pa.array(texts, pa.string())
    exact = np.zeros(batch.num_rows, dtype=bool)
    joined = None
    for part in parts:
        exact |= _matches(part, _ODD_ENDS)
        part = pc.utf8_trim(part, " ")
        part = pc.if_else(pc.equal(part, ""), pa.scalar(None, pa.string()), part)
        if joined is None:
            joined = part
        else:
            # Either part may be missing; both present: joined by the separator.
            both = pc.binary_join_element_wise(joined, part, separator)
            joined = pc.if_else(joined.is_null(), part, pc.if_else(part.is_null(), joined, both))
    joined = pc.fill_null(joined, "")
    if clean:
        dirty = _matches(joined, _NEEDS_CLEANING) & ~exact
        if dirty.any():
            chosen = pa.array(dirty)
            cleaned, odd = clean_column(joined.filter(chosen))
            joined = pc.replace_with_mask(joined, chosen, cleaned)
            exact[np.flatnonzero(dirty)[odd]] = True
    if not exact.any():
        return joined
    chosen = pa.array(exact)
    rows = zip(*(p.filter(chosen).to_pylist() for p in parts), strict=True)
    texts = prepare_texts(rows, clean=clean, separator=separator)
    return pc.replace_with_mask(joined, chosen, pa.array(texts, pa.string()))


# `clean_text` column-wise, for texts of printable ASCII whose entities decode to it: AG News's
# (#39; quot; &lt;...&gt;). One round is clean_text's: bare entities get their ampersand, the
# known entities are decoded (&amp; last, so that it does not decode twice), tags are dropped;
# rows a round changed may change again (doubly escaped text), up to clean_text's three.
_BARE_NUMERIC = r"#(\d{2,5}|x[0-9a-fA-F]{2,4});"
_BARE_NAMED = rf"(^|[^&;A-Za-z])({_ENTITY_NAMES});"
_TAG = r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,200})?/?>"
_DECODED = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&#39;": "'", "&#36;": "$"}
_DECODED |= {"&#34;": '"', "&#60;": "<", "&#62;": ">"}
_AMPERSANDS = ("&amp;", "&#38;")
_KNOWN = r"&(?:lt|gt|quot|apos|amp|#39|#36|#34|#60|#62|#38);"
_MAY_CHANGE = rf"[&<]|#x?[0-9A-Fa-f]+;|(?:{_ENTITY_NAMES});"


def clean_column(texts: Any) -> tuple[Any, np.ndarray]:
    """`clean_text` of each text of an Arrow string array, and where it could not be done
    column-wise (anything but printable ASCII, an entity not in `_DECODED`): those rows are
    left for `clean_text` itself."""
    import pyarrow as pa
    import pyarrow.compute as pc

    odd = _matches(texts, r"[^\x20-\x7e]")
    rows = np.flatnonzero(~odd)
    for _ in range(3):  # as clean_text: a text it leaves as it is stays so
        if not len(rows):
            break
        before = texts.take(pa.array(rows))
        after, unknown = _round(before)
        odd[rows] |= unknown
        texts = pc.replace_with_mask(texts, _mask(len(texts), rows), after)
        changed = pc.not_equal(after, before).to_numpy(zero_copy_only=False)
        rows = rows[changed & _matches(after, _MAY_CHANGE)]
    texts = pc.replace_substring(texts, "\\", " ")
    texts = pc.utf8_trim(pc.replace_substring_regex(texts, "  +", " "), " ")
    return texts, odd


def _round(texts: Any) -> tuple[Any, np.ndarray]:
    import pyarrow.compute as pc

    # "#39;" gets its ampersand unless it has one: mark those first (RE2 has no lookbehind).
    texts = pc.replace_substring(texts, "&#", "\x01")
    texts = pc.replace_substring_regex(texts, _BARE_NUMERIC, r"&#\1;")
    texts = pc.replace_substring(texts, "\x01", "&#")
    texts = pc.replace_substring_regex(texts, _BARE_NAMED, r"\1&\2;")
    ampersands = pc.count_substring(texts, "&").to_numpy(zero_copy_only=False)
    unknown = ampersands != pc.count_substring_regex(texts, _KNOWN).to_numpy(zero_copy_only=False)
    for entity in _AMPERSANDS:
        texts = pc.replace_substring(texts, entity, "\x02")
    for entity, character in _DECODED.items():
        texts = pc.replace_substring(texts, entity, character)
    texts = pc.replace_substring(texts, "\x02", "&")
    return pc.replace_substring_regex(texts, _TAG, " "), unknown


def _mask(size: int, rows: np.ndarray) -> Any:
    import pyarrow as pa

    mask = np.zeros(size, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def _matches(strings: Any, pattern: str) -> np.ndarray:
    import pyarrow.compute as pc

    found = pc.fill_null(pc.match_substring_regex(strings, pattern), False)
    return found.to_numpy(zero_copy_only=False)


def _python_values(column: Any, field: Any) -> list[Any]:
    """A column's values as Python objects; a JSON-text column's decoded to what they were."""
    import json

    from newsclf.io.tables import is_json_field

    values = column.to_pylist()
    if is_json_field(field):
        return [None if v is None else json.loads(v) for v in values]
    return values
