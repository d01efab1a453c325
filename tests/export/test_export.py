"""newsclf export --onnx: parity at every shape, variants, refusal of a tampered export."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from newsclf.artifacts import ExportFolder
from newsclf.cli import app
from newsclf.export import ExportConfig, export_onnx
from newsclf.inference import Classifier, ClassifierConfig
from tests.conftest import sample_rows


def test_tiny_bert_export_passes_parity_at_every_shape(tiny_export) -> None:  # type: ignore[no-untyped-def]
    fp32 = next(v for v in tiny_export.variants if v.variant == "fp32")
    assert fp32.passed and fp32.max_abs_diff <= 1e-4 and fp32.label_agreement == 1.0
    assert set(fp32.cases) == {"batch 1", "batch 17", "short, batch 17", "max length, batch 17"}
    for case in fp32.cases.values():
        assert case["max_abs_diff"] <= 1e-4 and case["label_agreement"] == 1.0
    assert fp32.provider == "CPUExecutionProvider"

    model = onnx.load(str(tiny_export.output_dir / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and d for d in dims)  # batch and sequence are dynamic


def test_max_length_case_really_truncates(tiny_run) -> None:  # type: ignore[no-untyped-def]
    from newsclf.export import encode, parity_cases

    folder = tiny_run.best_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    cases = {c.name: c for c in parity_cases(["a short text", "another one here"], 64)}
    long = encode(tokenizer, cases["max length, batch 17"].texts, ["input_ids"], 64)["input_ids"]
    short = encode(tokenizer, cases["short, batch 17"].texts, ["input_ids"], 64)["input_ids"]
    assert long.shape[1] == 64 and short.shape[1] <= 4


def test_optimized_and_int8_variants_load_and_agree(tiny_export) -> None:  # type: ignore[no-untyped-def]
    variants = {v.variant: v for v in tiny_export.variants}
    assert set(variants) == {"fp32", "optimized", "int8"}
    assert variants["optimized"].passed and variants["optimized"].max_abs_diff <= 1e-4
    assert variants["int8"].passed and variants["int8"].label_agreement >= 0.99
    assert variants["int8"].size_bytes < variants["fp32"].size_bytes
    report = json.loads((tiny_export.output_dir / "export_report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["fp32", "optimized", "int8"]
    assert report["passed"] is True and report["fp32_tolerance"] == 1e-4
    folder = ExportFolder.load(tiny_export.output_dir)
    texts = ["stocks and shares rose", "the team won"]
    fp32 = Classifier(folder, ClassifierConfig(device="cpu", variant="fp32")).predict_proba(texts)
    optimized = Classifier(
        folder, ClassifierConfig(device="cpu", variant="optimized")
    ).predict_proba(texts)
    int8 = Classifier(folder, ClassifierConfig(device="cpu", variant="int8")).predict_proba(texts)
    np.testing.assert_allclose(optimized, fp32, atol=1e-5)  # the same function, fused
    assert np.abs(int8 - fp32).max() < 0.1  # quantized: close, not equal
    assert list(int8.argmax(1)) == list(fp32.argmax(1))


def test_export_folder_is_self_contained(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "elsewhere" / "my-export"
    shutil.copytree(tiny_export.output_dir, copy)
    texts = ["Stocks fell as oil prices climbed", "The Rovers beat United 2-1 on Saturday"]
    original = Classifier(
        ExportFolder.load(tiny_export.output_dir), ClassifierConfig(device="cpu", variant="fp32")
    )
    moved = Classifier(ExportFolder.load(copy), ClassifierConfig(device="cpu", variant="fp32"))
    np.testing.assert_array_equal(original.predict_proba(texts), moved.predict_proba(texts))
    assert moved.label_names == ["Business", "Sci/Tech", "Sports", "World"]


def test_model_without_token_type_ids_exports(tiny_distilbert_dir: Path, tmp_path: Path) -> None:

    from newsclf.training import NewsTrainer
    from tests.conftest import tiny_training_config

    config = tiny_training_config(tiny_distilbert_dir, tmp_path / "run", epochs=1)
    run = NewsTrainer(config).train()
    result = export_onnx(run.run_dir, None, ExportConfig(variants=["fp32"]))
    model = onnx.load(str(result.output_dir / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert result.variants[0].passed
    classifier = Classifier(ExportFolder.load(result.output_dir), ClassifierConfig(device="cpu"))
    assert classifier.predict_proba(["a text"]).shape == (1, 4)


def test_tampered_export_fails_parity_and_leaves_nothing(
    tiny_run, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import newsclf.export.exporter as export_module

    real_export = export_module.export_fp32

    def export_then_tamper(*args, **kwargs):  # type: ignore[no-untyped-def]
        path = real_export(*args, **kwargs)
        model = onnx.load(str(path))
        # Change one weight initializer: the classifier's bias (the logits move by 0.5).
        init = max(
            (i for i in model.graph.initializer if numpy_helper.to_array(i).shape == (4,)),
            key=lambda i: "classifier" in i.name,
        )
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, init.name))
        onnx.save(model, str(path))
        return path

    monkeypatch.setattr(export_module, "export_fp32", export_then_tamper)
    output = tmp_path / "export"
    result = CliRunner().invoke(
        app,
        ["export", "--onnx", "--checkpoint", str(tiny_run.run_dir), "--output", str(output),
         "--variants", "fp32"],
    )  # fmt: skip
    text = re.sub(r"\s+", " ", result.output)
    assert result.exit_code == 5, text
    assert "does not match PyTorch" in text and "fp32: max |Δlogits|" in text
    assert "exceeds the tolerance 0.0001" in text
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind either


def test_classify_refuses_a_variant_file_from_another_model(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from newsclf.errors import ModelError

    copy = tmp_path / "export"
    shutil.copytree(tiny_export.output_dir, copy)
    shutil.copy(copy / "model_int8.onnx", copy / "model.onnx")  # another graph under the name
    with pytest.raises(ModelError, match="is not the file this export wrote"):
        Classifier(ExportFolder.load(copy), ClassifierConfig(device="cpu", variant="fp32"))
    (copy / "tokenizer_config.json").unlink()
    with pytest.raises(ModelError, match=r"missing tokenizer_config\.json"):
        ExportFolder.load(copy)


def test_int8_falls_back_to_fp32_ffn_outputs_when_labels_flip(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from newsclf.export import (
        INT8_RECIPES,
        ConversionJob,
        convert_checked,
        export_fp32,
        load_checkpoint,
        model_input_names,
    )

    model, tokenizer = load_checkpoint(tiny_run.best_dir)
    names = model_input_names(model, tokenizer)
    fp32 = export_fp32(model, tokenizer, names, tmp_path / "model.onnx", 18)
    tried: list[onnx.ModelProto] = []

    class FailsFirst:  # a parity checker whose first int8 attempt disagrees with PyTorch
        def check(self, variant: str, path: Path, recipe: str | None) -> SimpleNamespace:
            tried.append(onnx.load(str(path)))
            return SimpleNamespace(passed=len(tried) == 2, recipe=recipe)

    job = ConversionJob(
        "int8", fp32, tmp_path / "model_int8.onnx", model.config, tokenizer, names, 64, list
    )
    _, result = convert_checked(job, FailsFirst())  # type: ignore[arg-type]
    assert result.passed and result.recipe == INT8_RECIPES[1] and len(tried) == 2

    def float_weight_matmuls(graph: onnx.GraphProto) -> int:
        weights = {i.name for i in graph.initializer}
        return sum(n.op_type == "MatMul" and n.input[1] in weights for n in graph.node)

    # The fallback keeps one MatMul per layer (the FFN output, after GELU) in fp32.
    assert float_weight_matmuls(tried[1].graph) == float_weight_matmuls(tried[0].graph) + 2


def test_fp16_variant_is_checked_and_loads(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """fp16 is meant for CUDA; without a GPU it is checked (and runs) on the CPU provider."""
    result = export_onnx(tiny_run.run_dir, tmp_path / "fp16", ExportConfig(variants=["fp16"]))
    fp16 = next(v for v in result.variants if v.variant == "fp16")
    assert fp16.passed and fp16.label_agreement >= 0.99
    assert fp16.tolerance is None  # judged on labels, not on the fp32 tolerance
    model = onnx.load(str(result.output_dir / "model_fp16.onnx"))
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.dims]
    assert sum(w.dtype == np.float16 for w in weights) > len(weights) / 2  # really fp16
    # Inputs and logits keep their types, so the same feeds work.
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    folder = ExportFolder.load(result.output_dir)
    texts = ["stocks and shares rose", "the team won the cup"]
    fp32 = Classifier(folder, ClassifierConfig(device="cpu", variant="fp32")).predict_proba(texts)
    half = Classifier(folder, ClassifierConfig(device="cpu", variant="fp16")).predict_proba(texts)
    assert np.abs(half - fp32).max() < 1e-2


def test_export_again_replaces_the_earlier_export(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "onnx"
    export_onnx(tiny_run.run_dir, target, ExportConfig(variants=["int8"]))
    assert (target / "model_int8.onnx").is_file()
    export_onnx(tiny_run.run_dir, target, ExportConfig(variants=["optimized"]))
    assert sorted(ExportFolder.load(target).variants) == ["fp32", "optimized"]
    assert not (target / "model_int8.onnx").exists()  # nothing stale survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no staging or retired folder


def test_export_refuses_a_folder_that_is_not_an_export(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from newsclf.errors import InputError

    target = tmp_path / "my-documents"
    target.mkdir()
    (target / "thesis.txt").write_text("precious")
    with pytest.raises(InputError, match="is not a newsclf export"):
        export_onnx(tiny_run.run_dir, target, ExportConfig())
    assert sorted(p.name for p in target.iterdir()) == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-documents"]


def test_export_command_succeeds_and_reports_each_variant(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    output = tmp_path / "cli-export"
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--onnx",
            "--checkpoint",
            str(tiny_run.run_dir),
            "--output",
            str(output),
            "--variants",
            "optimized",
        ],
        env={"COLUMNS": "200"},
    )
    text = re.sub(r"\s+", " ", result.output)
    assert result.exit_code == 0, text
    assert f"export written to {output}" in text
    assert re.search(r"fp32 .* pass", text) and re.search(r"optimized .* pass", text)
    assert "parity texts:" in text and "parity_sample.jsonl" in text
    report = json.loads((output / "export_report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["fp32", "optimized"]
    assert all(v["provider"] == "CPUExecutionProvider" for v in report["variants"])


def test_export_folder_has_the_layout_optimum_and_tei_load(tiny_export) -> None:  # type: ignore[no-untyped-def]
    """Optimum's ORTModelForSequenceClassification and text-embeddings-inference's ONNX backend
    read `model.onnx` at the folder's root, a Hugging Face config.json (architecture, labels,
    sizes, pad token), the fast tokenizer's tokenizer.json, and the output named `logits`."""
    folder = tiny_export.output_dir
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "Business", "1": "Sci/Tech", "2": "Sports", "3": "World"}
    for key in ("hidden_size", "num_hidden_layers", "max_position_embeddings", "pad_token_id"):
        assert isinstance(config[key], int), key
    assert (folder / "tokenizer.json").is_file() and (folder / "model.onnx").is_file()
    # The max length the model really uses, not the base tokenizer's 512.
    pre = json.loads((folder / "newsclf_preprocessing.json").read_text())
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == pre["max_length"] == 64
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert {i.name for i in graph.input} <= {"input_ids", "attention_mask", "token_type_ids"}
    assert [o.name for o in graph.output] == ["logits"]
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(folder).num_labels == 4
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 64


def test_openvino_variant_is_checked_and_runs_on_openvino(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("openvino")
    result = export_onnx(tiny_run.run_dir, tmp_path / "ov", ExportConfig(variants=["openvino"]))
    checked = {v.variant: v for v in result.variants}
    assert checked["openvino"].passed and checked["openvino"].label_agreement >= 0.99
    assert checked["openvino"].provider.startswith("OpenVINO-CPU-")
    assert checked["openvino"].tolerance is None  # judged on labels, as reduced precision
    manifest = json.loads((result.output_dir / "newsclf_export.json").read_text())
    assert manifest["variants"]["openvino"] == manifest["variants"]["fp32"]  # the same file
    texts = [f"{r['title']} {r['description']}" for r in sample_rows("test.csv")[:40]]
    fp32 = Classifier(result.output_dir, ClassifierConfig(device="cpu", variant="fp32")).predict(
        texts
    )
    auto = Classifier(
        result.output_dir, ClassifierConfig(device="cpu")
    )  # auto prefers openvino where installed
    assert auto.variant == "openvino" and auto.provider.startswith("OpenVINO-CPU-")
    ov = auto.predict(texts)
    assert np.abs(ov.probabilities - fp32.probabilities).max() < 0.05
    assert np.mean(np.array(ov.labels) == np.array(fp32.labels)) >= 0.95
    from newsclf.errors import ProviderError

    with pytest.raises(ProviderError, match="runs on the CPU"):
        Classifier(result.output_dir, ClassifierConfig(device="cuda", variant="openvino"))

    # Several batches go to OpenVINO's streams at once (run_many); each row's result must be
    # what the same compiled model gives batch by batch.
    concurrent = Classifier(
        result.output_dir, ClassifierConfig(device="cpu", variant="openvino", batch_size=4)
    )
    submitted: list[int] = []
    run_many = concurrent.session.run_many
    concurrent.session.run_many = lambda name, batches: (
        submitted.append(len(batches)) or run_many(name, batches)
    )
    in_flight = concurrent.predict(texts)
    # 40 texts, at most 4 per batch (and one padded width per batch), all in one submission.
    batches = concurrent.batches(concurrent.encode(concurrent.prepare(texts)))
    assert submitted == [len(batches)] and len(batches) >= 10
    one_by_one = Classifier(
        result.output_dir, ClassifierConfig(device="cpu", variant="openvino", batch_size=4)
    )
    one_by_one.session.run_many = None  # the batch-by-batch path
    sequential = one_by_one.predict(texts)
    assert np.abs(in_flight.probabilities - sequential.probabilities).max() < 1e-5
    assert in_flight.labels == sequential.labels
