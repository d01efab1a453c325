"""`newsclf export --onnx`: options -> ExportConfig -> export_onnx -> the parity table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from newsclf.cli.console import console
from newsclf.cli.options import values, with_options
from newsclf.errors import InputError
from newsclf.export import ExportConfig
from newsclf.options import option_specs

EXPORT_OPTIONS = option_specs(ExportConfig)


def _retired(flag: str) -> Any:
    return typer.Option(flag, hidden=True, help="Retired: use --variants.")


@with_options(EXPORT_OPTIONS)
def export(
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format).")] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Run folder or its best/ folder. Default: the newest run in models/."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Export folder. Default: RUN_DIR/onnx.")
    ] = None,
    # The variant flags of newsclf 0.3, which --variants replaced: refused, naming what to use.
    optimize: Annotated[bool, _retired("--optimize")] = False,
    fp16: Annotated[bool, _retired("--fp16")] = False,
    quantize: Annotated[str | None, _retired("--quantize")] = None,
    openvino: Annotated[bool, _retired("--openvino")] = False,
    openvino_int8: Annotated[bool, _retired("--openvino-int8")] = False,
    **options: Any,
) -> None:
    """Export a checkpoint to ONNX and prove it matches PyTorch (fails if it does not)."""
    from newsclf.artifacts import latest_run
    from newsclf.cli.render import export_table
    from newsclf.export import export_onnx

    if not onnx:
        raise InputError("Say which format: newsclf export --onnx (the only one supported).")
    retired = {
        "--optimize": ("optimized", optimize),
        "--fp16": ("fp16", fp16),
        "--quantize": ("int8", quantize is not None),
        "--openvino": ("openvino", openvino),
        "--openvino-int8": ("openvino-int8", openvino_int8),
    }
    given = {flag: variant for flag, (variant, used) in retired.items() if used}
    if given:
        raise InputError(
            f"{', '.join(given)}: retired, replaced by --variants. A plain "
            "newsclf export --onnx makes the variants --variant auto picks (fp16 for CUDA and "
            "the fastest CPU variant); add to them with --variants "
            f"{','.join('+' + v for v in given.values())}, or give the whole list: --variants "
            f"{','.join(given.values())}."
        )
    config = ExportConfig(**values(options, EXPORT_OPTIONS))
    with console.status("exporting and checking parity..."):
        result = export_onnx(checkpoint or latest_run(), output, config)
    console.print(export_table(result))
    console.print(f"export written to {result.output_dir}", markup=False, highlight=False)
