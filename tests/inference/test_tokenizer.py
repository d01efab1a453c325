"""classify's tokenizer: nanotoken where it gives `tokenizers`' ids, `tokenizers` otherwise.
The ids must be `tokenizers`' on every text: sample and shared rows (cleaned and raw), the
fault suite's hostile texts, any text at all; a fast tokenizer that disagrees is not used."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsclf.inference import TextEncoder
from newsclf.io import TableReader, clean_text
from tests.conftest import SHARED_AG_NEWS, sample_rows
from tests.io.test_columnar import HOSTILE

HAS_NANOTOKEN = importlib.util.find_spec("nanotoken") is not None


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    from newsclf.training import embedded_model_dir

    return (Path(embedded_model_dir()) / "tokenizer.json").read_text(encoding="utf-8")


def _rows_of(encoded) -> list[list[int]]:  # type: ignore[no-untyped-def]
    starts = encoded.starts
    return [
        encoded.ids[start : start + length].astype(np.int64).tolist()
        for start, length in zip(starts, encoded.lengths, strict=True)
    ]


def _assert_reference_ids(encoder: TextEncoder, texts: list[str]) -> None:
    expected = [e.ids for e in encoder._reference.encode_batch(texts)]
    assert _rows_of(encoder.encode(texts)) == expected


@pytest.mark.skipif(not HAS_NANOTOKEN, reason="nanotoken is not installed")
def test_nanotoken_runs_and_gives_the_reference_ids(tokenizer_json: str) -> None:
    for max_length in (128, 16):
        encoder = TextEncoder(tokenizer_json, max_length)
        assert encoder.name.startswith("nanotoken") and encoder.fallback_reason is None
        rows = sample_rows("train.csv") + sample_rows("test.csv")
        raw = [f"{r['title']} {r['description']}" for r in rows]
        _assert_reference_ids(encoder, raw + [clean_text(t) for t in raw] + HOSTILE)


@pytest.mark.skipif(not HAS_NANOTOKEN, reason="nanotoken is not installed")
def test_nanotoken_gives_the_reference_ids_on_every_shared_row(tokenizer_json: str) -> None:
    if not SHARED_AG_NEWS.is_dir():
        pytest.skip("no shared AG News data")
    encoder = TextEncoder(tokenizer_json, 128)
    test = [r for _, r in TableReader(SHARED_AG_NEWS / "test.csv").records()]
    train = [r for _, r in TableReader(SHARED_AG_NEWS / "train.csv").records()]
    raw = [f"{r['title']} {r['description']}" for r in test] + [r["text"] for r in train]
    _assert_reference_ids(encoder, raw + [clean_text(t) for t in raw])


@pytest.mark.skipif(not HAS_NANOTOKEN, reason="nanotoken is not installed")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=20))
def test_nanotoken_gives_the_reference_ids_on_any_text(texts: list[str]) -> None:
    from newsclf.training import embedded_model_dir

    encoder = _encoder(str(Path(embedded_model_dir()) / "tokenizer.json"))
    _assert_reference_ids(encoder, texts)


_ENCODERS: dict[str, TextEncoder] = {}


def _encoder(path: str) -> TextEncoder:
    if path not in _ENCODERS:
        _ENCODERS[path] = TextEncoder(Path(path).read_text(encoding="utf-8"), 128)
    return _ENCODERS[path]


def test_without_nanotoken_the_reference_runs_and_says_why(
    tokenizer_json: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nanotoken", None)
    encoder = TextEncoder(tokenizer_json, 128)
    assert encoder.name.startswith("tokenizers ")
    assert encoder.fallback_reason == "nanotoken is not installed"
    _assert_reference_ids(encoder, HOSTILE)


@pytest.mark.skipif(not HAS_NANOTOKEN, reason="nanotoken is not installed")
def test_a_fast_tokenizer_that_disagrees_on_a_probe_text_is_not_used(
    tokenizer_json: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nanotoken

    real = nanotoken.Tokenizer

    class OffByOne:
        def __init__(self, source: object) -> None:
            self.tokenizer = real(source)

        def encode_batch(self, texts: list[str], **options: object):  # type: ignore[no-untyped-def]
            ragged = self.tokenizer.encode_batch(texts, **options)
            ragged.ids[-1] += 1  # the last id of the last text
            return ragged

    monkeypatch.setattr(nanotoken, "Tokenizer", OffByOne)
    encoder = TextEncoder(tokenizer_json, 128)
    assert encoder.name.startswith("tokenizers ")
    assert "differ" in (encoder.fallback_reason or "")
