"""What classify says about the variant it runs: the faster one `--variant auto` would have taken
(and how to get it) in one line, and nothing when a variant is asked for by name; `--variant`
accepts the registry's names, and only those."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsclf.artifacts import VARIANTS
from newsclf.cli import app
from newsclf.errors import InputError
from newsclf.inference import ClassifierConfig
from tests.conftest import SAMPLE_DIR


def _classify(folder: Path, tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["classify", str(SAMPLE_DIR / "test.csv"), "--model", str(folder), "--device", "cpu",
         "--output", str(tmp_path / "out.csv"), *args],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    return result.exit_code, " ".join(result.output.split())


def test_classify_names_the_faster_variant_auto_would_have_taken(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    code, text = _classify(tiny_export.output_dir, tmp_path)
    assert code == 0, text
    assert "variant optimized on CPUExecutionProvider" in text
    assert (
        "note: openvino-int8 would run faster here than optimized: the export lacks it "
        "(newsclf export --onnx --variants +openvino-int8)"
    ) in text or (
        # where OpenVINO or NNCF is missing, the hint says to install it first
        "note: openvino-int8 would run faster here than optimized: the export lacks it "
        "(pip install 'newsclf[openvino]', then newsclf export --onnx --variants "
        "+openvino-int8)"
    ) in text
    code, text = _classify(tiny_export.output_dir, tmp_path, "--variant", "fp32")
    assert code == 0 and "would run faster" not in text


def test_variant_names_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="--variant must be one of auto, fp32, optimized"):
        ClassifierConfig(variant="fake")
    monkeypatch.setitem(VARIANTS, "fake", dataclasses.replace(VARIANTS["fp32"], name="fake"))
    assert ClassifierConfig(variant="fake").variant == "fake"


def test_an_onnx_runtime_variant_imports_neither_openvino_nor_nncf(tiny_export) -> None:  # type: ignore[no-untyped-def]
    """OpenVINO and NNCF are dependencies on x86-64; a run that does not use them does not pay
    for their import."""
    code = (
        "import sys; from newsclf import Classifier, ClassifierConfig; "
        f"c = Classifier({str(tiny_export.output_dir)!r}, ClassifierConfig(device='cpu')); "
        "c.predict(['stocks rose']); "
        "print(c.variant, 'openvino' in sys.modules, 'nncf' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["optimized", "False", "False"]
