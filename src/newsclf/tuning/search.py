"""`newsclf tune`: a hyperparameter search with Optuna, on training data only.

Each trial is a `NewsTrainer` run (a fresh Trainer, so a fresh early-stopping counter) on the
data loaded once before the search, without any test split: the test file is neither read nor
evaluated by a trial. The objective is the best validation `metric` of the trial (maximised);
weak trials are pruned at their evaluations against the median of the finished ones. What a
search writes is RUN/tune/ (`newsclf.artifacts.RunFolder`).

Optuna is an extra (`pip install 'newsclf[tune]'`), imported only here, when a search runs.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from newsclf.artifacts import RunFolder
from newsclf.errors import InputError, NewsclfError, SearchError
from newsclf.io import write_json_atomic, write_text_atomic
from newsclf.training import NewsTrainer, TrainingConfig, TrainingData, load_training_data
from newsclf.tuning.config import SEARCHED, TuneConfig

if TYPE_CHECKING:
    import optuna

STUDY_NAME = "newsclf"
INSTALL_HINT = "pip install 'newsclf[tune]'"


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise InputError(f"newsclf tune needs Optuna: {INSTALL_HINT}") from exc
    return optuna


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
    data = load_training_data(replace(config, test_file=None))
    return replace(data, test=None)


def train_command(config: TrainingConfig) -> str:
    """The `newsclf train` command line that runs `config`: options at their default left
    out, except the model and the searched parameters, which are always spelled out."""
    return config.command_line(always=("model", *SEARCHED))


def best_training_config(config: TuneConfig, params: dict[str, float]) -> TrainingConfig:
    """The recipe with `params`, on all the training rows, written to the run folder."""
    return config.training.replace(**params, max_train_samples=None, resume=False)


def _clear_trial_model(trial_dir: Path) -> None:
    """What a trial that is not the best keeps: its configuration and metrics."""
    trial = RunFolder(trial_dir)
    for folder in (trial.best_dir, trial.checkpoints_dir):
        shutil.rmtree(folder, ignore_errors=True)
    for file in (trial.parity_sample, trial.model_card):
        file.unlink(missing_ok=True)


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
    path = config.run.study_file
    if config.resume and not path.is_file():
        raise InputError(f"--resume: {path} does not exist; start the search without --resume.")
    if not config.resume and path.exists():
        raise InputError(
            f"{path} already holds a search: continue it with --resume, or choose another "
            "--output-dir."
        )


def _open_study(config: TuneConfig, optuna: Any) -> Any:
    path = config.run.study_file
    metric = config.training.metric
    config.tune_dir.mkdir(parents=True, exist_ok=True)
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
            _clear_trial_model(config.run.trial_dir(trial.number))
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
    run = config.run
    write_json_atomic(run.tune_config_file, config.to_dict())
    notify = on_trial or (lambda record: None)

    def objective(trial: optuna.Trial) -> float:
        params = config.suggest(trial)
        trial.set_user_attr("params", params)
        trial_dir = run.trial_dir(trial.number)
        shutil.rmtree(trial_dir, ignore_errors=True)
        started = time.time()

        def report(value: float | None, evaluations: int, state: str = "running") -> None:
            notify(TrialRecord(trial.number, state, params, value, evaluations, started, None))

        reporter = _TrialReporter(trial, metric, report)
        report(None, 0)
        cfg = search_base.replace(output_dir=trial_dir, **params)
        try:
            result = NewsTrainer(cfg, [reporter, *callbacks], data=data).train()
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
            for other in run.trial_dirs():
                if other != run.trial_dir(best):
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
    run = config.run
    trials = study.get_trials(deepcopy=False)
    write_text_atomic(run.trials_file, trials_csv([_record(t) for t in trials]))
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        return
    best = study.best_trial
    params = _record(best).params
    write_json_atomic(
        run.tune_best_file,
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
    run = config.run
    if not complete:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
        notes = sorted({r.note for r in records if r.note and r.state == "fail"})
        raise SearchError(
            f"No trial completed ({counts}): the search found nothing."
            + (f" Failures: {'; '.join(notes)[:500]}" if notes else "")
            + f" Trials: {run.trials_file}."
        )
    best = study.best_trial
    params = _record(best).params
    train_config = best_training_config(config, params)
    return TuneResult(
        tune_dir=run.tune_dir,
        study_path=run.study_file,
        best_path=run.tune_best_file,
        trials_path=run.trials_file,
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
