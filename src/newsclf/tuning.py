"""`newsclf tune`: a hyperparameter search with Optuna, on training data only.

Each trial is a `NewsTrainer` run (a fresh Trainer, so a fresh early-stopping counter) on the
data loaded once before the search, without any test split: the test file is neither read nor
evaluated by a trial. The objective is the best validation `metric` of the trial (maximised);
weak trials are pruned at their evaluations against the median of the finished ones.

RUN/tune/study.db           the Optuna study (SQLite); `resume` continues it
RUN/tune/tune_config.json   the search's configuration (the CLI's --resume reuses it)
RUN/tune/best.json          the best trial: number, value, metric, params, train command
RUN/tune/trials.csv         every trial: state, value, parameters, evaluations, time
RUN/tune/trials/NNN/        each trial's run folder; only the best trial keeps its model

Optuna is an extra (`pip install 'newsclf[tune]'`), imported only here, when a search runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from newsclf.atomic import write_json_atomic, write_text_atomic
from newsclf.config import Sampler, TrainingConfig, check_choice, check_positive
from newsclf.data import TrainingData
from newsclf.errors import InputError, NewsclfError, SearchError
from newsclf.runs import BEST_DIR, CHECKPOINTS_DIR, default_run_dir
from newsclf.training import NewsTrainer

if TYPE_CHECKING:
    import optuna

# The searched parameters, named as the TrainingConfig fields they set.
SEARCHED = ("learning_rate", "batch_size", "epochs", "weight_decay", "warmup_ratio")
TUNE_DIR = "tune"
STUDY_FILE = "study.db"
BEST_FILE = "best.json"
TRIALS_FILE = "trials.csv"
TUNE_CONFIG_FILE = "tune_config.json"
TRIALS_DIR = "trials"
STUDY_NAME = "newsclf"
INSTALL_HINT = "pip install 'newsclf[tune]'"


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise InputError(f"newsclf tune needs Optuna: {INSTALL_HINT}") from exc
    return optuna


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

    training: TrainingConfig = field(default_factory=TrainingConfig)
    # Trials the study should hold (complete or pruned; failed ones do not count).
    trials: int = 20
    # Stop starting new trials after this many seconds; None: no limit.
    timeout: float | None = None
    sampler: Sampler = "tpe"
    learning_rate: tuple[float, float] = (1e-5, 1e-4)  # log-uniform
    batch_size: tuple[int, ...] = (16, 32, 64)  # categorical
    epochs: tuple[int, int] = (2, 5)  # integers
    weight_decay: tuple[float, float] = (0.0, 0.1)  # uniform
    warmup_ratio: tuple[float, float] = (0.0, 0.1)  # uniform
    fixed: dict[str, float] = field(default_factory=dict)
    # Grid sampler: points per continuous range (log-spaced for the learning rate).
    grid_points: int = 3
    # Median pruning: a trial whose validation metric at an evaluation is below the median of
    # the finished trials at that evaluation stops, once `prune_startup_trials` trials have
    # finished and from evaluation number `prune_from_evaluation` (1 = the first) on.
    pruning: bool = True
    prune_startup_trials: int = 3
    prune_from_evaluation: int = 2
    resume: bool = False

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
        self.batch_size = tuple(int(b) for b in self.batch_size)
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
    def tune_dir(self) -> Path:
        return self.run_dir / TUNE_DIR

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
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"Cannot read the search configuration {path}: {exc}") from exc
        try:
            return cls(**raw)
        except TypeError as exc:
            raise InputError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the live table shows it: `value` is the objective once complete, else the
    last validation metric reported (None before the first evaluation)."""

    number: int
    state: str  # running, complete, pruned, fail
    params: dict[str, float]
    value: float | None
    evaluations: int
    started: float  # time.time()
    duration_s: float | None
    note: str = ""


@dataclass(frozen=True)
class TuneResult:
    """A finished search; `train_config` is the best recipe as `newsclf train` would run it."""

    tune_dir: Path
    study_path: Path
    best_path: Path
    trials_path: Path
    metric: str
    best_trial: int
    best_value: float
    best_params: dict[str, float]
    searched: list[str]
    states: dict[str, int]
    trials: list[TrialRecord]
    train_config: TrainingConfig
    train_command: str


class _TrialTrainer(NewsTrainer):
    """A NewsTrainer on the search's data: loaded once, with no test split at all."""

    def __init__(
        self, config: TrainingConfig, data: TrainingData, callbacks: Sequence[TrainerCallback]
    ) -> None:
        super().__init__(config, callbacks)
        self._data = data

    def _load_data(self) -> TrainingData:
        return self._data


class _TrialReporter(TrainerCallback):
    """Reports each validation metric to the trial (step = evaluation number) and prunes."""

    def __init__(
        self, trial: optuna.Trial, metric: str, on_report: Callable[[float, int], None]
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.on_report = on_report
        self.evaluations = 0
        self.last: float | None = None

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return
        self.evaluations += 1
        self.last = float(value)
        self.trial.report(self.last, self.evaluations)
        self.on_report(self.last, self.evaluations)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(
                f"{self.metric} {self.last:.4f} at evaluation {self.evaluations} is below the "
                "median of the finished trials"
            )


def load_search_data(config: TrainingConfig) -> TrainingData:
    """The training and validation data of a search: the test file is not even read, and a
    hub dataset's test split is dropped.

    Raises:
        InputError, OfflineError: bad data or options, as in `newsclf train`.
    """
    data = NewsTrainer(replace(config, test_file=None))._load_data()
    return replace(data, test=None)


def train_command(config: TrainingConfig) -> str:
    """The `newsclf train` command line that runs `config`.

    Args:
        config: the recipe, data and output folder.

    Returns:
        A shell-quoted command; options at their default are left out, except the searched
        parameters, which are always spelled out.
    """
    default = TrainingConfig()
    pre, default_pre = config.preprocessing, default.preprocessing
    args = ["newsclf", "train", "--model", config.model]
    if config.train_file is not None:
        args += ["--train-file", str(config.train_file)]
    elif config.dataset:
        args += ["--dataset", config.dataset]
    for name in ("validation_file", "test_file"):
        if getattr(config, name) is not None:
            args += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    if pre.text_columns:
        args += ["--text-column", ",".join(pre.text_columns)]
    if pre.label_column != default_pre.label_column:
        args += ["--label-column", pre.label_column]
    if config.output_dir is not None:
        args += ["--output-dir", str(config.output_dir)]
    for name in SEARCHED:
        value = getattr(config, name)
        if name == "epochs" and float(value).is_integer():
            value = int(value)
        args += [f"--{name.replace('_', '-')}", repr(value)]
    for name in (
        "eval_batch_size",
        "grad_accum",
        "patience",
        "eval_steps",
        "metric",
        "seed",
        "train_seed",
        "validation_fraction",
        "max_train_samples",
        "precision",
        "layer_decay",
        "average_last",
        "rdrop",
        "mlm_epochs",
    ):
        value = getattr(config, name)
        if value != getattr(default, name):
            args += [f"--{name.replace('_', '-')}", str(value)]
    if pre.max_length != default_pre.max_length:
        args += ["--max-length", str(pre.max_length)]
    if not pre.clean:
        args.append("--no-clean")
    if not config.group_by_length:
        args.append("--no-group-by-length")
    return shlex.join(args)


def best_training_config(config: TuneConfig, params: dict[str, float]) -> TrainingConfig:
    """The recipe with `params`, on all the training rows, written to the run folder."""
    return config.training.replace(**params, max_train_samples=None, resume=False)


def _clear_trial_model(trial_dir: Path) -> None:
    """What a trial that is not the best keeps: its configuration and metrics."""
    for name in (BEST_DIR, CHECKPOINTS_DIR):
        shutil.rmtree(trial_dir / name, ignore_errors=True)
    for name in ("parity_sample.jsonl", "README.md"):
        (trial_dir / name).unlink(missing_ok=True)


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    state = trial.state.name.lower()
    params = trial.user_attrs.get("params") or dict(trial.params)
    steps = trial.intermediate_values
    value = trial.value if state == "complete" else (steps[max(steps)] if steps else None)
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    duration = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return TrialRecord(
        number=trial.number,
        state=state,
        params=params,
        value=value,
        evaluations=len(steps),
        started=started,
        duration_s=duration,
        note=str(trial.user_attrs.get("note", "")),
    )


def trials_csv(records: Sequence[TrialRecord]) -> str:
    """Every trial as CSV: number, state, value (complete trials), last reported metric,
    evaluations, the parameters, duration and note."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "number",
            "state",
            "value",
            "last_reported",
            "evaluations",
            *SEARCHED,
            "duration_s",
            "note",
        ]
    )
    for r in records:
        writer.writerow(
            [
                r.number,
                r.state,
                "" if r.state != "complete" or r.value is None else r.value,
                "" if r.value is None else r.value,
                r.evaluations,
                *(r.params.get(name, "") for name in SEARCHED),
                "" if r.duration_s is None else round(r.duration_s, 2),
                r.note,
            ]
        )
    return out.getvalue()


def _check_study_path(config: TuneConfig) -> None:
    path = config.tune_dir / STUDY_FILE
    if config.resume and not path.is_file():
        raise InputError(f"--resume: {path} does not exist; start the search without --resume.")
    if not config.resume and path.exists():
        raise InputError(
            f"{path} already holds a search: continue it with --resume, or choose another "
            "--output-dir."
        )


def _open_study(config: TuneConfig, optuna: Any) -> Any:
    tune_dir = config.tune_dir
    path = tune_dir / STUDY_FILE
    metric = config.training.metric
    tune_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    if config.pruning:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=config.prune_startup_trials,
            n_warmup_steps=config.prune_from_evaluation,
        )
    else:
        pruner = optuna.pruners.NopPruner()
    if config.resume:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage, pruner=pruner)
        saved = study.user_attrs.get("metric")
        if saved != metric:
            raise InputError(
                f"--resume: the study maximises {saved}, not {metric}; values of different "
                "metrics cannot be compared."
            )
        # A trial of a killed process is left running: it failed.
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            _clear_trial_model(tune_dir / TRIALS_DIR / f"{trial.number:03d}")
    else:
        study = optuna.create_study(
            study_name=STUDY_NAME, storage=storage, direction="maximize", pruner=pruner
        )
        study.set_user_attr("metric", metric)
    # A sampler seeded anew per session: a resumed search must not replay the same proposals.
    seed = config.training.seed + len(study.trials)
    if config.sampler == "grid":
        study.sampler = optuna.samplers.GridSampler(config.grid(), seed=seed)
    elif config.sampler == "random":
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def tune(
    config: TuneConfig,
    on_trial: Callable[[TrialRecord], None] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TuneResult:
    """Search the recipe's hyperparameters on the training data; see the module docstring.

    Args:
        config: the base recipe and data, the search space and budget, `resume`.
        on_trial: called with a `TrialRecord` when a trial starts, after each of its
            evaluations and when it ends (for a live table).
        callbacks: Trainer callbacks added to every trial.

    Returns:
        `TuneResult`: the best trial, its parameters and value, counts per state, the files
        written and the equivalent `newsclf train` command.

    Raises:
        InputError: bad data or options, Optuna missing, a study already there (or missing
            with `resume`). ModelError / OfflineError: the model cannot load.
        SearchError: no trial completed (every one pruned or failed).
    """
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    metric = config.training.metric
    _check_study_path(config)
    # Bad data fails here, before anything is written.
    search_base = replace(config.training, test_file=None, resume=False)
    data = load_search_data(search_base)
    study = _open_study(config, optuna)
    tune_dir = config.tune_dir
    write_json_atomic(tune_dir / TUNE_CONFIG_FILE, config.to_dict())
    notify = on_trial or (lambda record: None)

    def objective(trial: optuna.Trial) -> float:
        params = config.suggest(trial)
        trial.set_user_attr("params", params)
        trial_dir = tune_dir / TRIALS_DIR / f"{trial.number:03d}"
        shutil.rmtree(trial_dir, ignore_errors=True)
        started = time.time()

        def report(value: float | None, evaluations: int, state: str = "running") -> None:
            notify(TrialRecord(trial.number, state, params, value, evaluations, started, None))

        reporter = _TrialReporter(trial, metric, report)
        report(None, 0)
        cfg = search_base.replace(output_dir=trial_dir, **params)
        try:
            result = _TrialTrainer(cfg, data, [reporter, *callbacks]).train()
        except optuna.TrialPruned as exc:
            trial.set_user_attr("note", str(exc))
            _clear_trial_model(trial_dir)
            raise
        except BaseException as exc:
            trial.set_user_attr(
                "note", "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            )
            _clear_trial_model(trial_dir)
            raise
        if result.best.value is None:
            _clear_trial_model(trial_dir)
            raise NewsclfError(f"Trial {trial.number} reported no validation {metric}.")
        return float(result.best.value)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = _record(trial)
        if record.state == "complete":
            best = study.best_trial.number
            for other in (tune_dir / TRIALS_DIR).iterdir():
                if other.is_dir() and other.name != f"{best:03d}":
                    _clear_trial_model(other)
        _write_outputs(config, study)
        notify(record)

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = config.trials - len(study.get_trials(deepcopy=False, states=done))
    try:
        if remaining > 0:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=config.timeout,
                # Out of memory at a large batch size fails that trial, not the search.
                catch=(RuntimeError,),
                callbacks=[after_trial],
                gc_after_trial=True,
            )
    finally:
        _write_outputs(config, study)
    return _result(config, study)


def _write_outputs(config: TuneConfig, study: Any) -> None:
    tune_dir = config.tune_dir
    trials = study.get_trials(deepcopy=False)
    write_text_atomic(tune_dir / TRIALS_FILE, trials_csv([_record(t) for t in trials]))
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        return
    best = study.best_trial
    params = _record(best).params
    write_json_atomic(
        tune_dir / BEST_FILE,
        {
            "trial": best.number,
            "value": best.value,
            "metric": config.training.metric,
            "params": params,
            "searched": config.searched(),
            "train_command": train_command(best_training_config(config, params)),
        },
    )


def _result(config: TuneConfig, study: Any) -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    records = [_record(t) for t in trials]
    states: dict[str, int] = {}
    for record in records:
        states[record.state] = states.get(record.state, 0) + 1
    complete = [r for r in records if r.state == "complete"]
    tune_dir = config.tune_dir
    if not complete:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
        notes = sorted({r.note for r in records if r.note and r.state == "fail"})
        raise SearchError(
            f"No trial completed ({counts}): the search found nothing."
            + (f" Failures: {'; '.join(notes)[:500]}" if notes else "")
            + f" Trials: {tune_dir / TRIALS_FILE}."
        )
    best = study.best_trial
    params = _record(best).params
    train_config = best_training_config(config, params)
    return TuneResult(
        tune_dir=tune_dir,
        study_path=tune_dir / STUDY_FILE,
        best_path=tune_dir / BEST_FILE,
        trials_path=tune_dir / TRIALS_FILE,
        metric=config.training.metric,
        best_trial=best.number,
        best_value=float(best.value),
        best_params=params,
        searched=config.searched(),
        states=states,
        trials=records,
        train_config=train_config,
        train_command=train_command(train_config),
    )
