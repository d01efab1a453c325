"""What `newsclf env` reports: the library versions, the CPU and its features, the GPU, whether an
ONNX Runtime session really comes up on CUDA (and if not, why), and, for an export folder, which
variant `--variant auto` would run here and why. Never imports torch (its version comes from
the package metadata, whose local part says its build: +cpu, +cu130)."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from newsclf.artifacts import AutoChoice, ExportFolder, choose_auto
from newsclf.environment import (
    cpu_cores,
    cpu_features,
    cpu_model,
    logical_cpus,
    nvidia_driver_version,
    nvidia_gpus,
)
from newsclf.inference.sessions import CudaProbe, probe_cuda

# The packages a report names, installed or not.
REPORTED_PACKAGES = (
    "newsclf",
    "torch",
    "transformers",
    "tokenizers",
    "nanotoken",
    "onnx",
    "onnxruntime-gpu",
    "onnxruntime",
    "openvino",
    "nncf",
    "numpy",
)


@dataclass(frozen=True)
class ModelReport:
    """An export folder seen from this machine: its variants, the one `--variant auto` would
    run on the device that works here and why, and its damaged files."""

    path: str
    variants: list[str]
    choice: AutoChoice
    damaged: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "variants": self.variants,
            "auto": self.choice.to_dict(),
            "hint": self.choice.hint(),
            "damaged": self.damaged,
        }


@dataclass(frozen=True)
class EnvironmentReport:
    """The facts a bug report needs, gathered without side effects."""

    platform: str
    python: str
    versions: dict[str, str | None]  # None: not installed
    onnxruntime_providers: list[str]
    cpu: str
    cores: int  # usable by this process
    logical_cpus: int
    cpu_features: dict[str, bool]
    gpus: list[str]
    nvidia_driver: str | None
    cuda: CudaProbe
    model: ModelReport | None = None

    @property
    def device(self) -> str:
        """Where `--device auto` runs here."""
        return "cuda" if self.cuda.works else "cpu"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["device"] = self.device
        data["cuda"] = self.cuda.to_dict()
        data["model"] = self.model.to_dict() if self.model is not None else None
        return data


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe_environment(model: str | Path | None = None) -> EnvironmentReport:
    """Gather the versions, CPU, GPU and CUDA facts of this machine and, with `model`, what
    `--variant auto` would do with that export here.

    Args:
        model: an export folder (`newsclf export --onnx`), or None.

    Returns:
        `EnvironmentReport`.

    Raises:
        ModelError: `model` is not a readable export folder.
    """
    import onnxruntime as ort

    cuda = probe_cuda()
    device = "cuda" if cuda.works else "cpu"
    model_report = None
    if model is not None:
        folder = ExportFolder.load(model)
        model_report = ModelReport(
            path=str(folder.path),
            variants=list(folder.variants),
            choice=choose_auto(device, folder.variants),
            damaged=[d.message() for d in folder.damaged_variants()],
        )
    return EnvironmentReport(
        platform=platform.platform(),
        python=platform.python_version(),
        versions={name: _version(name) for name in REPORTED_PACKAGES},
        onnxruntime_providers=list(ort.get_available_providers()),
        cpu=cpu_model(),
        cores=cpu_cores(),
        logical_cpus=logical_cpus(),
        cpu_features=cpu_features(),
        gpus=nvidia_gpus(),
        nvidia_driver=nvidia_driver_version(),
        cuda=cuda,
        model=model_report,
    )
