"""`newsclf tune`'s configuration: the base recipe and data, the search space and the budget,
each option defined once (the recipe's own options come from `TrainingConfig`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from newsclf.artifacts import RunFolder
from newsclf.errors import InputError
from newsclf.options import check_choice, check_positive, config_from_file, option
from newsclf.training import TrainingConfig, default_run_dir

if TYPE_CHECKING:
    import optuna

Sampler = Literal["tpe", "random", "grid"]
# The searched parameters, named as the TrainingConfig fields they set.
SEARCHED = ("learning_rate", "batch_size", "epochs", "weight_decay", "warmup_ratio")
SEARCH = "Search"


def parse_batch_sizes(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """'16,32,64' -> (16, 32, 64)."""
    if not isinstance(text, str):
        return tuple(int(b) for b in text)
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(
            f"--batch-sizes takes integers separated by commas, not {text!r}."
        ) from None


def parse_fixed(items: list[str] | dict[str, float] | None) -> dict[str, float]:
    """['learning_rate=5e-5'] -> {'learning_rate': 5e-05}."""
    if isinstance(items, dict):
        return dict(items)
    fixed: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        try:
            fixed[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--fix takes NAME=VALUE (e.g. learning_rate=5e-5), not {item!r}.")
    return fixed


def _sig(value: float) -> float:
    return float(f"{value:.3g}")


@dataclass
class TuneConfig:
    """A search: the base recipe and data (`training`), the search space, the budget.

    Ranges are (low, high) and inclusive; a range with low == high, a single batch size, or an
    entry in `fixed` fixes that parameter (it is not searched). `training.output_dir` is the
    run folder RUN; the study lives in RUN/tune and a `--train-best` run writes RUN itself.
    `training.max_train_samples` applies to the trials only, not to the best recipe.
    """

    training: TrainingConfig = option(
        default_factory=TrainingConfig, help="The base recipe and data.", cli=False
    )
    trials: int = option(
        20,
        help="Trials the study should hold (complete or pruned; --resume counts the earlier ones).",
        panel=SEARCH,
    )
    timeout: float | None = option(
        None, help="Start no new trial after this many seconds.", panel=SEARCH
    )
    sampler: Sampler = option(
        "tpe", help="tpe (Bayesian), random, or grid (--grid-points per range).", panel=SEARCH
    )
    learning_rate: tuple[float, float] = option(
        (1e-5, 1e-4),
        help="Learning rate LOW HIGH, log-uniform.",
        flag="--lr-range",
        panel=SEARCH,
    )
    batch_size: tuple[int, ...] = option(
        (16, 32, 64),
        help="Batch sizes to choose from, comma-separated.",
        flag="--batch-sizes",
        panel=SEARCH,
        cli_type=str,
        parse=parse_batch_sizes,
    )
    epochs: tuple[int, int] = option(
        (2, 5), help="Epochs LOW HIGH, integers.", flag="--epochs-range", panel=SEARCH
    )
    weight_decay: tuple[float, float] = option(
        (0.0, 0.1),
        help="Weight decay LOW HIGH, uniform.",
        flag="--weight-decay-range",
        panel=SEARCH,
    )
    warmup_ratio: tuple[float, float] = option(
        (0.0, 0.1),
        help="Warm-up ratio LOW HIGH, uniform.",
        flag="--warmup-range",
        panel=SEARCH,
    )
    fixed: dict[str, float] = option(
        default_factory=dict,
        help="Fix a parameter instead of searching it: NAME=VALUE, repeatable (e.g. "
        "learning_rate=5e-5). A range with LOW = HIGH or one batch size fixes it too.",
        flag="--fix",
        panel=SEARCH,
        cli_type=list[str] | None,
        parse=parse_fixed,
    )
    grid_points: int = option(3, help="Grid sampler: values per continuous range.", panel=SEARCH)
    pruning: bool = option(
        True, help="Stop trials whose validation metric is below the median.", panel=SEARCH
    )
    # Median pruning: a trial whose validation metric at an evaluation is below the median of
    # the finished trials at that evaluation stops, once `prune_startup_trials` trials have
    # finished and from evaluation number `prune_from_evaluation` (1 = the first) on.
    prune_startup_trials: int = option(3, help="Trials before pruning starts.", cli=False)
    prune_from_evaluation: int = option(2, help="First evaluation pruned.", cli=False)
    resume: bool = option(
        False,
        help="Continue the search in --output-dir with its saved settings (--trials and "
        "--timeout still apply).",
        panel=SEARCH,
    )

    def __post_init__(self) -> None:
        if isinstance(self.training, dict):
            self.training = TrainingConfig.from_dict(self.training, "training")
        if self.training.output_dir is None:
            self.training = replace(self.training, output_dir=default_run_dir(self.training.model))
        if self.training.validation_fraction == 0 and self.training.validation_file is None:
            raise InputError(
                "newsclf tune maximises a validation metric: give --validation-file or a "
                "--validation-fraction above 0."
            )
        check_positive("--trials", self.trials)
        check_positive("--timeout", self.timeout, allow_none=True)
        check_choice("--sampler", self.sampler, Sampler)
        check_positive("--grid-points", self.grid_points)
        if self.prune_startup_trials < 0 or self.prune_from_evaluation < 1:
            raise InputError("Pruning needs startup trials >= 0 and a first evaluation >= 1.")
        for name in ("learning_rate", "epochs", "weight_decay", "warmup_ratio"):
            pair = tuple(getattr(self, name))
            if len(pair) != 2 or pair[0] > pair[1]:
                raise InputError(f"The {name} range must be (low, high) with low <= high: {pair}.")
            setattr(self, name, pair)
        self.epochs = (int(self.epochs[0]), int(self.epochs[1]))
        self.batch_size = parse_batch_sizes(self.batch_size)
        self.fixed = parse_fixed(self.fixed)
        if not self.batch_size:
            raise InputError("Give at least one batch size.")
        if self.learning_rate[0] <= 0 and "learning_rate" not in self.fixed:
            raise InputError(
                f"The learning-rate range is log-uniform: its low end must be positive, not "
                f"{self.learning_rate[0]}. Fix a value instead to train with 0."
            )
        unknown = sorted(set(self.fixed) - set(SEARCHED))
        if unknown:
            raise InputError(
                f"Cannot fix {', '.join(unknown)}: the searched parameters are "
                f"{', '.join(SEARCHED)}."
            )
        self.fixed = {
            k: int(v) if k == "batch_size" or (k == "epochs" and float(v).is_integer()) else v
            for k, v in self.fixed.items()
        }
        # Every corner of the space must be a valid recipe (TrainingConfig validates itself).
        for corner in (0, -1):
            self.training.replace(**{**self._corner(corner), **self.fixed})

    def _corner(self, index: int) -> dict[str, float]:
        return {
            "learning_rate": self.learning_rate[index],
            "batch_size": self.batch_size[index],
            "epochs": self.epochs[index],
            "weight_decay": self.weight_decay[index],
            "warmup_ratio": self.warmup_ratio[index],
        }

    @property
    def run_dir(self) -> Path:
        return Path(self.training.output_dir)  # type: ignore[arg-type]

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def tune_dir(self) -> Path:
        return self.run.tune_dir

    def fixed_params(self) -> dict[str, float]:
        """The parameters that are not searched, with their values."""
        fixed: dict[str, float] = {}
        for name in ("learning_rate", "epochs", "weight_decay", "warmup_ratio"):
            low, high = getattr(self, name)
            if low == high:
                fixed[name] = low
        if len(self.batch_size) == 1:
            fixed["batch_size"] = self.batch_size[0]
        fixed.update(self.fixed)
        return fixed

    def searched(self) -> list[str]:
        fixed = self.fixed_params()
        return [name for name in SEARCHED if name not in fixed]

    def grid(self) -> dict[str, list[float]]:
        """The grid sampler's values for each searched parameter."""
        n = self.grid_points

        def spaced(low: float, high: float, log: bool) -> list[float]:
            if n == 1:
                return [low]
            if log:
                ratio = math.log(high / low) / (n - 1)
                values = [low * math.exp(ratio * i) for i in range(n)]
            else:
                values = [low + (high - low) * i / (n - 1) for i in range(n)]
            # Round inside the range: 3 significant digits, the ends exact.
            return sorted({low, high, *(min(max(_sig(v), low), high) for v in values)})

        grid: dict[str, list[float]] = {
            "learning_rate": spaced(*self.learning_rate, log=True),
            "batch_size": list(self.batch_size),
            "epochs": list(range(self.epochs[0], self.epochs[1] + 1)),
            "weight_decay": spaced(*self.weight_decay, log=False),
            "warmup_ratio": spaced(*self.warmup_ratio, log=False),
        }
        return {name: grid[name] for name in self.searched()}

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        """The trial's parameters: suggested for the searched ones, the fixed ones as fixed."""
        searched = set(self.searched())
        params: dict[str, float] = {}
        if "learning_rate" in searched:
            params["learning_rate"] = trial.suggest_float(
                "learning_rate", *self.learning_rate, log=True
            )
        if "batch_size" in searched:
            params["batch_size"] = trial.suggest_categorical("batch_size", list(self.batch_size))
        if "epochs" in searched:
            params["epochs"] = trial.suggest_int("epochs", *self.epochs)
        if "weight_decay" in searched:
            params["weight_decay"] = trial.suggest_float("weight_decay", *self.weight_decay)
        if "warmup_ratio" in searched:
            params["warmup_ratio"] = trial.suggest_float("warmup_ratio", *self.warmup_ratio)
        full = {**params, **self.fixed_params()}
        return {name: full[name] for name in SEARCHED}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["training"] = self.training.to_dict()
        return data

    @classmethod
    def load(cls, path: Path) -> TuneConfig:
        """The configuration a search was started with.

        Raises:
            InputError: the file is missing, unreadable or not a search configuration.
        """
        return config_from_file(cls, path, "the search configuration")
