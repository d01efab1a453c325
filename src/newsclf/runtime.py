"""ONNX Runtime sessions whose execution provider is checked, not assumed, and the export folder.

onnxruntime-gpu lists CUDAExecutionProvider as available even where CUDA cannot load; a session
asked for it then comes up on the CPU with only a logged error. So every CUDA session is checked
with `session.get_providers()` after it is created, and a failure is an error or, for
`--device auto`, an announced switch to the CPU, never a silent one.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.config import PREPROCESSING_FILE, PreprocessingConfig
from newsclf.environment import cpu_cores
from newsclf.errors import ModelError, ProviderError

VARIANT_FILES = {
    "fp32": "model.onnx",
    "optimized": "model_optimized.onnx",
    "fp16": "model_fp16.onnx",
    "int8": "model_int8.onnx",
}
MANIFEST_FILE = "newsclf_export.json"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Preference when --variant auto: the fastest variant for each device that the folder holds.
AUTO_VARIANTS = {"cuda": ("fp16", "optimized", "fp32"), "cpu": ("int8", "optimized", "fp32")}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    def load(cls, path: Path) -> ExportFolder:
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: no such export folder. Run: newsclf export --onnx")
        manifest_path = path / MANIFEST_FILE
        required = [MANIFEST_FILE, PREPROCESSING_FILE, "config.json", "tokenizer_config.json"]
        missing = [name for name in required if not (path / name).is_file()]
        if missing:
            raise ModelError(
                f"{path} is not a complete newsclf export: missing {', '.join(missing)}. "
                "Export it again with: newsclf export --onnx"
            )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        variants = {
            name: path / info["file"]
            for name, info in manifest["variants"].items()
            if (path / info["file"]).is_file()
        }
        lost = sorted(set(manifest["variants"]) - set(variants))
        if lost:
            raise ModelError(
                f"{path}: the manifest lists variant(s) {', '.join(lost)} whose file is missing."
            )
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
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
        """The variant's file, after checking it is the very file this export wrote."""
        if variant not in self.variants:
            raise ModelError(
                f"{self.path} has no {variant} variant (it has {', '.join(self.variants)}). "
                f"Export it with: newsclf export --onnx {variant_flag(variant)}"
            )
        file = self.variants[variant]
        expected = self.manifest["variants"][variant]["sha256"]
        if file_sha256(file) != expected:
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


def variant_flag(variant: str) -> str:
    return {"optimized": "--optimize", "fp16": "--fp16", "int8": "--quantize int8"}.get(variant, "")


def session_options(threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One thread per core: more threads than cores only adds contention.
    options.intra_op_num_threads = threads or cpu_cores()
    options.inter_op_num_threads = 1
    # Idle workers that spin take the core that reads, tokenizes and writes between batches:
    # 366-375 rows/s without spinning against 349-359 with it (2 cores, benchmarks/NOTES.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def create_session(model_path: Path, device: str, threads: int | None = None) -> Any:
    """An InferenceSession on `device` ('cpu' or 'cuda'); CUDA is verified after creation."""
    import onnxruntime as ort

    if device == "cpu":
        return ort.InferenceSession(str(model_path), session_options(threads), providers=[CPU])
    if device != "cuda":
        raise ProviderError(f"Unknown device {device!r}; expected auto, cuda or cpu.")
    if CUDA not in ort.get_available_providers():
        raise ProviderError(
            f"This onnxruntime build ({ort.__version__}) has no CUDA provider; "
            "install onnxruntime-gpu (see the README's GPU section)."
        )
    if not cuda_driver_present():
        raise ProviderError("No NVIDIA driver found (libcuda could not be loaded): no CUDA here.")
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # CUDA/cuDNN from the nvidia-* wheels or torch, where installed. It prints what it
        # misses; the provider check below is the real test.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            preload()
    try:
        with quiet_onnxruntime():
            session = ort.InferenceSession(
                str(model_path), session_options(threads), providers=[CUDA, CPU]
            )
    except Exception as exc:
        raise ProviderError(f"The CUDA provider failed to create a session: {exc}") from exc
    providers = session.get_providers()
    if not providers or providers[0] != CUDA:
        raise ProviderError(
            "onnxruntime lists the CUDA provider but the session came up on "
            f"{', '.join(providers) or 'nothing'}: the CUDA 12/13 or cuDNN 9 libraries did not "
            "load. See the README's GPU section; pass --device cpu to run on the CPU."
        )
    return session


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """Silence ONNX Runtime's own log (a failing CUDA provider logs errors): newsclf checks
    the outcome itself and reports it."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


def cuda_driver_present() -> bool:
    """Whether an NVIDIA GPU and its driver are here; without them no CUDA provider can work.
    (A CUDA toolkit alone ships a stub libcuda, hence the device check on Linux.)"""
    if sys.platform.startswith("linux") and not (
        Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))
    ):
        return False
    try:
        ctypes.CDLL("libcuda.so.1" if sys.platform != "win32" else "nvcuda.dll")
    except OSError:
        return False
    return True


def run_logits(session: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    logits = session.run(["logits"], feeds)[0]
    return logits.astype(np.float32, copy=False)
