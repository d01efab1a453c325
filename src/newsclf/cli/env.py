"""`newsclf env`: the versions, CPU, GPU and CUDA facts of this machine (and, with --model, what
--variant auto would run here and why), as a block to paste into a bug report or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def env(
    model: Annotated[
        Path | None,
        typer.Option(
            help="An export folder: say which variant --variant auto would run here, and why."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Print the environment for a bug report: versions, CPU features, GPU and driver, whether
    ONNX Runtime really runs on CUDA here (if not, why)."""
    from newsclf.cli.render import environment_text
    from newsclf.inference import describe_environment

    report = describe_environment(model)
    # The report is the command's output: stdout, so that it can be redirected or piped.
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else environment_text(report))
