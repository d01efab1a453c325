"""What machine and library versions a figure was measured with: the CPU and its features, the
NVIDIA GPUs and driver, the versions of the libraries that compute the figures."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tokenizers",
    "nanotoken",
    "numpy",
    "openvino",
    "nncf",
)

# The CPU features that decide which variant runs fastest: AVX-512 and its int8 dot products
# (VNNI), bf16 (AVX512-BF16, AMX), AMX's int8 tiles. /proc/cpuinfo flag -> name.
CPU_FEATURES = {
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}
# Older kernels spell some flags without the underscore.
_FLAG_SPELLINGS = {"avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}
_NVIDIA_PROC = Path("/proc/driver/nvidia")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool]:
    """Which of `CPU_FEATURES` the CPU has (all False where /proc/cpuinfo cannot be read)."""
    flags: set[str] = set()
    try:
        with open(cpuinfo, encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    flags |= {_FLAG_SPELLINGS[f] for f in flags if f in _FLAG_SPELLINGS}
    return {name: flag in flags for flag, name in CPU_FEATURES.items()}


def logical_cpus() -> int:
    return os.cpu_count() or 1


def nvidia_driver_version(proc: Path = _NVIDIA_PROC) -> str | None:
    """The NVIDIA kernel driver's version (from /proc, no nvidia-smi), None without one."""
    try:
        text = (proc / "version").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return found.group(1) if found else text.splitlines()[0].strip() if text else None


def nvidia_gpus(proc: Path = _NVIDIA_PROC) -> list[str]:
    """The NVIDIA GPUs the driver sees, by model name (from /proc; empty without a driver)."""
    names = []
    for information in sorted((proc / "gpus").glob("*/information")):
        try:
            for line in information.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def cpu_cores() -> int:
    """Cores this process may use (respects affinity masks and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "newsclf": _version("newsclf")}
    for name in _PACKAGES:
        version = _version(name)
        if version != "not installed":
            versions[name] = version
    return versions


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        return None
    return None


def machine_summary() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "versions": package_versions(),
    }
