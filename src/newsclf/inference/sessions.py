"""ONNX Runtime sessions whose execution provider is checked, not assumed.

onnxruntime-gpu lists CUDAExecutionProvider as available even where CUDA cannot load; a session
asked for it then comes up on the CPU with only a logged error. So every CUDA session is checked
with `session.get_providers()` after it is created. `open_session` holds the one rule for
`--device auto`: CUDA when it really works, else the CPU with the reason said out loud, never a
silent switch; `--device cuda` without a working CUDA is an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.environment import cpu_cores
from newsclf.errors import ModelError, ProviderError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINO"  # the `openvino` variant's runtime (OpenVINO's own, not an ORT provider)

# ONNX Runtime's CUDA provider options for every CUDA session, in one place. Its attention
# kernels are chosen by `sdpa_kernel`, a bit mask (1 flash, 2 memory-efficient, 4 TensorRT
# fused, 8 cuDNN, 16 math; unset: ONNX Runtime's own choice), and apply to graphs whose
# attention is one fused op; newsclf's graphs run it as MatMul and Softmax. Left at ONNX
# Runtime's defaults until the attention table of `python -m benchmarks.gpu_run` measures a
# faster setting (docs/gpu.md).
CUDA_PROVIDER_OPTIONS: dict[str, str] = {}

# The shared libraries ONNX Runtime's CUDA provider loads, by the CUDA major version its build
# targets (docs/gpu.md): the ones named when a CUDA session does not come up.
CUDA_LIBRARIES = {
    "13": (
        "libcudart.so.13",
        "libcublasLt.so.13",
        "libcublas.so.13",
        "libcurand.so.10",
        "libcufft.so.12",
        "libnvrtc.so.13",
        "libcudnn.so.9",
    ),
    "12": (
        "libcudart.so.12",
        "libcublasLt.so.12",
        "libcublas.so.12",
        "libcurand.so.10",
        "libcufft.so.11",
        "libnvrtc.so.12",
        "libcudnn.so.9",
    ),
}


@dataclass
class OpenedSession:
    """A session, the device and provider it really runs on, and why `auto` left CUDA."""

    session: Any
    device: str
    provider: str
    model_path: Path
    fallback_reason: str | None = None


def session_options(threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One thread per core: more threads than cores only adds contention.
    options.intra_op_num_threads = threads or cpu_cores()
    options.inter_op_num_threads = 1
    # Idle workers that spin take the core that reads, tokenizes and writes between batches
    # (benchmarks/NOTES.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def create_session(
    model_path: Path | bytes, device: str, threads: int | None = None, *, exact_fp32: bool = False
) -> Any:
    """An InferenceSession on `device` ('cpu' or 'cuda') of a graph file (or a serialized
    graph); CUDA is verified after creation. `exact_fp32` turns TF32 off on CUDA (Ampere and
    later round fp32 matrix inputs to 10 bits with it), for checks that hold fp32 to a 1e-4
    tolerance.

    Raises:
        ProviderError: CUDA was asked for and does not really work here.
    """
    import onnxruntime as ort

    model = model_path if isinstance(model_path, bytes) else str(model_path)
    if device == "cpu":
        try:
            return ort.InferenceSession(model, session_options(threads), providers=[CPU])
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"{model_path}: ONNX Runtime cannot load it ({exc}).") from None
    if device != "cuda":
        raise ProviderError(f"Unknown device {device!r}; expected cuda or cpu.")
    if CUDA not in ort.get_available_providers():
        raise ProviderError(
            f"This onnxruntime build ({ort.__version__}) has no CUDA provider; "
            "install onnxruntime-gpu (see docs/gpu.md)."
        )
    if not cuda_driver_present():
        raise ProviderError("No NVIDIA driver found (libcuda could not be loaded): no CUDA here.")
    preload_cuda_libraries()
    try:
        with quiet_onnxruntime():
            cuda_options = CUDA_PROVIDER_OPTIONS | ({"use_tf32": "0"} if exact_fp32 else {})
            session = ort.InferenceSession(
                model, session_options(threads), providers=[(CUDA, cuda_options), CPU]
            )
    except Exception as exc:
        raise ProviderError(f"The CUDA provider failed to create a session: {exc}") from exc
    providers = session.get_providers()
    if not providers or providers[0] != CUDA:
        missing = missing_cuda_libraries()
        which = (
            f"{', '.join(missing)} could not be loaded"
            if missing
            else f"the CUDA {ort_cuda_version() or '12/13'} or cuDNN 9 libraries did not load"
        )
        raise ProviderError(
            "onnxruntime lists the CUDA provider but the session came up on "
            f"{', '.join(providers) or 'nothing'}: {which}. See docs/gpu.md; pass --device cpu "
            "to run on the CPU."
        )
    return session


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels or torch, where installed
    (`onnxruntime.preload_dlls`). It prints what it misses; the provider check after a session
    is created is the real test."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            preload()


def ort_cuda_version() -> str | None:
    """The CUDA version this onnxruntime build targets ("13.0"), None for a CPU-only build."""
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return getattr(build_and_package_info, "cuda_version", None) or None


def missing_cuda_libraries() -> list[str]:
    """The libraries of `CUDA_LIBRARIES` for this onnxruntime build that cannot be loaded here
    (after `preload_cuda_libraries`, which loads those pip installed). Linux only: elsewhere,
    and for a CPU-only build, an empty list."""
    version = ort_cuda_version()
    if not sys.platform.startswith("linux") or version is None:
        return []
    missing = []
    for library in CUDA_LIBRARIES.get(version.split(".")[0], ()):
        try:
            ctypes.CDLL(library)
        except OSError:
            missing.append(library)
    return missing


@dataclass(frozen=True)
class CudaProbe:
    """Whether an ONNX Runtime session really comes up on CUDA here, and if not, why."""

    works: bool
    driver: bool  # an NVIDIA GPU and its driver are present
    provider_built: bool  # this onnxruntime build has the CUDA provider
    cuda_version: str | None  # the CUDA version the onnxruntime build targets
    missing_libraries: list[str]
    reason: str | None  # why not, when it does not work

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_cuda() -> CudaProbe:
    """Create a session of a tiny in-memory graph on the CUDA provider and check which provider
    it really runs on (`create_session`'s check); on failure, the reason and the CUDA
    libraries that do not load."""
    import onnxruntime as ort

    built = CUDA in ort.get_available_providers()
    driver = cuda_driver_present()
    reason = None
    try:
        create_session(_probe_graph(), "cuda", 1)
    except ProviderError as exc:
        reason = str(exc)
    missing = missing_cuda_libraries() if reason and built and driver else []
    return CudaProbe(
        works=reason is None,
        driver=driver,
        provider_built=built,
        cuda_version=ort_cuda_version(),
        missing_libraries=missing,
        reason=reason,
    )


def _probe_graph() -> bytes:
    """A one-node graph (a MatMul of a 4x4 input by 4x4 weights), serialized."""
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 4], [1.0] * 16)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "newsclf-cuda-probe",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def open_session(
    model_for: Callable[[str], Path],
    device: str,
    threads: int | None = None,
    *,
    exact_fp32: bool = False,
    openvino_on_cpu: bool = False,
) -> OpenedSession:
    """A session for the file `model_for(device)` picks, on `device` ('auto', 'cuda', 'cpu').

    `auto` tries CUDA wherever an NVIDIA driver is present and, when CUDA does not work there,
    opens the CPU session and says why in `fallback_reason`. Without a GPU, `auto` is the CPU.
    `openvino_on_cpu` runs the CPU's file on OpenVINO (`OpenVinoSession`) instead of ONNX
    Runtime.

    Raises:
        ProviderError: `cuda` was asked for and does not work, or `device` is unknown.
    """
    if device not in ("auto", "cuda", "cpu"):
        raise ProviderError(f"--device must be auto, cuda or cpu, not {device!r}.")
    reason = None
    if device == "cuda" or (device == "auto" and cuda_driver_present()):
        path = model_for("cuda")
        try:
            session = create_session(path, "cuda", threads, exact_fp32=exact_fp32)
            return OpenedSession(session, "cuda", CUDA, path)
        except ProviderError as exc:
            if device == "cuda":
                raise
            reason = f"--device auto chose the CPU: {exc}"
    path = model_for("cpu")
    if openvino_on_cpu:
        session = OpenVinoSession(path, threads)
        return OpenedSession(session, "cpu", session.provider, path, reason)
    return OpenedSession(create_session(path, "cpu", threads), "cpu", CPU, path, reason)


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


@dataclass(frozen=True)
class _Port:
    name: str
    shape: list[Any]


class OpenVinoSession:
    """An OpenVINO variant compiled for the CPU (newsclf's fp32 `model.onnx`, or the static int8
    IR `model_openvino_int8.xml`), behind the few methods of an ONNX Runtime session that
    newsclf uses. OpenVINO picks the CPU's fastest precision for what is not int8 (bf16 with
    AMX or AVX512-BF16, else fp32); the provider name says which. It comes from the `openvino`
    package, which installs beside onnxruntime-gpu (ONNX Runtime's own OpenVINO provider is a
    separate onnxruntime build that would replace it)."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ProviderError(
                "The OpenVINO variants need OpenVINO: pip install 'newsclf[openvino]'."
            ) from None
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except Exception as exc:  # OpenVINO's own exception types
            raise ModelError(f"{model_path}: OpenVINO cannot read it ({exc}).") from None
        # Throughput mode: the cores are split into streams, each running its own batch. Small
        # models on few cores scale poorly within one batch, so several batches in flight at
        # once are faster (`run_many`; benchmarks/NOTES.md). A lone batch runs on one stream.
        self._compiled = core.compile_model(
            model,
            "CPU",
            {"INFERENCE_NUM_THREADS": threads or cpu_cores(), "PERFORMANCE_HINT": "THROUGHPUT"},
        )
        self._request = self._compiled.create_infer_request()
        self._queue: Any = None
        self._async_queue_type = ov.AsyncInferQueue
        self.streams = int(self._compiled.get_property("NUM_STREAMS"))
        precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        # An NNCF int8 IR runs its quantized MatMuls in int8 and the rest at the hint's
        # precision: name both, so that the report says what really ran.
        if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
            precision = f"int8+{precision}"
        self.provider = f"{OPENVINO}-CPU-{precision}"
        self._inputs = [_Port(i.get_any_name(), []) for i in self._compiled.inputs]
        self._outputs = [
            _Port(
                o.get_any_name(),
                [d.get_length() if d.is_static else None for d in o.get_partial_shape()],
            )
            for o in self._compiled.outputs
        ]

    def get_providers(self) -> list[str]:
        return [self.provider]

    def get_inputs(self) -> list[_Port]:
        return self._inputs

    def get_outputs(self) -> list[_Port]:
        return self._outputs

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self._request.infer(feeds)
        names = output_names or [o.name for o in self._outputs]
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [np.asarray(by_name[name]) for name in names]

    def run_many(
        self, output_name: str, batches: Sequence[dict[str, np.ndarray]]
    ) -> list[tuple[np.ndarray, float]]:
        """One output for each batch of feeds, with its seconds from submission to result;
        the batches run concurrently, one per stream."""
        if self._queue is None:
            jobs = self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            self._queue = self._async_queue_type(self._compiled, jobs)
        results: list[tuple[np.ndarray, float] | None] = [None] * len(batches)
        submitted = [0.0] * len(batches)

        def done(request: Any, index: int) -> None:
            output = request.get_tensor(output_name).data.copy()
            results[index] = (output, time.perf_counter() - submitted[index])

        self._queue.set_callback(done)
        for index, feeds in enumerate(batches):
            submitted[index] = time.perf_counter()
            self._queue.start_async(feeds, index)
        self._queue.wait_all()
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise ProviderError(f"OpenVINO returned no result for {len(missing)} batch(es).")
        return results  # type: ignore[return-value]


def run_logits(session: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    logits = session.run(["logits"], feeds)[0]
    return logits.astype(np.float32, copy=False)
