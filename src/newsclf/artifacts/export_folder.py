"""The export folder format: what `newsclf export --onnx` writes and everything else reads.

model.onnx and the other variants' files      named by the variant registry (`variants.py`)
config.json, tokenizer files                 a standard Hugging Face folder: Optimum and
                                              text-embeddings-inference load it as it is
newsclf_preprocessing.json                    text cleaning and tokenization settings
newsclf_export.json                           the manifest: labels, inputs, variant checksums, the
                                              calibration temperature (absent: uncalibrated)
export_report.json                            the parity and calibration figures
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsclf.artifacts.model_files import (
    TOKENIZER_FILE,
    label_names_of,
    load_checked_tokenizer,
    read_model_config,
)
from newsclf.artifacts.preprocessing import PREPROCESSING_FILE, PreprocessingConfig
from newsclf.artifacts.variants import VARIANTS
from newsclf.errors import ModelError

MANIFEST_FILE = "newsclf_export.json"
REPORT_FILE = "export_report.json"
_REQUIRED = (
    MANIFEST_FILE,
    PREPROCESSING_FILE,
    "config.json",
    "tokenizer_config.json",
    TOKENIZER_FILE,
)
# The inputs a newsclf graph may take.
_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(
    folder: Path,
    label_names: list[str],
    input_names: list[str],
    source: Path,
    files: dict[str, Path],
    calibration: dict[str, Any] | None = None,
) -> Path:
    """The manifest of an export being written in `folder`: every variant with its checksum,
    and the confidence calibration (`calibration["temperature"]`: what classify divides the
    logits by) when there is one."""
    variants: dict[str, dict[str, str]] = {}
    for variant, path in files.items():
        variants[variant] = {"file": path.name, "sha256": file_sha256(path)}
        data_file = VARIANTS[variant].data_file
        if data_file is not None:  # OpenVINO IR: its weights are in the .bin beside it
            weights = path.with_name(data_file)
            variants[variant] |= {"data_file": weights.name, "data_sha256": file_sha256(weights)}
    manifest = {
        "label_names": label_names,
        "input_names": input_names,
        "source_checkpoint": str(Path(source).resolve()),
        "variants": variants,
    }
    if calibration is not None:
        manifest["calibration"] = calibration
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
    elif not set(manifest["input_names"]) <= _INPUTS or "input_ids" not in manifest["input_names"]:
        problem = f"input_names {manifest['input_names']} are not a text classifier's"
    elif not isinstance(variants, dict) or not variants:
        problem = "no variants"
    elif "calibration" in manifest and not _valid_temperature(manifest["calibration"]):
        problem = "its calibration has no positive, finite temperature"
    else:
        for name, info in variants.items():
            spec = VARIANTS.get(name)
            if spec is None:
                problem = f"unknown variant {name!r}"
            elif not isinstance(info, dict) or not {"file", "sha256"} <= set(info):
                problem = f"variant {name!r} lacks its file or sha256"
            elif info["file"] != spec.file:
                problem = f"variant {name!r} names the file {info['file']!r}, not {spec.file}"
            elif spec.data_file is not None and (
                info.get("data_file") != spec.data_file or "data_sha256" not in info
            ):
                problem = f"variant {name!r} lacks its weights file {spec.data_file}"
            if problem:
                break
    if problem:
        raise ModelError(f"{path} is not a valid newsclf manifest: {problem}. Export again.")
    return manifest


def _valid_temperature(calibration: Any) -> bool:
    if not isinstance(calibration, dict):
        return False
    value = calibration.get("temperature")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class DamagedVariant:
    """A variant whose file is missing or is not the file the export wrote."""

    variant: str
    file: Path
    problem: str

    def message(self) -> str:
        return f"{self.file} ({self.variant} variant) {self.problem}; export again."


@dataclass
class ExportFolder:
    """A self-contained export: ONNX variants, tokenizer, label map, preprocessing, manifest."""

    path: Path
    preprocessing: PreprocessingConfig
    label_names: list[str]
    input_names: list[str]
    variants: dict[str, Path]
    manifest: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = field(default=None, repr=False)
    # Checksums computed so far, so that no file is read twice.
    _digests: dict[Path, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> ExportFolder:
        """Read and check an export folder (its variants' files are checked by `verify` and
        `damaged_variants`).

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
        config = read_model_config(path)
        label_names = label_names_of(config, path)
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
            tokenizer=load_checked_tokenizer(path, config.get("vocab_size")),
        )

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The manifest's calibration (temperature, rows fitted on, where they came from), or
        None for an uncalibrated export (and exports written before newsclf calibrated)."""
        calibration = self.manifest.get("calibration")
        return dict(calibration) if calibration is not None else None

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax: the fitted temperature, 1.0 when
        the export is uncalibrated."""
        calibration = self.calibration
        return float(calibration["temperature"]) if calibration is not None else 1.0

    def verify(self, variant: str) -> Path:
        """The variant's file, after checking it is the very file this export wrote.

        Raises:
            ModelError: the folder lacks the variant, or its file is missing, its checksum
                differs, or (ONNX) it is not a graph of this model.
        """
        if variant not in self.variants:
            raise ModelError(
                f"{self.path} has no {variant} variant (it has {', '.join(self.variants)}). "
                f"Export it with: newsclf export --onnx {VARIANTS[variant].flag}"
            )
        damage = self._damage(variant)
        if damage is not None:
            raise ModelError(damage.message())
        file = self.variants[variant]
        if file.suffix == ".onnx":  # OpenVINO checks its own IR as it reads it
            check_graph(file, self.input_names, len(self.label_names))
        return file

    def damaged_variants(self) -> list[DamagedVariant]:
        """Every variant, used or not, whose file (or weights file) is missing or differs from
        the checksum the manifest recorded: `verify` refuses the one in use; the others are
        worth a warning."""
        found = [self._damage(variant) for variant in self.variants]
        return [d for d in found if d is not None]

    def _damage(self, variant: str) -> DamagedVariant | None:
        info = self.manifest["variants"][variant]
        checked = [(self.path / info["file"], info["sha256"])]
        if "data_file" in info:
            checked.append((self.path / info["data_file"], info["data_sha256"]))
        for path, sha256 in checked:
            if not path.is_file():
                return DamagedVariant(variant, path, "is missing")
            if path not in self._digests:
                self._digests[path] = file_sha256(path)
            if self._digests[path] != sha256:
                return DamagedVariant(
                    variant,
                    path,
                    f"is not the file this export wrote (its checksum differs from "
                    f"{MANIFEST_FILE}): it comes from another model or was modified",
                )
        return None

    def load_tokenizer(self) -> Any:
        """The export's tokenizer (checked against the model when the folder was loaded)."""
        return self.tokenizer


def check_graph(file: Path, input_names: list[str], classes: int) -> None:
    """The graph is one newsclf writes: it parses, its weights are inside it (external data
    could point anywhere on disk), it takes the manifest's inputs and outputs `logits` of one
    score per class.

    Raises:
        ModelError: it is not.
    """
    import onnx

    try:
        model = onnx.load(str(file), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{file} is not a readable ONNX graph ({exc}). Export again.") from None
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        raise ModelError(
            f"{file} keeps weights in external files; newsclf exports keep them inside the graph."
        )
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if sorted(inputs) != sorted(input_names):
        raise ModelError(
            f"{file} takes inputs {inputs}, the manifest says {input_names}. Export again."
        )
    outputs = {o.name: o for o in graph.output}
    if "logits" not in outputs:
        raise ModelError(f"{file}: the graph has no 'logits' output. Export again.")
    dims = outputs["logits"].type.tensor_type.shape.dim
    width = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    if width is not None and width != classes:
        raise ModelError(
            f"{file} outputs {width} classes but config.json names {classes}; the folder "
            "mixes files of different models."
        )
