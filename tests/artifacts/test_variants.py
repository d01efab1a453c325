"""The variant registry: auto's order and its reasons, what a plain export makes and what it
leaves out (and why), and `--variants` requests. No model is built here."""

from __future__ import annotations

import pytest

import newsclf.artifacts.variants as registry
from newsclf.artifacts import (
    VARIANTS,
    auto_order,
    choose_auto,
    default_variants,
    plan_variants,
)
from newsclf.errors import InputError


@pytest.fixture
def without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where neither OpenVINO nor NNCF is installed."""
    installed = registry.module_installed
    monkeypatch.setattr(
        registry, "module_installed", lambda m: m not in ("openvino", "nncf") and installed(m)
    )


@pytest.fixture
def with_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where OpenVINO and NNCF are installed (whether or not this one has them)."""
    installed = registry.module_installed
    monkeypatch.setattr(
        registry, "module_installed", lambda m: m in ("openvino", "nncf") or installed(m)
    )


def test_auto_order_is_the_registrys_rank_per_device() -> None:
    assert [s.name for s in auto_order("cpu")] == [
        "openvino-int8",
        "openvino",
        "int8",
        "optimized",
        "fp32",
    ]
    assert [s.name for s in auto_order("cuda")] == ["fp16", "optimized", "fp32"]
    # The OpenVINO variants never run on CUDA; dynamic int8 is not batch-invariant.
    assert all(not s.runs_on("cuda") for s in VARIANTS.values() if s.runtime == "openvino")
    assert [s.name for s in VARIANTS.values() if not s.batch_invariant] == ["int8"]


def test_auto_skips_dynamic_int8_and_says_why_each_variant_was_passed_over(
    with_openvino: None,
) -> None:
    choice = choose_auto("cpu", {"fp32", "optimized", "int8"})
    assert choice.variant == "optimized"
    verdicts = {c.variant: c.verdict for c in choice.candidates}
    assert verdicts == {
        "openvino-int8": "not in the export",
        "openvino": "not in the export",
        "int8": "not batch-invariant",
        "optimized": "picked",
        "fp32": "slower",
    }
    assert choice.hint() == (
        "openvino-int8 would run faster here than optimized: the export lacks it "
        "(newsclf export --onnx --variants +openvino-int8)"
    )
    assert choose_auto("cuda", {"fp32", "fp16"}).variant == "fp16"
    assert choose_auto("cpu", {"fp32", "openvino-int8"}).hint() is None


def test_auto_passes_over_a_variant_whose_runtime_is_missing(without_openvino: None) -> None:
    choice = choose_auto("cpu", {"fp32", "fp16", "openvino-int8"})
    assert choice.variant == "fp32"  # fp16 is not in the CPU's order
    first = choice.candidates[0]
    assert (first.variant, first.verdict) == ("openvino-int8", "not installed")
    assert "pip install 'newsclf[openvino]'" in (choice.hint() or "")


def test_a_plain_export_makes_what_auto_would_pick(with_openvino: None) -> None:
    plan = default_variants()
    assert plan.variants == ("fp32", "fp16", "openvino-int8")
    assert plan.left_out == ()


def test_without_openvino_the_default_cpu_variant_is_optimized_and_it_is_said(
    without_openvino: None,
) -> None:
    plan = plan_variants([])
    assert plan.variants == ("fp32", "optimized", "fp16")
    [left_out] = plan.left_out
    assert (left_out.variant, left_out.device, left_out.instead) == (
        "openvino-int8",
        "cpu",
        "optimized",
    )
    assert left_out.message() == (
        "openvino-int8 left out: it needs openvino, nncf, not installed here "
        "(pip install 'newsclf[openvino]'); cpu gets optimized instead"
    )
    # Asked for by name, a variant that cannot be made here is an error, not a note.
    with pytest.raises(
        InputError, match=r"openvino-int8 variant cannot be made.*newsclf\[openvino\]"
    ):
        plan_variants(["+openvino-int8"])
    with pytest.raises(InputError, match="cannot be made"):
        plan_variants(["openvino"])


def test_without_calibration_texts_openvino_int8_is_left_out_unless_asked_for(
    with_openvino: None,
) -> None:
    plan = plan_variants([], calibration_texts=False)
    assert plan.variants == ("fp32", "fp16", "openvino")
    assert "--calibration-file" in plan.left_out[0].message()
    with pytest.raises(InputError, match="--calibration-file"):
        plan_variants(["openvino-int8"], calibration_texts=False)


def test_variants_requests_add_leave_out_or_list(with_openvino: None) -> None:
    assert plan_variants(["+int8"]).variants == ("fp32", "fp16", "int8", "openvino-int8")
    assert plan_variants(["-fp16"]).variants == ("fp32", "openvino-int8")
    assert plan_variants(["-fp16", "+optimized"]).variants == (
        "fp32",
        "optimized",
        "openvino-int8",
    )
    assert plan_variants(["int8", "optimized"]).variants == ("fp32", "optimized", "int8")
    assert plan_variants(["fp32"]).variants == ("fp32",)
    with pytest.raises(InputError, match="not both"):
        plan_variants(["+int8", "fp16"])
    with pytest.raises(InputError, match="always made"):
        plan_variants(["-fp32"])
    with pytest.raises(InputError, match="--variants must be one of fp32, optimized"):
        plan_variants(["fp8"])
