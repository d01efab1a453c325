"""The export folder format: what `newsclf export --onnx` writes and everything else reads.

model.onnx, model_optimized.onnx, model_fp16.onnx, model_int8.onnx   variants (some)
config.json, tokenizer files                 a standard Hugging Face folder: Optimum and
                                              text-embeddings-inference load it as it is
newsclf_preprocessing.json                    text cleaning and tokenization settings
newsclf_export.json                           the manifest: labels, inputs, variant checksums
export_report.json                            the parity figures
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsclf.artifacts.preprocessing import PREPROCESSING_FILE, PreprocessingConfig
from newsclf.errors import ModelError

VARIANT_FILES = {
    "fp32": "model.onnx",
    "optimized": "model_optimized.onnx",
    "fp16": "model_fp16.onnx",
    "int8": "model_int8.onnx",
    # The fp32 file, run by OpenVINO: a variant of its own because it is checked on its own.
    "openvino": "model.onnx",
}
MANIFEST_FILE = "newsclf_export.json"
REPORT_FILE = "export_report.json"
_REQUIRED = (MANIFEST_FILE, PREPROCESSING_FILE, "config.json", "tokenizer_config.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def variant_flag(variant: str) -> str:
    """The export option that adds `variant`."""
    flags = {"optimized": "--optimize", "fp16": "--fp16", "int8": "--quantize int8"}
    return flags.get(variant, f"--{variant}" if variant != "fp32" else "")


def write_manifest(
    folder: Path,
    label_names: list[str],
    input_names: list[str],
    source: Path,
    files: dict[str, Path],
) -> Path:
    """The manifest of an export being written in `folder`: every variant with its checksum."""
    manifest = {
        "label_names": label_names,
        "input_names": input_names,
        "source_checkpoint": str(Path(source).resolve()),
        "variants": {
            variant: {"file": path.name, "sha256": file_sha256(path)}
            for variant, path in files.items()
        },
    }
    from newsclf.io import write_json_atomic

    return write_json_atomic(Path(folder) / MANIFEST_FILE, manifest)


def is_export(folder: Path) -> bool:
    return (Path(folder) / MANIFEST_FILE).is_file()


def latest_export(models_dir: Path = Path("models")) -> Path:
    """The newest models/*/onnx export folder."""
    exports = [p.parent for p in Path(models_dir).glob(f"*/onnx/{MANIFEST_FILE}")]
    if not exports:
        raise ModelError(
            f"No export under {models_dir}/*/onnx; pass --model or run: newsclf export --onnx"
        )
    return max(exports, key=lambda p: (p / MANIFEST_FILE).stat().st_mtime)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}); export the model again.") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(data).__name__}.")
    return data


def _checked_manifest(path: Path) -> dict[str, Any]:
    manifest = _read_json(path)
    problem = None
    variants = manifest.get("variants")
    if not isinstance(manifest.get("label_names"), list):
        problem = "no list of label_names"
    elif not isinstance(manifest.get("input_names"), list):
        problem = "no list of input_names"
    elif not isinstance(variants, dict) or not variants:
        problem = "no variants"
    else:
        for name, info in variants.items():
            if name not in VARIANT_FILES:
                problem = f"unknown variant {name!r}"
            elif not isinstance(info, dict) or not {"file", "sha256"} <= set(info):
                problem = f"variant {name!r} lacks its file or sha256"
            elif Path(str(info["file"])).name != info["file"]:
                problem = f"variant {name!r} names a file outside the folder"
            if problem:
                break
    if problem:
        raise ModelError(f"{path} is not a valid newsclf manifest: {problem}. Export again.")
    return manifest


@dataclass
class ExportFolder:
    """A self-contained export: ONNX variants, tokenizer, label map, preprocessing, manifest."""

    path: Path
    preprocessing: PreprocessingConfig
    label_names: list[str]
    input_names: list[str]
    variants: dict[str, Path]
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ExportFolder:
        """Read and check an export folder.

        Raises:
            ModelError: the folder is missing, incomplete, or mixes files of different models.
        """
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: no such export folder. Run: newsclf export --onnx")
        missing = [name for name in _REQUIRED if not (path / name).is_file()]
        if missing:
            raise ModelError(
                f"{path} is not a complete newsclf export: missing {', '.join(missing)}. "
                "Export it again with: newsclf export --onnx"
            )
        manifest = _checked_manifest(path / MANIFEST_FILE)
        variants = {name: path / info["file"] for name, info in manifest["variants"].items()}
        lost = sorted(name for name, file in variants.items() if not file.is_file())
        if lost:
            raise ModelError(
                f"{path}: the manifest lists variant(s) {', '.join(lost)} whose file is missing."
            )
        id2label = _read_json(path / "config.json").get("id2label") or {}
        label_names = [id2label[k] for k in sorted(id2label, key=int)]
        if label_names != manifest["label_names"]:
            raise ModelError(
                f"{path}: config.json's labels {label_names} differ from the export manifest's "
                f"{manifest['label_names']}; the folder mixes files of different models."
            )
        return cls(
            path=path,
            preprocessing=PreprocessingConfig.load(path),
            label_names=label_names,
            input_names=list(manifest["input_names"]),
            variants=variants,
            manifest=manifest,
        )

    def verify(self, variant: str) -> Path:
        """The variant's file, after checking it is the very file this export wrote.

        Raises:
            ModelError: the folder lacks the variant, or its file's checksum differs.
        """
        if variant not in self.variants:
            raise ModelError(
                f"{self.path} has no {variant} variant (it has {', '.join(self.variants)}). "
                f"Export it with: newsclf export --onnx {variant_flag(variant)}"
            )
        file = self.variants[variant]
        if file_sha256(file) != self.manifest["variants"][variant]["sha256"]:
            raise ModelError(
                f"{file} is not the file this export wrote (its checksum differs from "
                f"{MANIFEST_FILE}); it comes from another model or was modified. Export again."
            )
        return file

    def load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(
                str(self.path), local_files_only=True, trust_remote_code=False
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"{self.path}: cannot load the tokenizer ({exc}).") from exc
