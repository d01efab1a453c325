"""newsclf env: the block for a bug report and its JSON, on this machine (a GPU-less one says so
and exits 0); the /proc readings it is made of; naming the CUDA library that does not load."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import newsclf.inference.sessions as sessions
from newsclf.cli import app
from newsclf.environment import cpu_features, nvidia_driver_version, nvidia_gpus
from newsclf.inference import cuda_driver_present, missing_cuda_libraries, probe_cuda


def test_env_prints_a_block_for_a_bug_report_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["env"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    for line in ("- newsclf: ", "- Python: ", "- torch: ", "- transformers: ", "- openvino: "):
        assert line in text
    assert "providers: " in text and "CPUExecutionProvider" in text
    assert "AVX-512 " in text and "AMX " in text
    if not cuda_driver_present():  # a machine without a GPU says so, and is not an error
        assert "driver: no NVIDIA driver" in text
        assert "- ONNX Runtime on CUDA: no: " in text
        assert "- --device auto runs on: cpu" in text


def test_env_json_has_the_same_facts() -> None:
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["python"] and report["versions"]["newsclf"]
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    assert set(report["cpu_features"]) >= {"AVX-512", "AVX512-VNNI", "AMX"}
    assert report["cuda"]["works"] is (report["device"] == "cuda")
    if not cuda_driver_present():
        assert report["nvidia_driver"] is None and report["cuda"]["driver"] is False
        assert "No NVIDIA driver" in report["cuda"]["reason"]
    assert report["model"] is None


def test_env_with_an_export_says_what_auto_would_run_here_and_why(tiny_export) -> None:  # type: ignore[no-untyped-def]
    if cuda_driver_present():
        pytest.skip("the CPU's choice is checked here")
    folder = str(tiny_export.output_dir)
    result = CliRunner().invoke(app, ["env", "--model", folder, "--json"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.output)["model"]
    assert sorted(model["variants"]) == ["fp32", "int8", "optimized"]
    verdicts = {c["variant"]: c["verdict"] for c in model["auto"]["candidates"]}
    assert model["auto"]["variant"] == "optimized" and verdicts["optimized"] == "picked"
    assert verdicts["int8"] == "not batch-invariant"
    assert verdicts["openvino-int8"] == "not in the export"
    assert "--variants +openvino-int8" in model["hint"] and model["damaged"] == []

    text = CliRunner().invoke(app, ["env", "--model", folder], env={"COLUMNS": "200"}).output
    assert "- --variant auto here (cpu): optimized" in text
    assert "int8: not batch-invariant" in text

    missing = CliRunner().invoke(
        app, ["env", "--model", str(Path(folder) / "nothing")], env={"COLUMNS": "200"}
    )
    assert missing.exit_code == 3 and "no such export folder" in " ".join(missing.output.split())


def test_cpu_features_and_the_nvidia_driver_are_read_from_proc(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "model name\t: Some Xeon\nflags\t\t: fpu sse avx2 avx512f avx512vnni amx_tile amx_int8\n"
    )
    assert cpu_features(cpuinfo) == {
        "AVX-512": True,
        "AVX512-VNNI": True,  # the older kernels' spelling
        "AVX512-BF16": False,
        "AMX": True,
        "AMX-BF16": False,
        "AMX-INT8": True,
    }
    proc = tmp_path / "nvidia"
    assert nvidia_driver_version(proc) is None and nvidia_gpus(proc) == []
    (proc / "gpus" / "0000:00:05.0").mkdir(parents=True)
    (proc / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build\n"
        "GCC version:  gcc version 12.2.0\n"
    )
    (proc / "gpus" / "0000:00:05.0" / "information").write_text(
        "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 42\n"
    )
    assert nvidia_driver_version(proc) == "580.95.05"
    assert nvidia_gpus(proc) == ["NVIDIA H100 80GB HBM3"]


def test_the_missing_cuda_library_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "ort_cuda_version", lambda: "13.0")
    monkeypatch.setattr(sessions.sys, "platform", "linux")

    def load(name: str) -> None:
        if name == "libcudnn.so.9":
            raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", load)
    assert missing_cuda_libraries() == ["libcudnn.so.9"]


def test_the_cuda_probe_says_why_cuda_does_not_work_here() -> None:
    probe = probe_cuda()
    if cuda_driver_present():
        pytest.skip("a machine with an NVIDIA driver")
    assert probe.works is False and probe.driver is False
    assert probe.reason is not None and (
        "No NVIDIA driver" in probe.reason or "no CUDA provider" in probe.reason
    )
