"""The command line: parse options, call the library, render what it returns.

Errors raised by the library (`NewsclfError`) become a red message and the error's exit code
here, and only here.
"""

from __future__ import annotations

import functools
import inspect
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from newsclf.config import (
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    ClassifierConfig,
    ClassifyConfig,
    Device,
    Engine,
    ExportConfig,
    Metric,
    OnError,
    Precision,
    PreprocessingConfig,
    Quantize,
    RayConfig,
    Sampler,
    TableFormat,
    TrainingConfig,
    Variant,
)
from newsclf.errors import InputError, NewsclfError

if TYPE_CHECKING:
    from newsclf.classify import ClassifyResult

app = typer.Typer(
    name="newsclf",
    help="Fine-tune BERT on news topics, export to ONNX with proven parity, classify files fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

_TRAIN = TrainingConfig()
_PRE = PreprocessingConfig()
_EXPORT = ExportConfig()
_CLASSIFIER = ClassifierConfig()
_CLASSIFY = ClassifyConfig()
_RAY = RayConfig()


@app.callback()
def _root() -> None:
    """newsclf: train, export --onnx, classify."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def handle_errors(command: F) -> F:
    """Turn library errors into a message and an exit code, at the CLI edge only."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # A plain `kill` must clean up like Ctrl-C: temporary outputs are removed on the way out.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return command(*args, **kwargs)
        except NewsclfError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: no output was finalised.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@handle_errors
def train(
    model: Annotated[
        str, typer.Option(help="Hub id, local Hugging Face folder, or 'embedded' (offline MiniLM).")
    ] = DEFAULT_MODEL,
    dataset: Annotated[
        str, typer.Option(help="Hub dataset, used when no --train-file is given.")
    ] = DEFAULT_DATASET,
    train_file: Annotated[
        Path | None, typer.Option(help="Local training data: CSV, TSV, JSONL or Parquet.")
    ] = None,
    validation_file: Annotated[
        Path | None, typer.Option(help="Validation data; default: a stratified share of train.")
    ] = None,
    test_file: Annotated[
        Path | None, typer.Option(help="Test data, used only for the final report.")
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            help="Text column, or several joined by a space ('title,description'). "
            "Default: 'text', else 'title'+'description'."
        ),
    ] = None,
    label_column: Annotated[str, typer.Option(help="Label column: class names or integers.")] = (
        _PRE.label_column
    ),
    output_dir: Annotated[
        Path | None, typer.Option(help="Run directory. Default: models/<timestamp>-<model>.")
    ] = None,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = _TRAIN.epochs,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = (
        _TRAIN.learning_rate
    ),
    batch_size: Annotated[int, typer.Option(help="Train batch size per step.")] = _TRAIN.batch_size,
    eval_batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = (
        _TRAIN.eval_batch_size
    ),
    grad_accum: Annotated[
        int, typer.Option(help="Gradient accumulation steps.")
    ] = _TRAIN.grad_accum,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = _TRAIN.weight_decay,
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps for linear warm-up.")] = (
        _TRAIN.warmup_ratio
    ),
    patience: Annotated[
        int, typer.Option(help="Early stopping: evaluations without improvement before stopping.")
    ] = _TRAIN.patience,
    eval_steps: Annotated[
        int, typer.Option(help="Evaluate and checkpoint every N optimizer steps; 0 = every epoch.")
    ] = _TRAIN.eval_steps,
    metric: Annotated[
        Metric, typer.Option(help="Validation metric for early stopping and the best checkpoint.")
    ] = _TRAIN.metric,
    max_length: Annotated[int, typer.Option(help="Max tokens per text (longer are truncated).")] = (
        _PRE.max_length
    ),
    seed: Annotated[
        int, typer.Option(help="Random seed (data split, shuffling, init).")
    ] = _TRAIN.seed,
    train_seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of data order and dropout only (default: --seed). Runs differing only "
            "in it share the validation split and initial weights: ingredients for a soup."
        ),
    ] = None,
    validation_fraction: Annotated[
        float, typer.Option(help="Share of train carved out as validation when none is given.")
    ] = _TRAIN.validation_fraction,
    max_train_samples: Annotated[
        int | None, typer.Option(help="Use at most this many training rows.")
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(help="auto: bf16 where native, fp16 on older GPUs, else fp32."),
    ] = _TRAIN.precision,
    clean: Annotated[
        bool, typer.Option(help="Clean text (HTML entities, backslashes, control chars, spaces).")
    ] = _PRE.clean,
    group_by_length: Annotated[
        bool, typer.Option(help="Batch rows of similar length together (less padding).")
    ] = _TRAIN.group_by_length,
    layer_decay: Annotated[
        float,
        typer.Option(
            help="Layer-wise learning-rate decay: each layer below the head trains at this "
            "factor times the rate of the layer above (1 = off)."
        ),
    ] = _TRAIN.layer_decay,
    average_last: Annotated[
        int,
        typer.Option(
            help="Average the weights of the last N evaluations (0 = off); kept only if it "
            "scores at least as well on validation as the best checkpoint."
        ),
    ] = _TRAIN.average_last,
    rdrop: Annotated[
        float,
        typer.Option(
            help="R-Drop: weight of the agreement between two dropout passes of each batch "
            "(0 = off; about twice the compute per step)."
        ),
    ] = _TRAIN.rdrop,
    mlm_epochs: Annotated[
        float,
        typer.Option(
            help="Within-task pre-training: epochs of masked-LM training on the training "
            "rows' texts (never validation or test) before fine-tuning (0 = off)."
        ),
    ] = _TRAIN.mlm_epochs,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the interrupted run in --output-dir from its last checkpoint."),
    ] = False,
) -> None:
    """Fine-tune a classifier with the recipe; writes best/, metrics.json and a model card."""
    from newsclf.progress import TrainingProgress
    from newsclf.render import training_plan, training_summary
    from newsclf.text import parse_text_columns
    from newsclf.training import NewsTrainer

    if resume:
        if output_dir is None:
            raise InputError("--resume needs --output-dir: the run to continue.")
        trainer = NewsTrainer.resume(output_dir)
        console.print("Resuming with the run's saved configuration (other options are ignored).")
    else:
        config = TrainingConfig(
            model=model,
            dataset=dataset,
            train_file=train_file,
            validation_file=validation_file,
            test_file=test_file,
            output_dir=output_dir,
            learning_rate=learning_rate,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            epochs=epochs,
            weight_decay=weight_decay,
            grad_accum=grad_accum,
            warmup_ratio=warmup_ratio,
            patience=patience,
            eval_steps=eval_steps,
            metric=metric,
            validation_fraction=validation_fraction,
            seed=seed,
            train_seed=train_seed,
            max_train_samples=max_train_samples,
            precision=precision,
            group_by_length=group_by_length,
            layer_decay=layer_decay,
            average_last=average_last,
            rdrop=rdrop,
            mlm_epochs=mlm_epochs,
            preprocessing=PreprocessingConfig(
                clean=clean,
                max_length=max_length,
                text_columns=parse_text_columns(text_column),
                label_column=label_column,
            ),
        )
        trainer = NewsTrainer(config)
    cfg = trainer.config
    if not trainer.is_main:  # under torchrun / accelerate launch, rank 0 alone prints
        trainer.train()
        return
    samples_per_step = cfg.batch_size * cfg.grad_accum * trainer.world_size
    trainer.callbacks.append(TrainingProgress(console, samples_per_step, metric=cfg.metric))
    trainer.pretraining_callbacks.append(
        TrainingProgress(
            console,
            cfg.batch_size * trainer.world_size,
            metric=cfg.metric,
            label="masked LM",
            evaluations=False,
        )
    )
    result = trainer.train(on_start=lambda plan: console.print(training_plan(plan)))
    console.print(training_summary(result))


# The options `tune` takes from `train` (same names, help and defaults): the data, the model and
# the part of the recipe that is not searched.
_TUNE_SHARES_WITH_TRAIN = (
    "model",
    "dataset",
    "train_file",
    "validation_file",
    "text_column",
    "label_column",
    "eval_batch_size",
    "grad_accum",
    "patience",
    "eval_steps",
    "metric",
    "max_length",
    "seed",
    "train_seed",
    "validation_fraction",
    "max_train_samples",
    "precision",
    "clean",
    "group_by_length",
    "layer_decay",
    "average_last",
    "rdrop",
    "mlm_epochs",
)


def _with_options_of(source: Callable[..., Any], names: tuple[str, ...]) -> Callable[[F], F]:
    """Give a command the options `names` of command `source`, which it receives in its
    `**kwargs`: declared once, shown and parsed identically by both commands."""

    def decorate(command: F) -> F:
        theirs = inspect.signature(source, eval_str=True).parameters
        own = inspect.signature(command, eval_str=True).parameters
        params = [theirs[name] for name in names]
        params += [p for p in own.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


@app.command()
@handle_errors
@_with_options_of(train, _TUNE_SHARES_WITH_TRAIN)
def tune(
    test_file: Annotated[
        Path | None,
        typer.Option(help="Test data for --train-best's report only; the search never reads it."),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            help="Run directory: the study goes to RUN/tune, --train-best trains into RUN. "
            "Default: models/<timestamp>-<model>."
        ),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            help="Trials the study should hold (complete or pruned; --resume counts "
            "the earlier ones)."
        ),
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option(help="Start no new trial after this many seconds.")
    ] = None,
    sampler: Annotated[
        Sampler, typer.Option(help="tpe (Bayesian), random, or grid (--grid-points per range).")
    ] = "tpe",
    lr_range: Annotated[
        tuple[float, float], typer.Option(help="Learning rate LOW HIGH, log-uniform.")
    ] = (1e-5, 1e-4),
    batch_sizes: Annotated[
        str, typer.Option(help="Batch sizes to choose from, comma-separated.")
    ] = "16,32,64",
    epochs_range: Annotated[tuple[int, int], typer.Option(help="Epochs LOW HIGH, integers.")] = (
        2,
        5,
    ),
    weight_decay_range: Annotated[
        tuple[float, float], typer.Option(help="Weight decay LOW HIGH, uniform.")
    ] = (0.0, 0.1),
    warmup_range: Annotated[
        tuple[float, float], typer.Option(help="Warm-up ratio LOW HIGH, uniform.")
    ] = (0.0, 0.1),
    fix: Annotated[
        list[str] | None,
        typer.Option(
            help="Fix a parameter instead of searching it: NAME=VALUE, repeatable (e.g. "
            "learning_rate=5e-5). A range with LOW = HIGH or one batch size fixes it too."
        ),
    ] = None,
    grid_points: Annotated[
        int, typer.Option(help="Grid sampler: values per continuous range.")
    ] = 3,
    pruning: Annotated[
        bool, typer.Option(help="Stop trials whose validation metric is below the median.")
    ] = True,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the search in --output-dir with its saved settings (--trials and "
            "--timeout still apply)."
        ),
    ] = False,
    train_best: Annotated[
        bool,
        typer.Option(help="Then train the best recipe on all training rows into the run dir."),
    ] = False,
    **shared: Any,
) -> None:
    """Search learning rate, batch size, epochs, weight decay and warm-up with Optuna on the
    validation metric (carved from train); the test data is never seen by the search."""
    from newsclf.progress import TrainingProgress, TuneProgress
    from newsclf.render import training_plan, training_summary, tune_summary
    from newsclf.training import NewsTrainer
    from newsclf.tuning import TUNE_CONFIG_FILE, TUNE_DIR, TuneConfig
    from newsclf.tuning import tune as run_search

    if resume:
        if output_dir is None:
            raise InputError("--resume needs --output-dir: the run whose search to continue.")
        saved = TuneConfig.load(output_dir / TUNE_DIR / TUNE_CONFIG_FILE)
        config = TuneConfig(
            **{
                **saved.__dict__,
                "training": saved.training.replace(output_dir=output_dir),
                "trials": trials,
                "timeout": timeout,
                "resume": True,
            }
        )
        console.print("Resuming with the search's saved settings (--trials and --timeout apply).")
    else:
        config = TuneConfig(
            training=_training_config(test_file=test_file, output_dir=output_dir, **shared),
            trials=trials,
            timeout=timeout,
            sampler=sampler,
            learning_rate=lr_range,
            batch_size=tuple(_parse_ints("--batch-sizes", batch_sizes)),
            epochs=epochs_range,
            weight_decay=weight_decay_range,
            warmup_ratio=warmup_range,
            fixed=_parse_fixed(fix or []),
            grid_points=grid_points,
            pruning=pruning,
        )
    if train_best and (config.run_dir / "best").exists():
        raise InputError(
            f"--train-best: {config.run_dir} already holds a finished run; choose another "
            "--output-dir."
        )
    console.print(
        f"[bold]newsclf tune[/] {config.training.model}: {config.trials} trials "
        f"({config.sampler}), maximising validation {config.training.metric}; searching "
        f"{', '.join(config.searched()) or 'nothing'}; study in {config.tune_dir}"
    )
    with TuneProgress(console, config.training.metric, config.searched()) as progress:
        result = run_search(config, on_trial=progress.update)
    console.print(tune_summary(result))
    console.print(result.train_command, soft_wrap=True, highlight=False, markup=False)
    if train_best:
        trainer = NewsTrainer(result.train_config)
        cfg = trainer.config
        trainer.callbacks.append(
            TrainingProgress(console, cfg.batch_size * cfg.grad_accum, metric=cfg.metric)
        )
        trainer.pretraining_callbacks.append(
            TrainingProgress(
                console, cfg.batch_size, metric=cfg.metric, label="masked LM", evaluations=False
            )
        )
        trained = trainer.train(on_start=lambda plan: console.print(training_plan(plan)))
        console.print(training_summary(trained))


def _training_config(**options: Any) -> TrainingConfig:
    """A TrainingConfig from `train`'s option names (the recipe defaults for those absent)."""
    from newsclf.text import parse_text_columns

    preprocessing = PreprocessingConfig(
        clean=options.pop("clean"),
        max_length=options.pop("max_length"),
        text_columns=parse_text_columns(options.pop("text_column")),
        label_column=options.pop("label_column"),
    )
    return TrainingConfig(**options, preprocessing=preprocessing)


def _parse_ints(flag: str, text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{flag} takes integers separated by commas, not {text!r}.") from None


def _parse_fixed(items: list[str]) -> dict[str, float]:
    fixed: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        try:
            fixed[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--fix takes NAME=VALUE (e.g. learning_rate=5e-5), not {item!r}.")
    return fixed


@app.command()
@handle_errors
def soup(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders trained from the same model on the same data and validation split."
        ),
    ],
    output_dir: Annotated[Path, typer.Option(help="The soup's run folder (new or empty).")],
    greedy: Annotated[
        bool,
        typer.Option(
            help="Take each run only if it helps on validation, best first, instead of "
            "averaging them all (needs a validation split large enough to rank runs)."
        ),
    ] = False,
    ensemble: Annotated[
        bool,
        typer.Option(
            help="Keep every run and average their predictions (one forward pass per run and "
            "row) instead of their weights."
        ),
    ] = False,
    test_file: Annotated[
        Path | None, typer.Option(help="Test data, used only for the final report.")
    ] = None,
) -> None:
    """Average the best weights of several runs (a model soup) or, with --ensemble, their
    predictions; the result is a run folder that `export` takes."""
    from newsclf.render import soup_summary
    from newsclf.soup import make_soup

    console.print(f"[bold]newsclf soup[/] of {len(runs)} runs: scoring each on validation")
    result = make_soup(runs, output_dir, greedy=greedy, ensemble=ensemble, test_file=test_file)
    console.print(soup_summary(result))


@app.command()
@handle_errors
def export(
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format).")] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Run folder or its best/ folder. Default: the newest run in models/."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Export folder. Default: RUN_DIR/onnx.")
    ] = None,
    optimize: Annotated[
        bool, typer.Option("--optimize", help="Add ONNX Runtime's fused-graph variant.")
    ] = _EXPORT.optimize,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Add an fp16 variant (for CUDA).")
    ] = _EXPORT.fp16,
    quantize: Annotated[
        Quantize | None, typer.Option(help="Add a quantized variant: int8 (dynamic, for the CPU).")
    ] = _EXPORT.quantize,
    openvino: Annotated[
        bool,
        typer.Option(
            "--openvino", help="Add the openvino variant (the fp32 graph on OpenVINO, CPU)."
        ),
    ] = _EXPORT.openvino,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = _EXPORT.opset,
    parity_file: Annotated[
        Path | None,
        typer.Option(help="Texts for the parity check. Default: the run's validation sample."),
    ] = None,
    device: Annotated[
        Device, typer.Option(help="Where parity runs: cpu, cuda, or auto (fp16 on CUDA).")
    ] = _EXPORT.device,
    tolerance: Annotated[
        float, typer.Option(help="Max |logit difference| allowed for the fp32 export.")
    ] = _EXPORT.fp32_tolerance,
) -> None:
    """Export a checkpoint to ONNX and prove it matches PyTorch (fails if it does not)."""
    from newsclf.export import export_onnx
    from newsclf.render import export_table
    from newsclf.runs import latest_run

    if not onnx:
        raise InputError("Say which format: newsclf export --onnx (the only one supported).")
    config = ExportConfig(
        optimize=optimize,
        fp16=fp16,
        quantize=quantize,
        openvino=openvino,
        opset=opset,
        parity_file=parity_file,
        device=device,
        fp32_tolerance=tolerance,
    )
    with console.status("exporting and checking parity..."):
        result = export_onnx(checkpoint or latest_run(), output, config)
    console.print(export_table(result))
    console.print(f"[bold green]export written[/] to {result.output_dir}")


@app.command()
@handle_errors
def classify(
    input: Annotated[
        str,
        typer.Argument(
            help="CSV, TSV, JSONL or Parquet file, or - for stdin (sniffed). With --engine ray "
            "also a folder, a glob or a URL (s3://, gs://, ...)."
        ),
    ],
    model: Annotated[
        Path | None, typer.Option(help="Export folder. Default: the newest models/*/onnx.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Output file (format by extension), or -. Default: <input>.predictions.<ext>. "
            "With --engine ray, DIR/ writes Ray's part files (fast, in Ray's block order)."
        ),
    ] = None,
    format: Annotated[
        TableFormat | None,
        typer.Option(help="Input format (default: from the extension; sniffed on stdin)."),
    ] = _CLASSIFY.format,
    text_column: Annotated[
        str | None,
        typer.Option(help="Text column(s), comma-separated. Default: as the model was trained."),
    ] = None,
    label_column: Annotated[
        str, typer.Option(help="Label column; when present the run is also an evaluation.")
    ] = _CLASSIFY.label_column,
    device: Annotated[Device, typer.Option(help="Where to run.")] = _CLASSIFIER.device,
    variant: Annotated[
        Variant, typer.Option(help="Model variant; auto: the fastest for the device.")
    ] = _CLASSIFIER.variant,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Rows per inference batch. Default: 32 on the CPU, 1024 on CUDA."),
    ] = _CLASSIFIER.batch_size,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(help="Padded tokens per batch. Default: no cap on the CPU, 65536 on CUDA."),
    ] = _CLASSIFIER.max_batch_tokens,
    chunk_rows: Annotated[
        int, typer.Option(help="Rows read, sorted and written together (bounds memory).")
    ] = _CLASSIFY.chunk_rows,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for inference. Default: one per core.")
    ] = _CLASSIFIER.threads,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Add one probability column per class.")
    ] = _CLASSIFY.probabilities,
    on_error: Annotated[
        OnError, typer.Option(help="Malformed rows: raise (stop) or skip (report their lines).")
    ] = _CLASSIFY.on_error,
    report: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write a confusion-matrix PNG into this folder.")
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="local: this process. ray: Ray Data actors (pip 'newsclf[ray]').")
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option(help="--engine ray: actors. Default: the cluster's CPUs / threads (or GPUs)."),
    ] = _RAY.workers,
    threads_per_worker: Annotated[
        int, typer.Option(help="--engine ray: ONNX Runtime threads (and Ray CPUs) per actor.")
    ] = _RAY.threads_per_worker,
    ray_address: Annotated[
        str | None,
        typer.Option(help="--engine ray: 'auto' or an address joins a cluster; default: new one."),
    ] = _RAY.address,
) -> None:
    """Classify a file through ONNX Runtime (or OpenVINO, the openvino variant); with labels,
    print an evaluation report."""
    from newsclf.atomic import write_json_atomic
    from newsclf.export_folder import latest_export
    from newsclf.plots import write_confusion_png
    from newsclf.progress import RowProgress
    from newsclf.render import classify_summary, evaluation_summary
    from newsclf.text import parse_text_columns

    config = ClassifyConfig(
        format=format,
        text_columns=parse_text_columns(text_column),
        label_column=label_column,
        probabilities=probabilities,
        on_error=on_error,
        chunk_rows=chunk_rows,
    )
    if engine == "ray":
        from newsclf.ray_engine import classify_with_ray
        from newsclf.render import ray_workers_table

        ray_config = RayConfig(workers, threads_per_worker, ray_address)
        classifier_config = ClassifierConfig(device, variant, batch_size, max_batch_tokens)
        with RowProgress(console) as progress:
            result = classify_with_ray(
                input,
                model or latest_export(),
                classifier_config,
                config,
                ray_config,
                output=output,
                progress=progress.update,
            )
        console.print(classify_summary(result))
        console.print(ray_workers_table(result))
    else:
        result = _classify_locally(
            input, model, output, config, device, variant, batch_size, max_batch_tokens, threads
        )
    if result.metrics is not None:
        console.print(evaluation_summary(result))
    if report is not None:
        write_json_atomic(report, result.to_report())
        console.print(f"report written to {report}")
    if plots is not None and result.metrics is not None:
        png = write_confusion_png(plots, result.metrics)
        console.print(f"confusion matrix plot written to {png}")


def _classify_locally(
    input: str,
    model: Path | None,
    output: str | None,
    config: ClassifyConfig,
    device: Device,
    variant: Variant,
    batch_size: int | None,
    max_batch_tokens: int | None,
    threads: int | None,
) -> ClassifyResult:
    """The local engine: one process, one ONNX Runtime session."""
    from newsclf.classifier import Classifier
    from newsclf.classify import classify_file
    from newsclf.export_folder import latest_export
    from newsclf.progress import RowProgress
    from newsclf.render import classify_summary

    classifier = Classifier(
        model or latest_export(),
        device=device,
        variant=variant,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        threads=threads,
    )
    console.print(
        f"model {classifier.folder.path}: variant [bold]{classifier.variant}[/] on "
        f"[bold]{classifier.provider}[/] (device {classifier.device})"
    )
    with RowProgress(console) as progress:
        result = classify_file(input, classifier, config, output=output, progress=progress.update)
    console.print(classify_summary(result))
    return result


def main() -> None:
    app()


if __name__ == "__main__":
    main()
