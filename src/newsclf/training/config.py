"""The fine-tuning recipe: every training option, its default and its help, once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from newsclf.artifacts import PreprocessingConfig
from newsclf.errors import InputError
from newsclf.options import (
    OptionSpec,
    check_choice,
    check_positive,
    check_range,
    command_line,
    config_from_dict,
    config_from_file,
    jsonable,
    option,
    option_specs,
    shell_command,
)

DEFAULT_MODEL = "bert-base-uncased"
DEFAULT_DATASET = "fancyzhx/ag_news"
EMBEDDED_MODEL = "embedded"

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Metric = Literal["accuracy", "f1_macro", "f1_weighted"]

DATA = "Data"
MODEL = "Model and output"
RECIPE = "Recipe"
HARDWARE = "Hardware"

# Options of earlier versions that measured no gain and were retired (benchmarks/NOTES.md),
# with the value that meant "off". A saved config that used one cannot be reproduced.
RETIRED = {"layer_decay": 1.0, "average_last": 0, "mlm_epochs": 0.0}


@dataclass
class TrainingConfig:
    """The fine-tuning recipe, the data and the run folder. The defaults are the design's
    recipe for bert-base-uncased on AG News."""

    model: str = option(
        DEFAULT_MODEL,
        help="Hub id, local Hugging Face folder, or 'embedded' (the offline MiniLM).",
        panel=MODEL,
    )
    dataset: str | None = option(
        DEFAULT_DATASET, help="Hub dataset, used when no --train-file is given.", panel=DATA
    )
    train_file: Path | None = option(
        None, help="Local training data: CSV, TSV, JSONL or Parquet.", panel=DATA
    )
    validation_file: Path | None = option(
        None, help="Validation data; default: a stratified share of train.", panel=DATA
    )
    test_file: Path | None = option(
        None, help="Test data, used only for the final report.", panel=DATA
    )
    output_dir: Path | None = option(
        None, help="Run folder. Default: models/<timestamp>-<model>.", panel=MODEL
    )
    learning_rate: float = option(2e-5, help="Peak learning rate (AdamW).", panel=RECIPE)
    batch_size: int = option(64, help="Training rows per step and device.", panel=RECIPE)
    eval_batch_size: int = option(32, help="Evaluation batch size.", panel=RECIPE)
    epochs: float = option(4.0, help="Training epochs.", panel=RECIPE)
    weight_decay: float = option(0.01, help="AdamW weight decay.", panel=RECIPE)
    grad_accum: int = option(
        2,
        help="Gradient accumulation steps (micro-batch losses are averaged); an optimizer step "
        "sees --batch-size x --grad-accum rows.",
        panel=RECIPE,
    )
    warmup_ratio: float = option(0.06, help="Share of steps for linear warm-up.", panel=RECIPE)
    patience: int = option(
        2, help="Early stopping: evaluations without improvement before stopping.", panel=RECIPE
    )
    eval_steps: int = option(
        0, help="Evaluate and checkpoint every N optimizer steps; 0 = every epoch.", panel=RECIPE
    )
    metric: Metric = option(
        "f1_macro",
        help="Validation metric for early stopping and the best checkpoint.",
        panel=RECIPE,
    )
    validation_fraction: float = option(
        0.05,
        help="Share of train carved out as validation when none is given; 0 trains on every "
        "row (no early stopping, the last weights are kept).",
        panel=DATA,
    )
    seed: int = option(
        42, help="Random seed: data split, head initialisation, data order.", panel=RECIPE
    )
    train_seed: int | None = option(
        None,
        help="Seed of data order and dropout only (default: --seed). Runs differing only in it "
        "share the validation split and initial weights: ingredients for a soup.",
        panel=RECIPE,
    )
    max_train_samples: int | None = option(
        None, help="Use at most this many training rows.", panel=DATA
    )
    precision: Precision = option(
        "auto", help="auto: bf16 where native, fp16 on older GPUs, else fp32.", panel=HARDWARE
    )
    group_by_length: bool = option(
        True, help="Batch rows of similar length together (less padding).", panel=HARDWARE
    )
    merge_accumulation: bool = option(
        True,
        help="On a GPU, run a step's --batch-size x --grad-accum rows as one batch if they "
        "fit. GPU memory is probed before training; the update is the same, with fewer kernel "
        "launches.",
        panel=HARDWARE,
    )
    rdrop: float = option(
        0.0,
        help="R-Drop: weight of the agreement between two dropout passes of each batch "
        "(0 = off; about twice the compute per step).",
        panel=RECIPE,
    )
    resume: bool = option(
        False,
        help="Continue the interrupted run in --output-dir from its last checkpoint, with the "
        "configuration it was started with.",
        panel=MODEL,
    )
    preprocessing: PreprocessingConfig = option(
        default_factory=PreprocessingConfig, help="Text preprocessing.", cli=False
    )

    def __post_init__(self) -> None:
        for name in ("train_file", "validation_file", "test_file", "output_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        if isinstance(self.preprocessing, dict):
            self.preprocessing = PreprocessingConfig.from_dict(self.preprocessing, "preprocessing")
        for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum"):
            check_positive(f"--{name.replace('_', '-')}", getattr(self, name))
        check_positive("--max-train-samples", self.max_train_samples, allow_none=True)
        for name in ("learning_rate", "weight_decay", "rdrop"):
            if getattr(self, name) < 0:
                flag = f"--{name.replace('_', '-')}"
                raise InputError(f"{flag} must not be negative, not {getattr(self, name)}.")
        check_range("--warmup-ratio", self.warmup_ratio, 0, 1, high_open=True)
        check_range("--validation-fraction", self.validation_fraction, 0, 1, high_open=True)
        if self.patience < 1:
            raise InputError(f"--patience must be at least 1, not {self.patience}.")
        if self.eval_steps < 0:
            raise InputError(
                f"--eval-steps must be 0 (every epoch) or more, not {self.eval_steps}."
            )
        check_choice("--metric", self.metric, Metric)
        check_choice("--precision", self.precision, Precision)

    @property
    def data_order_seed(self) -> int:
        """The seed of the Trainer: data order and dropout."""
        return self.seed if self.train_seed is None else self.train_seed

    @property
    def has_validation(self) -> bool:
        return self.validation_file is not None or self.validation_fraction > 0

    def replace(self, **changes: Any) -> TrainingConfig:
        return replace(self, **changes)

    # -- on disk (train_config.json) -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = jsonable(asdict(self))
        data["preprocessing"] = self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "training config") -> TrainingConfig:
        """Raises:
        InputError: unknown settings, bad values, or a retired option that was on."""
        raw = dict(raw)
        for name, off in RETIRED.items():
            if name in raw and raw.pop(name) != off:
                raise InputError(
                    f"{where}: this run used --{name.replace('_', '-')}, which newsclf 0.3 "
                    "retired (it measured no gain); retrain without it or use newsclf 0.2."
                )
        return config_from_dict(cls, raw, where)

    def save(self, path: Path) -> Path:
        """Written with absolute paths, so that --resume and soup work from any folder."""
        from newsclf.io import write_json_atomic

        return write_json_atomic(path, self.absolute().to_dict())

    def absolute(self) -> TrainingConfig:
        """The same config with its file and folder paths made absolute."""
        names = ("train_file", "validation_file", "test_file", "output_dir")
        return replace(
            self, **{n: Path(getattr(self, n)).absolute() for n in names if getattr(self, n)}
        )

    @classmethod
    def load(cls, path: Path) -> TrainingConfig:
        """Raises:
        InputError: the file is missing, unreadable or not a training configuration."""
        return config_from_file(cls, path, "the training config")

    # -- on the command line ----------------------------------------------------------------

    @classmethod
    def option_specs(cls, exclude: tuple[str, ...] = ()) -> list[OptionSpec]:
        """Every `newsclf train` option: the recipe's and the preprocessing's."""
        return option_specs(cls, exclude) + option_specs(PreprocessingConfig, exclude)

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> TrainingConfig:
        """A config from command-line values keyed by field name (defaults for those absent)."""
        specs = {s.name: s for s in cls.option_specs()}
        parsed = {k: specs[k].to_field(v) if k in specs else v for k, v in values.items()}
        own = {f.name for f in fields(cls)}
        pre = PreprocessingConfig(**{k: v for k, v in parsed.items() if k not in own})
        return cls(**{k: v for k, v in parsed.items() if k in own}, preprocessing=pre)

    def command_line(self, always: tuple[str, ...] = ()) -> str:
        """The `newsclf train` command that runs this config (options at their default left
        out, except those named in `always`)."""
        words = ["newsclf", "train"]
        own = command_line(words, self, option_specs(TrainingConfig, ("resume",)), always)
        return shell_command(
            command_line(own, self.preprocessing, option_specs(PreprocessingConfig))
        )
