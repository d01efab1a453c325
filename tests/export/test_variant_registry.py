"""The registry drives the export, the folder's checks, parity and `--variant auto`: a variant
added in one place (one registry entry naming its converter) is made, recorded, checked and
picked; and what a plain `newsclf export --onnx` makes."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

import newsclf.artifacts.variants as registry
from newsclf.artifacts import VARIANTS, ExportFolder, VariantSpec
from newsclf.cli import app
from newsclf.errors import ModelError, ParityError
from newsclf.export import ConversionJob, ExportConfig, converter_of, export_onnx
from newsclf.inference import Classifier, ClassifierConfig

HAS_OPENVINO = all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))


def copy_fp32(job: ConversionJob) -> Iterator[tuple[Path, str | None]]:
    """A converter: the fp32 graph under another name."""
    shutil.copy(job.fp32, job.target)
    yield job.target, None


def shifted_copy(job: ConversionJob) -> Iterator[tuple[Path, str | None]]:
    """A converter whose graph computes other logits: the classifier's bias moved by 0.5."""
    model = onnx.load(str(job.fp32))
    bias = max(
        (i for i in model.graph.initializer if numpy_helper.to_array(i).shape == (4,)),
        key=lambda i: "classifier" in i.name,
    )
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.5, bias.name))
    onnx.save(model, str(job.target))
    yield job.target, "shifted"


def _fake(converter: str) -> VariantSpec:
    return VariantSpec(
        name="fake",
        file="model_fake.onnx",
        runtime="onnxruntime",
        devices=("cpu",),
        parity="strict",
        auto_rank={"cpu": -1},  # ahead of every CPU variant
        batch_invariant=True,
        converter=f"{__name__}:{converter}",
        description="the fp32 graph under another name",
    )


def test_every_registry_converter_resolves() -> None:
    for spec in VARIANTS.values():
        if spec.converter is not None:
            assert callable(converter_of(spec.converter)), spec.name


def test_a_variant_added_to_the_registry_is_exported_checked_and_picked(
    tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(VARIANTS, "fake", _fake("copy_fp32"))
    result = export_onnx(tiny_run.run_dir, tmp_path / "onnx", ExportConfig(variants=["fake"]))

    # Export: made by its converter, checked with its parity rule (strict: the fp32 tolerance).
    checked = {v.variant: v for v in result.variants}
    assert list(checked) == ["fp32", "fake"]
    assert checked["fake"].passed and checked["fake"].file == "model_fake.onnx"
    assert checked["fake"].tolerance == 1e-4 and checked["fake"].max_abs_diff <= 1e-4
    manifest = json.loads((result.output_dir / "newsclf_export.json").read_text())
    assert manifest["variants"]["fake"]["file"] == "model_fake.onnx"

    # auto: first in the CPU's order, so picked; no padding bucket.
    auto = Classifier(result.output_dir, ClassifierConfig(device="cpu"))
    assert auto.variant == "fake" and auto.padding_bucket is None
    texts = ["stocks and shares rose", "the team won the cup"]
    fp32 = Classifier(result.output_dir, ClassifierConfig(device="cpu", variant="fp32"))
    np.testing.assert_allclose(auto.predict_proba(texts), fp32.predict_proba(texts), atol=1e-6)

    # The folder's check: a damaged file of the new variant is found, used or not.
    (result.output_dir / "model_fake.onnx").write_bytes(b"\0" * 4096)
    folder = ExportFolder.load(result.output_dir)
    assert [d.variant for d in folder.damaged_variants()] == ["fake"]
    with pytest.raises(ModelError, match=r"model_fake\.onnx \(fake variant\) is not the file"):
        Classifier(folder, ClassifierConfig(device="cpu"))
    unused = Classifier(folder, ClassifierConfig(device="cpu", variant="fp32"))
    assert [d.variant for d in unused.damaged_variants] == ["fake"]


def test_parity_holds_a_registry_variant_to_its_rule(
    tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(VARIANTS, "fake", _fake("shifted_copy"))
    with pytest.raises(ParityError, match=r"fake: max \|Δlogits\| 0\.5 exceeds the tolerance"):
        export_onnx(tiny_run.run_dir, tmp_path / "onnx", ExportConfig(variants=["fake"]))
    assert not (tmp_path / "onnx").exists()


@pytest.mark.skipif(not HAS_OPENVINO, reason="needs openvino and nncf")
def test_a_plain_export_makes_fp16_and_openvino_int8_and_auto_runs_them(
    tiny_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    output = tmp_path / "onnx"
    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--output", str(output)],
        env={"COLUMNS": "200"},
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    report = json.loads((output / "export_report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["fp32", "fp16", "openvino-int8"]
    assert all(v["passed"] for v in report["variants"]) and report["left_out"] == []
    assert sorted(ExportFolder.load(output).variants) == ["fp16", "fp32", "openvino-int8"]
    auto = Classifier(output, ClassifierConfig(device="cpu"))
    assert auto.variant == "openvino-int8" and auto.auto_choice is not None
    assert auto.auto_choice.hint() is None  # nothing faster to get


def test_a_plain_export_without_openvino_says_what_it_left_out(
    tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    installed = registry.module_installed
    monkeypatch.setattr(
        registry, "module_installed", lambda m: m not in ("openvino", "nncf") and installed(m)
    )
    output = tmp_path / "onnx"
    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--output", str(output)],
        env={"COLUMNS": "200"},
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert "note: openvino-int8 left out: it needs openvino, nncf" in text
    assert "cpu gets optimized instead" in text
    assert sorted(ExportFolder.load(output).variants) == ["fp16", "fp32", "optimized"]
    # Asked for by name, it is an error before any work.
    asked = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--output",
         str(tmp_path / "asked"), "--variants", "+openvino-int8"],
    )  # fmt: skip
    assert asked.exit_code == 2 and "cannot be made" in asked.output
    assert not (tmp_path / "asked").exists()


def test_the_retired_variant_flags_are_refused_naming_their_replacement(tiny_run) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--optimize", "--quantize",
         "int8"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert re.search(r"--optimize, --quantize: retired, .* --variants \+optimized,\+int8", text)


def test_the_export_table_shows_every_figure_in_80_columns(tmp_path: Path) -> None:
    """OpenVINO's provider names are long; the figures must not be cut to fit a terminal."""
    import io

    from rich.console import Console

    from newsclf.cli.render import export_table
    from newsclf.export import Calibration, ExportResult, VariantParity

    def parity(variant: str, provider: str) -> VariantParity:
        return VariantParity(
            variant, f"{variant}.onnx", 23_400_000, provider, 592, 2.2e-2, 0.9961, 0.9, 0.9,
            47.0, 17, None, True,
        )  # fmt: skip

    result = ExportResult(
        tmp_path / "onnx",
        [parity("fp32", "CPUExecutionProvider"), parity("openvino-int8", "OpenVINO-CPU-int8+bf16")],
        "parity_sample.jsonl",
        {},
        Calibration.uncalibrated("no validation rows"),
    )
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(export_table(result))
    rows = [line for line in out.getvalue().splitlines() if line.startswith("openvino-int8")]
    assert rows and all(len(line) <= 80 for line in out.getvalue().splitlines())
    assert "…" not in rows[0]
    # (all shapes: 0% here, as the made-up result has no per-shape figures)
    assert rows[0].split()[:7] == ["openvino-int8", "23.4", "2.2e-02", "99.61%", "0.00%",
                                   "+0.00", "47"]  # fmt: skip
    assert rows[0].rstrip().endswith("pass")
