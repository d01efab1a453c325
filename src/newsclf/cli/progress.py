"""Live progress on the terminal (the CLI's, never the library's): a training bar with a row per
evaluation, and a classify bar with rows/s and ETA."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

if TYPE_CHECKING:
    from newsclf.training import TrainingConfig
    from newsclf.tuning import TrialRecord


def evaluation_table() -> Table:
    table = Table(title="Validation", title_justify="left", expand=False)
    for name in ("epoch", "step", "loss", "accuracy", "macro F1", "best"):
        table.add_column(name, justify="right")
    return table


class TrainingProgress(TrainerCallback):
    """Replaces the Trainer's tqdm bars and log printing: one bar (loss, lr, samples/s, ETA)
    and a table that gains a row per evaluation (none for a run without a validation split).
    `config` is the run's (train's, or the recipe a distillation trains with)."""

    def __init__(self, console: Console, samples_per_step: int, config: TrainingConfig) -> None:
        self.console = console
        self.evaluations = config.has_validation
        self.samples_per_step = samples_per_step
        self.metric = config.metric
        self.table = evaluation_table()
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} samples/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self._live: Live | None = None
        self._task: Any = None
        self._started = 0.0
        self._start_step = 0
        self._eval_seconds = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, loss="-", lr="-", speed="-"
        )
        self._started = time.perf_counter()
        self._start_step = state.global_step
        shown = Group(self.table, self.progress) if self.evaluations else self.progress
        self._live = Live(shown, console=self.console, refresh_per_second=4)
        self._live.start()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        elapsed = time.perf_counter() - self._started - self._eval_seconds
        steps = state.global_step - self._start_step
        speed = f"{steps * self.samples_per_step / elapsed:,.1f}" if elapsed > 0 and steps else "-"
        self.progress.update(self._task, completed=state.global_step, speed=speed)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.progress.update(self._task, loss=f"{logs['loss']:.4f}")
        if "learning_rate" in logs:
            self.progress.update(self._task, lr=f"{logs['learning_rate']:.2e}")

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = metrics or {}
        self._eval_seconds += metrics.get("eval_runtime", 0.0)
        value = metrics.get(f"eval_{self.metric}")
        best = state.best_metric
        is_best = value is not None and (best is None or value >= best)
        self.table.add_row(
            f"{state.epoch:.2f}",
            str(state.global_step),
            f"{metrics.get('eval_loss', float('nan')):.4f}",
            f"{metrics.get('eval_accuracy', float('nan')):.4f}",
            f"{metrics.get('eval_f1_macro', float('nan')):.4f}",
            "*" if is_best else "",
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class RowProgress:
    """Context manager; `update(rows, done, total)` after each chunk. With an unknown total
    (stdin) the bar pulses and the ETA stays empty."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]classify"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TextColumn("{task.fields[speed]} rows/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None
        self._started = 0.0

    def __enter__(self) -> RowProgress:
        self._progress.start()
        self._task = self._progress.add_task("classify", total=None, rows="0", speed="-")
        self._started = time.perf_counter()
        return self

    def update(self, rows: int, done: int, total: int | None) -> None:
        elapsed = time.perf_counter() - self._started
        self._progress.update(
            self._task,
            completed=done,
            total=total,
            rows=f"{rows:,}",
            speed=f"{rows / elapsed:,.0f}" if elapsed > 0 else "-",
        )

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


class TuneProgress:
    """Context manager: a live table of a search's trials; `update(record)` as trials report
    (pass it as `tune(on_trial=...)`). Running trials' times tick between updates."""

    def __init__(self, console: Console, metric: str, searched: Sequence[str]) -> None:
        self.metric = metric
        self.searched = list(searched)
        self.records: dict[int, TrialRecord] = {}
        self._console = console
        self._live = Live(
            console=console, get_renderable=self._render, refresh_per_second=2, transient=False
        )

    def _render(self) -> RenderableType:
        from newsclf.cli.render import trials_table

        return trials_table(list(self.records.values()), self.metric, self.searched)

    def update(self, record: TrialRecord) -> None:
        self.records[record.number] = record
        self._live.refresh()

    def __enter__(self) -> TuneProgress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()
        if not self._console.is_terminal:
            self._console.line()  # a live display ends its line only on a terminal
