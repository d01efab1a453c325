"""`newsclf export --onnx`: conversion (`convert`) and validation (`parity`) as separate steps,
the confidence calibration (`calibration`), and `export_onnx`, which writes an export folder
only when every variant matches PyTorch."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "Calibration": "calibration",
        "calibrate": "calibration",
        "calibrate_on_validation": "calibration",
        "fit_temperature": "calibration",
        "expected_calibration_error": "calibration",
        "negative_log_likelihood": "calibration",
        "ECE_BINS": "calibration",
        "ExportConfig": "config",
        "export_fp32": "convert",
        "optimize_graph": "convert",
        "convert_fp16": "convert",
        "quantize_int8": "convert",
        "model_input_names": "convert",
        "INT8_RECIPES": "convert",
        "ConversionJob": "convert",
        "converter_of": "convert",
        "ParityChecker": "parity",
        "VariantParity": "parity",
        "parity_cases": "parity",
        "encode": "parity",
        "export_onnx": "exporter",
        "ExportResult": "exporter",
        "load_checkpoint": "exporter",
        "load_for_export": "exporter",
        "convert_checked": "exporter",
    },
)

if TYPE_CHECKING:
    from newsclf.export.calibration import (
        ECE_BINS,
        Calibration,
        calibrate,
        calibrate_on_validation,
        expected_calibration_error,
        fit_temperature,
        negative_log_likelihood,
    )
    from newsclf.export.config import ExportConfig
    from newsclf.export.convert import (
        INT8_RECIPES,
        ConversionJob,
        convert_fp16,
        converter_of,
        export_fp32,
        model_input_names,
        optimize_graph,
        quantize_int8,
    )
    from newsclf.export.exporter import (
        ExportResult,
        convert_checked,
        export_onnx,
        load_checkpoint,
        load_for_export,
    )
    from newsclf.export.parity import ParityChecker, VariantParity, encode, parity_cases
