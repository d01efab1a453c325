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
    **options: Any,
) -> None:
    """Export a checkpoint to ONNX and prove it matches PyTorch (fails if it does not)."""
    from newsclf.artifacts import latest_run
    from newsclf.cli.render import export_table
    from newsclf.export import export_onnx

    if not onnx:
        raise InputError("Say which format: newsclf export --onnx (the only one supported).")
    config = ExportConfig(**values(options, EXPORT_OPTIONS))
    with console.status("exporting and checking parity..."):
        result = export_onnx(checkpoint or latest_run(), output, config)
    console.print(export_table(result))
    console.print(f"export written to {result.output_dir}", markup=False, highlight=False)
