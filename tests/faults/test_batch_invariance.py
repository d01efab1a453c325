"""The same row gets the same label (and the same numbers) whatever the batch size, the chunk
size, the row order and the engine, for every variant `--variant auto` can pick; dynamic int8,
which scales each batch by its own range, is never picked by auto."""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsclf.artifacts import VARIANTS, auto_order
from newsclf.export import ExportConfig, export_onnx
from newsclf.inference import Classifier, ClassifierConfig, ClassifyConfig, classify_file
from tests.conftest import SAMPLE_DIR, sample_rows, write_csv

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
WORDS = sorted(
    {
        w.lower()
        for r in sample_rows("train.csv")
        for w in (r["title"] + " " + r["description"]).split()
    }
)


@pytest.fixture(scope="module")
def every_variant(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The tiny run with every CPU variant, the OpenVINO ones where OpenVINO is installed."""
    openvino = ["openvino", "openvino-int8"] if HAS_OPENVINO else []
    config = ExportConfig(variants=["optimized", "int8", *openvino])
    return export_onnx(
        tiny_run.run_dir, tmp_path_factory.mktemp("every") / "onnx", config
    ).output_dir


def _auto_variants() -> list[str]:
    variants = [s for s in auto_order("cpu") if s.batch_invariant]
    return [s.name for s in variants if HAS_OPENVINO or s.runtime != "openvino"]


texts_strategy = st.lists(
    st.one_of(
        st.lists(st.sampled_from(WORDS), min_size=0, max_size=60).map(" ".join),
        st.text(max_size=80),  # anything: punctuation, emoji, control characters
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("variant", _auto_variants())
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=texts_strategy, batch_size=st.integers(2, 33), seed=st.integers(0, 10_000))
def test_a_row_gets_the_same_numbers_alone_or_in_any_batch(
    every_variant: Path, variant: str, texts: list[str], batch_size: int, seed: int
) -> None:
    alone = Classifier(every_variant, ClassifierConfig(device="cpu", variant=variant, batch_size=1))
    batched = Classifier(
        every_variant, ClassifierConfig(device="cpu", variant=variant, batch_size=batch_size)
    )
    expected = np.stack([alone.predict_proba([t])[0] for t in texts])
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    shuffled = batched.predict_proba([texts[i] for i in order])
    got = np.empty_like(shuffled)
    got[order] = shuffled
    np.testing.assert_array_equal(got, expected)


def test_files_give_the_same_labels_whatever_the_chunks(
    every_variant: Path, tmp_path: Path
) -> None:
    rows = sample_rows("test.csv")
    labels: dict[tuple[str, int], list[str]] = {}
    for variant in _auto_variants():
        for chunk_rows, batch_size in ((7, 3), (100, 32)):
            out = tmp_path / f"{variant}-{chunk_rows}.csv"
            classifier = Classifier(
                every_variant,
                ClassifierConfig(device="cpu", variant=variant, batch_size=batch_size),
            )
            chunks = ClassifyConfig(chunk_rows=chunk_rows)
            classify_file(SAMPLE_DIR / "test.csv", classifier, chunks, output=out)
            with open(out, newline="", encoding="utf-8") as handle:
                written = list(csv.DictReader(handle))
            labels[(variant, chunk_rows)] = [r["predicted_label"] for r in written]
            assert len(written) == len(rows)
        assert labels[(variant, 7)] == labels[(variant, 100)], variant


def test_auto_never_picks_dynamic_int8(every_variant: Path) -> None:
    assert not VARIANTS["int8"].batch_invariant
    assert "int8" not in _auto_variants()
    auto = Classifier(every_variant, ClassifierConfig(device="cpu"))
    assert auto.variant == ("openvino-int8" if HAS_OPENVINO else "optimized")
    if HAS_OPENVINO:  # the report names what ran: int8 MatMuls, the rest at OpenVINO's hint
        assert auto.provider.startswith("OpenVINO-CPU-int8+")
        plain = Classifier(every_variant, ClassifierConfig(device="cpu", variant="openvino"))
        assert "int8" not in plain.provider
    asked = Classifier(every_variant, ClassifierConfig(device="cpu", variant="int8"))
    assert asked.variant == "int8"  # still there for whoever asks for it


def test_dynamic_int8_is_what_auto_avoids(every_variant: Path, tmp_path: Path) -> None:
    """Why int8 is left out: its numbers for a row change with the rows beside it."""
    texts = [f"{r['title']} {r['description']}" for r in sample_rows("test.csv")]
    data = write_csv(tmp_path / "x.csv", ["text"], [[t] for t in texts])
    assert data.is_file()
    alone = Classifier(every_variant, ClassifierConfig(device="cpu", variant="int8", batch_size=1))
    batched = Classifier(
        every_variant, ClassifierConfig(device="cpu", variant="int8", batch_size=32)
    )
    expected = np.stack([alone.predict_proba([t])[0] for t in texts])
    assert not np.array_equal(batched.predict_proba(texts), expected)
