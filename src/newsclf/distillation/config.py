"""`newsclf distill`'s configuration: the teacher, the student's depth, the soft targets, and
the recipe, each option defined once.

The recipe options default to the teacher's own (None = "the teacher's"): the student trains
on the teacher's data and validation split with the teacher's recipe unless told otherwise.
Their help text is the training option's own (`TrainingConfig`), so it is written once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from newsclf.errors import InputError
from newsclf.options import (
    OptionSpec,
    check_positive,
    check_range,
    config_from_dict,
    config_from_file,
    jsonable,
    option,
    option_specs,
)
from newsclf.training import Metric, Precision, TrainingConfig

DISTILL = "Distillation"
RECIPE = "Recipe (default: the teacher's)"
OUTPUT = "Model and output"
DATA = "Data"

# The recipe options a student may change; everything else (data, split, seed, text
# preprocessing) is the teacher's, so that the student learns from the same rows.
RECIPE_FIELDS = (
    "learning_rate",
    "batch_size",
    "eval_batch_size",
    "epochs",
    "weight_decay",
    "grad_accum",
    "warmup_ratio",
    "patience",
    "eval_steps",
    "metric",
    "train_seed",
    "max_train_samples",
    "precision",
)
_TRAINING_SPECS = {spec.name: spec for spec in TrainingConfig.option_specs()}


def _teachers(name: str) -> str:
    """The help of a recipe option whose default is the teacher's value: the training
    option's own."""
    return f"{_TRAINING_SPECS[name].help} Default: the teacher's."


@dataclass
class DistillConfig:
    """A distillation: a smaller student of `teacher` with `layers` encoder layers, trained on
    the teacher's soft targets and the true labels of the teacher's training split."""

    teacher: Path | None = option(
        None,
        help="The teacher: a newsclf run folder (train, soup, or soup --ensemble; an "
        "ensemble's student has member 0's architecture).",
        panel=DISTILL,
    )
    layers: int | None = option(
        None,
        help="Encoder layers of the student, fewer than the teacher's: the first and the "
        "last of the teacher's and the rest evenly spaced between them, weights copied.",
        panel=DISTILL,
    )
    output_dir: Path | None = option(
        None,
        help="The student's run folder. Default: models/<timestamp>-<teacher>-<K>layers.",
        panel=OUTPUT,
    )
    transfer_file: Path | None = option(
        None,
        help="Unlabelled in-domain texts (CSV, TSV, JSONL or Parquet; the teacher's text "
        "columns), labelled by the teacher for the student to learn from as well. Rows also "
        "in the validation or test split are left out.",
        panel=DATA,
    )
    temperature: float = option(
        2.0,
        help="Softmax temperature T of the soft targets; their KL term is scaled by T^2.",
        panel=DISTILL,
    )
    soft_weight: float = option(
        0.5,
        help="Weight of the soft-target loss (KL to the teacher); the true labels' "
        "cross-entropy gets 1 minus it.",
        panel=DISTILL,
    )
    learning_rate: float | None = option(None, help=_teachers("learning_rate"), panel=RECIPE)
    batch_size: int | None = option(None, help=_teachers("batch_size"), panel=RECIPE)
    eval_batch_size: int | None = option(None, help=_teachers("eval_batch_size"), panel=RECIPE)
    epochs: float | None = option(None, help=_teachers("epochs"), panel=RECIPE)
    weight_decay: float | None = option(None, help=_teachers("weight_decay"), panel=RECIPE)
    grad_accum: int | None = option(None, help=_teachers("grad_accum"), panel=RECIPE)
    warmup_ratio: float | None = option(None, help=_teachers("warmup_ratio"), panel=RECIPE)
    patience: int | None = option(None, help=_teachers("patience"), panel=RECIPE)
    eval_steps: int | None = option(None, help=_teachers("eval_steps"), panel=RECIPE)
    metric: Metric | None = option(None, help=_teachers("metric"), panel=RECIPE)
    train_seed: int | None = option(None, help=_teachers("train_seed"), panel=RECIPE)
    max_train_samples: int | None = option(None, help=_teachers("max_train_samples"), panel=RECIPE)
    precision: Precision | None = option(None, help=_teachers("precision"), panel=RECIPE)
    resume: bool = option(
        False,
        help="Continue the interrupted distillation in --output-dir with its saved settings "
        "(the teacher's cached predictions are reused).",
        panel=OUTPUT,
    )

    def __post_init__(self) -> None:
        for name in ("teacher", "output_dir", "transfer_file"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        if self.resume:
            if self.output_dir is None:
                raise InputError("--resume needs --output-dir: the distillation to continue.")
        else:
            if self.teacher is None:
                raise InputError("Give --teacher: the run folder to distil.")
            if self.layers is None:
                raise InputError("Give --layers: the student's number of encoder layers.")
        if self.layers is not None and self.layers < 1:
            raise InputError(f"--layers must be at least 1, not {self.layers}.")
        check_positive("--temperature", self.temperature)
        check_range("--soft-weight", self.soft_weight, 0, 1, high_open=False)
        # The recipe's own checks (and messages): a TrainingConfig with these values.
        TrainingConfig().replace(**self.recipe())

    def recipe(self) -> dict[str, Any]:
        """The recipe options given (not the teacher's), by TrainingConfig field name."""
        given = {name: getattr(self, name) for name in RECIPE_FIELDS}
        return {name: value for name, value in given.items() if value is not None}

    # -- on disk (RUN/distill_config.json) ---------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "distill config") -> DistillConfig:
        """Raises:
        InputError: unknown settings or bad values."""
        return config_from_dict(cls, raw, where)

    def save(self, path: Path) -> Path:
        """Written with absolute paths, so that --resume works from any folder."""
        from newsclf.io import write_json_atomic

        names = ("teacher", "output_dir", "transfer_file")
        absolute = replace(
            self, **{n: Path(getattr(self, n)).absolute() for n in names if getattr(self, n)}
        )
        return write_json_atomic(path, absolute.to_dict())

    @classmethod
    def load(cls, path: Path) -> DistillConfig:
        """Raises:
        InputError: the file is missing, unreadable or not a distillation configuration."""
        return config_from_file(cls, path, "the distillation config")

    @classmethod
    def option_specs(cls, exclude: tuple[str, ...] = ()) -> list[OptionSpec]:
        """Every `newsclf distill` option."""
        return option_specs(cls, exclude)
