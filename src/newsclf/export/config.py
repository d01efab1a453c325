"""`newsclf export --onnx`: which variants to write and the parity rules they must pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from newsclf.artifacts import VARIANTS, check_variants_request
from newsclf.errors import InputError
from newsclf.inference import Device
from newsclf.options import check_choice, check_positive, jsonable, option

VARIANTS_PANEL = "Variants"
PARITY = "Parity check"


def _variant_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


@dataclass
class ExportConfig:
    """The variants an export writes beside the fp32 graph, and how each is checked."""

    # Empty: the defaults (fp16 for CUDA and the fastest batch-invariant CPU variant whose
    # packages are installed: the variants --variant auto would pick). The names and what each
    # variant is come from the registry, newsclf.artifacts.VARIANTS.
    variants: list[str] = option(
        default_factory=list,
        help=f"Variants beside the fp32 graph ({', '.join(n for n in VARIANTS if n != 'fp32')}), "
        "comma-separated: the whole list (optimized,int8), or changes to the defaults "
        "(+int8,-fp16). Default: fp16 for CUDA and the fastest CPU variant that gives a row "
        "the same label in any batch (openvino-int8 where OpenVINO is installed).",
        panel=VARIANTS_PANEL,
        cli_type=str | None,
        parse=_variant_list,
    )
    calibration_file: Path | None = option(
        None,
        help="Texts to calibrate openvino-int8 on (training rows, never test rows). Default: "
        "the run's calibration sample.",
        panel=VARIANTS_PANEL,
    )
    opset: int = option(18, help="ONNX opset.", panel=VARIANTS_PANEL)
    # Texts for the parity check; None: the run's validation sample (parity_sample.jsonl).
    parity_file: Path | None = option(
        None,
        help="Texts for the parity check. Default: the run's validation sample.",
        panel=PARITY,
    )
    # Where parity runs: auto checks each variant on the device it is made for (fp16: CUDA)
    # when that device works, else on the CPU.
    device: Device = option(
        "auto",
        help="Where parity runs: cpu, cuda, or auto (fp16 on CUDA when it works, the rest on "
        "the CPU).",
        panel=PARITY,
    )
    # fp32 export must match PyTorch this closely (max |logit difference|) with identical labels.
    fp32_tolerance: float = option(
        1e-4,
        help="Max |logit difference| allowed for the fp32 and optimized graphs.",
        flag="--tolerance",
        panel=PARITY,
    )
    # Variants held to labels (fp16, int8, the OpenVINO ones) must agree with PyTorch on this
    # share of the parity texts.
    min_label_agreement: float = option(0.99, help="Label agreement required.", cli=False)
    parity_rows: int = option(256, help="Parity texts used at most.", cli=False)
    parity_batch_sizes: tuple[int, ...] = option((1, 17), help="Batch sizes.", cli=False)

    def __post_init__(self) -> None:
        self.variants = _variant_list(self.variants)
        check_variants_request(self.variants)
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
