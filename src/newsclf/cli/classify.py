"""`newsclf classify`: options -> the configs -> the local or the Ray engine -> the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from newsclf.cli.console import console
from newsclf.cli.options import changed, plain, refuse, values, with_options
from newsclf.inference import REVIEW, ClassifierConfig, ClassifyConfig, ClassifyResult
from newsclf.integrations.ray import RayConfig
from newsclf.options import option_specs

Engine = Literal["local", "ray"]
FILE_OPTIONS = option_specs(ClassifyConfig)
RUNTIME_OPTIONS = option_specs(ClassifierConfig)
RAY_OPTIONS = option_specs(RayConfig)
REPORTS = "Reports"


@with_options([*FILE_OPTIONS, *RUNTIME_OPTIONS, *RAY_OPTIONS])
def classify(
    context: typer.Context,
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="CSV, TSV, JSONL or Parquet file, or - for stdin (sniffed). With --engine ray "
            "also a folder, a glob or a URL (s3://, gs://, ...).",
        ),
    ],
    model: Annotated[
        Path | None, typer.Option(help="Export folder. Default: the newest models/*/onnx.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Output file (format by extension), or -. Default: <input>.predictions.<ext>. "
            "With --engine ray, DIR/ writes Ray's part files (fast, in Ray's block order).",
            rich_help_panel="Input and output",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write the report as JSON here.", rich_help_panel=REPORTS),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option(
            help="Write a confusion-matrix PNG into this folder.", rich_help_panel=REPORTS
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            help=plain(
                "Write a self-contained HTML report here (summary, metrics, confusion heat map, "
                "confidence histogram, reliability diagram, coverage / accuracy, confused pairs "
                "with examples; needs matplotlib: pip install 'newsclf[plots]')."
            ),
            rich_help_panel=REPORTS,
        ),
    ] = None,
    review_output: Annotated[
        str | None,
        typer.Option(
            help="Also write the rows under --min-confidence to this file (format by "
            "extension, the output's columns).",
            rich_help_panel=REVIEW,
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help=plain("local: this process. ray: Ray Data actors (pip install 'newsclf[ray]')."),
            rich_help_panel="Ray (--engine ray)",
        ),
    ] = "local",
    **options: Any,
) -> None:
    """Classify a file through ONNX Runtime (or OpenVINO, the openvino variant); with labels,
    print an evaluation report."""
    from newsclf.artifacts import latest_export
    from newsclf.cli.plots import require_matplotlib, write_confusion_png
    from newsclf.cli.progress import RowProgress
    from newsclf.cli.render import classify_summary, evaluation_summary, ray_workers_table
    from newsclf.io import check_target, write_json_atomic

    config = ClassifyConfig(**values(options, FILE_OPTIONS))
    runtime = ClassifierConfig(**values(options, RUNTIME_OPTIONS))
    if review_output is not None and config.min_confidence is None:
        refuse(["--review-output"], "it holds the rows under --min-confidence; give that too.")
    # Where the reports go is checked before the work, not after it.
    if report is not None:
        check_target(report)
    if plots is not None:
        require_matplotlib()
        check_target(plots, directory=True)
    if html is not None:
        require_matplotlib("--html")
        check_target(html)
    if review_output is not None:
        check_target(review_output)
    if engine == "ray":
        from newsclf.integrations.ray import classify_with_ray

        ray = RayConfig(**values(options, RAY_OPTIONS))
        with RowProgress(console) as progress:
            result: ClassifyResult = classify_with_ray(
                input,
                model or latest_export(),
                runtime,
                config,
                ray,
                output=output,
                review_output=review_output,
                progress=progress.update,
            )
        console.print(classify_summary(result))
        console.print(ray_workers_table(result))  # type: ignore[arg-type]
    else:
        refuse(changed(context, options, RAY_OPTIONS), "Ray's options; add --engine ray.")
        result = _classify_locally(input, model, output, review_output, config, runtime)
    if result.metrics is not None:
        console.print(evaluation_summary(result))
    if report is not None:
        write_json_atomic(report, result.to_report())
        console.print(f"report written to {report}", markup=False, highlight=False)
    if plots is not None and result.metrics is not None:
        png = write_confusion_png(plots, result.metrics)
        console.print(f"confusion matrix plot written to {png}", markup=False, highlight=False)
    if result.review_output is not None:
        console.print(
            f"{result.review_rows:,} rows to review written to {result.review_output}",
            markup=False,
            highlight=False,
        )
    if html is not None:
        from newsclf.cli.html_report import write_html_report

        write_html_report(html, result)
        console.print(f"HTML report written to {html}", markup=False, highlight=False)


def _classify_locally(
    input: str,
    model: Path | None,
    output: str | None,
    review_output: str | None,
    config: ClassifyConfig,
    runtime: ClassifierConfig,
) -> ClassifyResult:
    """The local engine: one process, one ONNX Runtime (or OpenVINO) session."""
    from rich.text import Text

    from newsclf.artifacts import latest_export
    from newsclf.cli.progress import RowProgress
    from newsclf.cli.render import classifier_notes, classify_summary
    from newsclf.inference import Classifier, classify_file

    classifier = Classifier(model or latest_export(), runtime)
    console.print(
        Text.assemble(
            f"model {classifier.folder.path}: variant ",
            (classifier.variant, "bold"),
            " on ",
            (classifier.provider, "bold"),
            f" (device {classifier.device})",
        )
    )
    console.print(classifier_notes(classifier))
    with RowProgress(console) as progress:
        result = classify_file(
            input,
            classifier,
            config,
            output=output,
            review_output=review_output,
            progress=progress.update,
        )
    console.print(classify_summary(result))
    return result
