"""`newsclf export --onnx`: which variants to write and the parity rules they must pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from newsclf.errors import InputError
from newsclf.inference import Device
from newsclf.options import check_choice, check_positive, jsonable, option

Quantize = Literal["int8"]

VARIANTS = "Variants"
PARITY = "Parity check"


@dataclass
class ExportConfig:
    """The variants an export writes beside the fp32 graph, and how each is checked."""

    optimize: bool = option(
        False, help="Add ONNX Runtime's fused-graph variant.", flag="--optimize", panel=VARIANTS
    )
    fp16: bool = option(
        False, help="Add an fp16 variant (for CUDA).", flag="--fp16", panel=VARIANTS
    )
    quantize: Quantize | None = option(
        None, help="Add a quantized variant: int8 (dynamic, for the CPU).", panel=VARIANTS
    )
    # The fp32 graph on OpenVINO (bf16 on CPUs that have it), checked like fp16 and int8.
    openvino: bool = option(
        False,
        help="Add the openvino variant (the fp32 graph on OpenVINO, CPU).",
        flag="--openvino",
        panel=VARIANTS,
    )
    # Static int8 on OpenVINO, calibrated on training rows: batch-invariant labels.
    openvino_int8: bool = option(
        False,
        help="Add the openvino-int8 variant (static int8 on OpenVINO, calibrated on training "
        "rows; the same label for a row whatever its batch; CPU).",
        flag="--openvino-int8",
        panel=VARIANTS,
    )
    calibration_file: Path | None = option(
        None,
        help="Texts to calibrate openvino-int8 on (training rows, never test rows). Default: "
        "the run's calibration sample.",
        panel=VARIANTS,
    )
    opset: int = option(18, help="ONNX opset.", panel=VARIANTS)
    # Texts for the parity check; None: the run's validation sample (parity_sample.jsonl).
    parity_file: Path | None = option(
        None,
        help="Texts for the parity check. Default: the run's validation sample.",
        panel=PARITY,
    )
    # Where parity runs: auto checks fp16 on CUDA when CUDA works, everything else on the CPU.
    device: Device = option(
        "auto", help="Where parity runs: cpu, cuda, or auto (fp16 on CUDA).", panel=PARITY
    )
    # fp32 export must match PyTorch this closely (max |logit difference|) with identical labels.
    fp32_tolerance: float = option(
        1e-4,
        help="Max |logit difference| allowed for the fp32 and optimized graphs.",
        flag="--tolerance",
        panel=PARITY,
    )
    # Reduced-precision variants (fp16, int8, openvino) must agree with PyTorch on this share.
    min_label_agreement: float = option(0.99, help="Label agreement required.", cli=False)
    parity_rows: int = option(256, help="Parity texts used at most.", cli=False)
    parity_batch_sizes: tuple[int, ...] = option((1, 17), help="Batch sizes.", cli=False)

    def __post_init__(self) -> None:
        if self.quantize is not None:
            check_choice("--quantize", self.quantize, Quantize)
        check_choice("--device", self.device, Device)
        check_positive("--opset", self.opset)
        check_positive("--tolerance", self.fp32_tolerance)
        check_positive("parity_rows", self.parity_rows)
        if not 0 < self.min_label_agreement <= 1:
            raise InputError(
                f"min_label_agreement must be in (0, 1], not {self.min_label_agreement}."
            )
        if self.parity_file is not None:
            self.parity_file = Path(self.parity_file)
        if self.calibration_file is not None:
            self.calibration_file = Path(self.calibration_file)
        self.parity_batch_sizes = tuple(self.parity_batch_sizes)
        if not any(b > 1 for b in self.parity_batch_sizes):
            raise InputError("parity_batch_sizes needs one batch size above 1.")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))
