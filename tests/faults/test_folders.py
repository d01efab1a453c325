"""Broken and hostile model folders: each is refused before use, with the file named, exit 3,
no traceback and nothing written; none is classified with a quiet wrong answer."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from newsclf.artifacts import ExportFolder
from newsclf.cli import app
from newsclf.errors import ModelError
from tests.conftest import SAMPLE_DIR


def _copy(export_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    return folder


def _edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _reseal(folder: Path, variant: str = "fp32") -> None:
    """Make the manifest's checksum match a file changed on purpose (a damaged or hostile
    file that a checksum alone would let through)."""
    manifest = folder / "newsclf_export.json"
    data = json.loads(manifest.read_text())
    file = folder / data["variants"][variant]["file"]
    data["variants"][variant]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data))


def _classify(folder: Path, tmp_path: Path) -> tuple[int, str, Path]:
    output = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app,
        ["classify", str(SAMPLE_DIR / "test.csv"), "--model", str(folder), "--variant", "fp32",
         "--output", str(output)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    return result.exit_code, " ".join(result.output.split()), output


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no tokenizer.json": (
        lambda f: (f / "tokenizer.json").unlink(),
        "missing tokenizer.json",
    ),
    "tokenizer.json of the wrong shape": (
        lambda f: (f / "tokenizer.json").write_text("[1, 2, 3]"),
        "cannot load the tokenizer",
    ),
    "a non-integer id2label key": (
        lambda f: _edit_json(f / "config.json", lambda c: c["id2label"].update({"x": "Other"})),
        "id2label keys must be class indices",
    ),
    "a preprocessing setting left out": (
        lambda f: _edit_json(f / "newsclf_preprocessing.json", lambda p: p.pop("max_length")),
        "lacks max_length",
    ),
    "a max_length that is not a number": (
        lambda f: _edit_json(
            f / "newsclf_preprocessing.json", lambda p: p.update(max_length="abc")
        ),
        "newsclf_preprocessing.json: max_length must be an integer, not 'abc'",
    ),
    "a max_length that is not positive": (
        lambda f: _edit_json(f / "newsclf_preprocessing.json", lambda p: p.update(max_length=-5)),
        "newsclf_preprocessing.json: max_length must be positive, not -5",
    ),
    "text columns that are not names": (
        lambda f: _edit_json(
            f / "newsclf_preprocessing.json", lambda p: p.update(text_columns=[1])
        ),
        "newsclf_preprocessing.json: text_columns must be a list whose items are each a string",
    ),
    "a variant file the registry does not name": (
        lambda f: _edit_json(
            f / "newsclf_export.json", lambda m: m["variants"]["fp32"].update(file="../x.onnx")
        ),
        "variant 'fp32' names the file '../x.onnx', not model.onnx",
    ),
    "inputs that are not a text classifier's": (
        lambda f: _edit_json(f / "newsclf_export.json", lambda m: m.update(input_names=["x"])),
        "are not a text classifier's",
    ),
    "labels that differ from the graph's": (
        lambda f: _edit_json(
            f / "config.json",
            lambda c: c.update(id2label={"0": "a", "1": "b"}, label2id={"a": 0, "b": 1}),
        ),
        "differ from the export manifest's",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_export_folder_is_refused_naming_what_is_wrong(
    damage: str, tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(tiny_export.output_dir, tmp_path)
    make_damage, message = DAMAGES[damage]
    make_damage(folder)
    code, text, output = _classify(folder, tmp_path)
    assert code == ModelError.exit_code, text
    assert message in text and "Traceback" not in text
    assert not output.exists() and not list(tmp_path.glob(".out.csv*"))
    # A setting read from a file is named by its field, not by an option never typed.
    assert "--max-length" not in text


def _scramble(path: Path) -> None:
    """4 KiB of random bytes where a variant's graph was."""
    path.write_bytes(random.Random(0).randbytes(4096))


def test_a_damaged_variant_file_is_an_error_in_use_and_a_warning_otherwise(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(tiny_export.output_dir, tmp_path)
    _scramble(folder / "model_int8.onnx")  # auto never uses it (dynamic int8)
    output = tmp_path / "auto.csv"
    result = CliRunner().invoke(
        app,
        ["classify", str(SAMPLE_DIR / "test.csv"), "--model", str(folder), "--device", "cpu",
         "--output", str(output)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert "variant optimized" in text and output.is_file()
    assert re.search(r"warning: \S*model_int8\.onnx \(int8 variant\) is not the file", text)

    asked = CliRunner().invoke(
        app,
        ["classify", str(SAMPLE_DIR / "test.csv"), "--model", str(folder), "--variant", "int8",
         "--output", str(tmp_path / "int8.csv")],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    text = " ".join(asked.output.split())
    assert asked.exit_code == ModelError.exit_code, text
    assert "model_int8.onnx (int8 variant) is not the file this export wrote" in text
    assert not (tmp_path / "int8.csv").exists()


def test_every_damaged_or_missing_variant_file_is_reported(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(tiny_export.output_dir, tmp_path)
    _scramble(folder / "model_int8.onnx")
    (folder / "model_optimized.onnx").unlink()
    export = ExportFolder.load(folder)
    damaged = {d.variant: d.problem for d in export.damaged_variants()}
    assert damaged.keys() == {"int8", "optimized"}
    assert damaged["optimized"] == "is missing" and "checksum differs" in damaged["int8"]
    assert export.verify("fp32") == folder / "model.onnx"  # the sound one still runs


def test_a_truncated_graph_whose_checksum_matches_is_refused(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(tiny_export.output_dir, tmp_path)
    graph = folder / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    _reseal(folder)
    code, text, _ = _classify(folder, tmp_path)
    assert code == 3 and "model.onnx is not a readable ONNX graph" in text
    assert "Traceback" not in text


def test_a_graph_reading_weights_from_outside_the_folder_is_refused(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(tiny_export.output_dir, tmp_path)
    graph = folder / "model.onnx"
    model = onnx.load(str(graph))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    onnx.save(model, str(graph))
    _reseal(folder)
    with pytest.raises(ModelError, match="external files"):
        ExportFolder.load(folder).verify("fp32")
    code, text, _ = _classify(folder, tmp_path)
    assert code == 3 and "external files" in text


def test_a_tokenizer_of_another_model_is_refused(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A tokenizer whose vocabulary does not fit the model's embeddings."""
    folder = _copy(tiny_export.output_dir, tmp_path)
    _edit_json(folder / "config.json", lambda c: c.update(vocab_size=c["vocab_size"] * 10))
    code, text, _ = _classify(folder, tmp_path)
    assert code == 3 and "the folder mixes files of different models" in text


@pytest.mark.parametrize("damage", ["no tokenizer.json", "truncated weights"])
def test_a_damaged_run_folder_does_not_export(damage: str, tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    shutil.rmtree(run / "onnx", ignore_errors=True)  # the session's export of the same run
    if damage == "no tokenizer.json":
        (run / "best" / "tokenizer.json").unlink()
        message = "has no tokenizer.json"
    else:
        weights = run / "best" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        message = "Cannot load the checkpoint"
    result = CliRunner().invoke(app, ["export", "--onnx", "--checkpoint", str(run)])
    text = " ".join(result.output.split())
    assert result.exit_code == 3 and message in text and "Traceback" not in text
    assert not (run / "onnx").exists()
