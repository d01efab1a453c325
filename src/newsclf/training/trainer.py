"""Fine-tuning with the Hugging Face Trainer: the recipe, the run folder, honest metrics.

`NewsTrainer` prints nothing: whoever calls it (the CLI) passes Trainer callbacks for progress
and an `on_start` hook that receives the `TrainingPlan`; it returns a typed `TrainResult`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging as hf_logging

from newsclf.artifacts import (
    PreprocessingConfig,
    RunFolder,
    write_calibration_sample,
    write_model_card,
    write_parity_sample,
    write_validation_rows,
)
from newsclf.environment import cpu_cores, machine_summary
from newsclf.errors import InputError, ModelError, NewsclfError
from newsclf.io import atomic_directory, write_json_atomic
from newsclf.metrics import ClassificationMetrics, classification_metrics
from newsclf.training.config import EMBEDDED_MODEL, TrainingConfig
from newsclf.training.data import LabeledTexts, TrainingData, class_counts, load_training_data
from newsclf.training.hardware import (
    HardwareSetup,
    gpu_memory_check,
    hardware_setup,
    is_main_process,
    plan_step,
    world_size,
)
from newsclf.training.hub import hub_kwargs, offline_model_error, resolve_model
from newsclf.training.losses import LossFunction, rdrop
from newsclf.training.predict import evaluate
from newsclf.training.results import (
    BestCheckpoint,
    DataSummary,
    StepPlan,
    TrainingPlan,
    TrainingStats,
    TrainResult,
)


def default_run_dir(model: str, models_dir: Path = Path("models")) -> Path:
    """models/<timestamp>-<model name>."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    short = Path(model).name if model != EMBEDDED_MODEL else "minilm-embedded"
    return models_dir / f"{stamp}-{short.replace('/', '-')}"


class TokenizedTexts(torch.utils.data.Dataset):
    """Texts tokenized once, without padding; the collator pads each batch to its longest row.

    `columns` adds features of the same length to every row (e.g. a teacher's logits, which a
    distillation loss reads from the batch); each must have one value per text.
    """

    def __init__(
        self,
        data: LabeledTexts,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        columns: Mapping[str, Sequence[Any]] | None = None,
    ):
        columns = dict(columns or {})
        for name, values in columns.items():
            if len(values) != len(data):
                raise ValueError(f"column {name!r} has {len(values)} values for {len(data)} rows")
        encoded = tokenizer(data.texts, truncation=True, max_length=max_length)
        keys = list(encoded.keys())
        self.features = [
            {
                **{k: encoded[k][i] for k in keys},
                "labels": label,
                **{name: values[i] for name, values in columns.items()},
            }
            for i, label in enumerate(data.labels)
        ]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


class StepClock(TrainerCallback):
    """Seconds spent in evaluations, and when each optimizer step ended: training speed that
    leaves evaluations out, and a steady-state speed that also leaves out the first steps
    (kernel selection, allocator growth, oneDNN's per-shape set-up)."""

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self.seconds = 0.0
        self._steps: list[tuple[int, float, float]] = []  # (step, time, evaluation seconds)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._steps.append((state.global_step, time.perf_counter(), self.seconds))

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        self.seconds += (metrics or {}).get("eval_runtime", 0.0)

    @property
    def steady_samples_per_s(self) -> float | None:
        """Samples/s from the end of the first fifth of the steps (at least one) to the last,
        evaluations excluded; None with fewer than three steps."""
        if len(self._steps) < 3:
            return None
        first = self._steps[max(1, len(self._steps) // 5) - 1]
        last = self._steps[-1]
        seconds = (last[1] - first[1]) - (last[2] - first[2])
        return (last[0] - first[0]) * self.samples_per_step / seconds if seconds > 0 else None


class _Trainer(Trainer):
    """The Trainer with a replaceable training loss (R-Drop) and gradient accumulation that
    averages micro-batches."""

    def __init__(self, *args: Any, loss: LossFunction | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss = loss
        # The sequence-classification losses are means over the micro-batch. The Trainer
        # infers from the forward's **kwargs that the model normalises by the whole
        # accumulated batch, and would then add up the micro-batches' means instead of
        # averaging them (gradient accumulation N = N times the gradient).
        self.model_accepts_loss_kwargs = False

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        if self.loss is None or not model.training or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = self.loss(model, inputs)
        return (loss, outputs) if return_outputs else loss


@dataclass
class _Fit:
    """What the Trainer's run left: its state, loss, timing and the checkpoint it resumed."""

    state: TrainerState
    train_loss: float
    seconds: float
    clock: StepClock
    resumed_from: str | None
    train_rows: int
    # The epoch the resumed checkpoint had reached, read before training: the Trainer may
    # delete that checkpoint (save_total_limit) once newer ones exist.
    resumed_epochs: float = 0.0


class NewsTrainer:
    """Fine-tunes a sequence classifier with the recipe in `config` and writes a run folder
    (`newsclf.artifacts.RunFolder`).

    Under torchrun or accelerate launch (WORLD_SIZE > 1) the Trainer runs DDP: every process
    trains on its share of each batch, and rank 0 alone writes the run folder (which
    `output_dir` must name, so that all processes agree on it) and evaluates on the test split.

    Args:
        config: the recipe, data and output folder.
        callbacks: Trainer callbacks (progress display, logging); the trainer adds early
            stopping itself.
        data: the rows to train on, already loaded (a search loads them once for all its
            trials); None loads them as `config` says.
        model: a (model, tokenizer) the caller built (e.g. a distillation's student), trained
            in place of `config.model`, which then only names it in the record.
        loss: the training loss `(model, inputs) -> (loss, outputs)`; default: the model's
            own cross-entropy (or R-Drop's, as `config.rdrop` says).
        train_columns: extra features of the training rows, one value per row of
            `data.train` (e.g. a teacher's logits), passed to `loss` in each batch.
        records: write train_config.json first, and metrics.json, the model card and the
            checkpoints' removal last. False leaves the run's configuration and record to the
            caller (a command with its own, e.g. distill), which ends with `finish_run_dir`.

    Raises:
        InputError: several processes and no `output_dir`.
    """

    def __init__(
        self,
        config: TrainingConfig,
        callbacks: Sequence[TrainerCallback] = (),
        *,
        data: TrainingData | None = None,
        model: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None,
        loss: LossFunction | None = None,
        train_columns: Mapping[str, Sequence[Any]] | None = None,
        records: bool = True,
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.data = data
        self.prepared_model = model
        self.loss = loss
        self.train_columns = dict(train_columns or {})
        self.records = records
        self.world_size = world_size()
        self.is_main = is_main_process()
        if self.world_size > 1 and config.output_dir is None:
            raise InputError(
                f"{self.world_size} processes train together: give --output-dir, the one run "
                "directory they share (each would otherwise pick its own timestamped one)."
            )
        self.run = RunFolder(config.output_dir or default_run_dir(config.model))

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def samples_per_step(self) -> int:
        return self.config.batch_size * self.config.grad_accum * self.world_size

    @classmethod
    def resume(cls, run_dir: Path, callbacks: Sequence[TrainerCallback] = ()) -> NewsTrainer:
        """The trainer of an interrupted run, with the configuration it was started with.

        Raises:
            InputError: `run_dir` is not a newsclf run folder.
        """
        config_path = RunFolder(run_dir).config_file
        if not config_path.is_file():
            raise InputError(f"--resume: {run_dir} has no {config_path.name}; is it a newsclf run?")
        config = TrainingConfig.load(config_path)
        return cls(replace(config, resume=True, output_dir=Path(run_dir)), callbacks)

    def train(self, on_start: Callable[[TrainingPlan], None] | None = None) -> TrainResult:
        """Train, save the best checkpoint, evaluate it on the test split, write metrics.json.

        Raises:
            InputError, ModelError, OfflineError: bad data, model or options.
        """
        started = time.perf_counter()
        cfg = self.config
        self._check_run_dir()
        data = self.data if self.data is not None else load_training_data(cfg)
        pre = replace(cfg.preprocessing, text_columns=data.text_columns)
        if self.prepared_model is not None:
            model, tokenizer = self.prepared_model
        else:
            model, tokenizer = self._load_model(data.label_names)
        hardware = hardware_setup(cfg.precision)
        train_rows = data.train
        columns = self.train_columns
        if cfg.max_train_samples and cfg.max_train_samples < len(train_rows):
            train_rows = train_rows.subset(range(cfg.max_train_samples))
            columns = {k: v[: cfg.max_train_samples] for k, v in columns.items()}
        resume_from = self._last_checkpoint() if cfg.resume else None
        # Without validation rows (--validation-fraction 0) every row trains: no evaluations,
        # no early stopping, the last weights are kept; export's parity rows come from train.
        self._prepare_run_dir(data.validation, train_rows)
        step = self._plan_step(model, hardware, pre.max_length)
        if on_start is not None and self.is_main:
            on_start(self._plan(data, len(train_rows), hardware, resume_from, step))

        trainer = self._trainer(model, tokenizer, data, train_rows, pre, hardware, columns, step)
        fit = self._fit(trainer, hardware, resume_from, len(train_rows))
        best_dir = self._save_best(trainer, tokenizer, pre)
        test = self._evaluate_test(best_dir, tokenizer, data, pre, hardware)
        result = self._result(data, train_rows, fit, test, pre, hardware, started, step)
        if self.is_main and self.records:
            self.finish_run_dir(result.to_dict())
        return result

    def finish_run_dir(self, metrics: dict[str, Any]) -> None:
        """Write metrics.json (`metrics`) and the model card from it, and remove the
        checkpoints: the last step of a run (`train` does it itself unless `records` is
        False)."""
        write_json_atomic(self.run.metrics_file, metrics)
        write_model_card(self.run_dir, metrics)
        shutil.rmtree(self.run.checkpoints_dir, ignore_errors=True)

    # -- steps ------------------------------------------------------------------------------

    def _check_run_dir(self) -> None:
        if self.config.resume and self.records and not self.run.config_file.is_file():
            raise InputError(f"--resume: {self.run_dir} is not a newsclf run directory.")
        if not self.config.resume and self.run.best_dir.exists():
            raise InputError(
                f"{self.run_dir} already holds a finished run; choose another --output-dir."
            )

    def _load_model(
        self, label_names: list[str]
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        source, is_local = resolve_model(self.config.model)
        kwargs = hub_kwargs(is_local)
        # The caller says what loads; the libraries' bars and "newly initialized" notes would
        # only repeat it.
        logging.getLogger("transformers").setLevel(logging.ERROR)
        hf_logging.disable_progress_bar()
        # The new head's initial weights follow --seed (not --train-seed), whatever the
        # process drew from the global generator before.
        set_seed(self.config.seed)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(label_names),
                id2label=dict(enumerate(label_names)),
                label2id={name: i for i, name in enumerate(label_names)},
                # fp32 master weights whatever the checkpoint's dtype; autocast does the rest.
                dtype=torch.float32,
                **kwargs,
            )
        except OSError as exc:
            if not is_local:
                raise offline_model_error(self.config.model, exc) from exc
            raise ModelError(f"Cannot load model from {source}: {exc}") from exc
        except ValueError as exc:
            raise ModelError(f"{source} is not a sequence-classification model: {exc}") from exc
        return model, tokenizer

    def _prepare_run_dir(self, validation: LabeledTexts, train_rows: LabeledTexts) -> None:
        """The run's config and the rows export needs later: a parity sample (validation rows,
        else training rows), every validation row, a sample of training texts."""
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.resume and self.records:
            self.config.save(self.run.config_file)
        parity = validation if len(validation) else train_rows
        write_parity_sample(self.run_dir, parity.texts, parity.labels)
        if len(validation):
            write_validation_rows(self.run_dir, validation.texts, validation.labels)
        write_calibration_sample(self.run_dir, train_rows.texts, seed=self.config.seed)

    def _plan_step(
        self, model: PreTrainedModel, hardware: HardwareSetup, max_length: int
    ) -> StepPlan:
        """One batch per optimizer step where it fits on the GPU, else the configured
        accumulation (`plan_step`). R-Drop sends each batch through twice in one forward."""
        cfg = self.config
        copies = 2 if self.loss is None and cfg.rdrop else 1
        on_cuda = hardware.device.type == "cuda"
        return plan_step(
            cfg.batch_size,
            cfg.grad_accum,
            merge=cfg.merge_accumulation,
            device=hardware.device,
            processes=self.world_size,
            max_length=max_length,
            fits=gpu_memory_check(model, hardware, copies) if on_cuda else None,
        )

    def _plan(
        self,
        data: TrainingData,
        train_rows: int,
        hardware: HardwareSetup,
        resumed_from: str | None,
        step: StepPlan,
    ) -> TrainingPlan:
        return TrainingPlan(
            model=self.config.model,
            source=data.source,
            train_rows=train_rows,
            validation_rows=len(data.validation),
            test_rows=len(data.test) if data.test else 0,
            label_names=data.label_names,
            device=hardware.device_name,
            precision=hardware.precision,
            threads=torch.get_num_threads(),
            cores=cpu_cores(),
            run_dir=self.run_dir,
            resumed_from=resumed_from,
            step=step,
        )

    def _last_checkpoint(self) -> str:
        """The newest checkpoint the Trainer finished writing (it writes trainer_state.json
        last): one cut short by a kill is passed over, and removed."""
        folder = self.run.checkpoints_dir
        candidates = sorted(
            (p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
            reverse=True,
        )
        for checkpoint in candidates:
            if _complete_checkpoint(checkpoint):
                return str(checkpoint)
            if self.is_main:
                shutil.rmtree(checkpoint, ignore_errors=True)
        raise InputError(f"--resume: {folder} holds no complete checkpoint to continue from.")

    @property
    def has_checkpoint(self) -> bool:
        """Whether the run folder holds a complete checkpoint that --resume would continue."""
        folder = self.run.checkpoints_dir
        return any(_complete_checkpoint(p) for p in folder.glob("checkpoint-*"))

    def _trainer(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: TrainingData,
        train_rows: LabeledTexts,
        pre: PreprocessingConfig,
        hardware: HardwareSetup,
        columns: Mapping[str, Sequence[Any]],
        step: StepPlan,
    ) -> Trainer:
        evaluate_each = len(data.validation) > 0
        # A new EarlyStoppingCallback per run: it keeps its patience counter.
        stopping = [EarlyStoppingCallback(early_stopping_patience=self.config.patience)]
        trainer = _Trainer(
            model=model,
            loss=self.loss or (rdrop(self.config.rdrop) if self.config.rdrop else None),
            args=self._training_args(hardware, evaluate_each, step, keep_columns=bool(columns)),
            train_dataset=TokenizedTexts(train_rows, tokenizer, pre.max_length, columns),
            eval_dataset=(
                TokenizedTexts(data.validation, tokenizer, pre.max_length)
                if evaluate_each
                else None
            ),
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(
                tokenizer, pad_to_multiple_of=hardware.pad_to_multiple_of
            ),
            compute_metrics=_compute_metrics(data.label_names) if evaluate_each else None,
            callbacks=[*(stopping if evaluate_each else []), *self.callbacks],
        )
        trainer.remove_callback(PrinterCallback)
        return trainer

    def _training_args(
        self,
        hardware: HardwareSetup,
        evaluate_each: bool,
        step: StepPlan,
        keep_columns: bool = False,
    ) -> TrainingArguments:
        cfg = self.config
        strategy = "steps" if cfg.eval_steps else "epoch"
        return TrainingArguments(
            output_dir=str(self.run.checkpoints_dir),
            learning_rate=cfg.learning_rate,
            per_device_train_batch_size=step.micro_batch,
            per_device_eval_batch_size=cfg.eval_batch_size,
            num_train_epochs=cfg.epochs,
            weight_decay=cfg.weight_decay,
            gradient_accumulation_steps=step.grad_accum,
            # A float below 1 is a share of the steps.
            warmup_steps=cfg.warmup_ratio,
            eval_strategy=strategy if evaluate_each else "no",
            save_strategy=strategy,
            eval_steps=cfg.eval_steps or None,
            save_steps=cfg.eval_steps or None,
            save_total_limit=2,
            load_best_model_at_end=evaluate_each,
            metric_for_best_model=cfg.metric if evaluate_each else None,
            greater_is_better=True if evaluate_each else None,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            seed=cfg.data_order_seed,
            logging_steps=10,
            disable_tqdm=True,
            report_to="none",
            dataloader_num_workers=0,
            save_only_model=False,
            # Extra columns reach the loss only if the Trainer keeps what the model's forward
            # does not take (the loss removes them before the forward).
            remove_unused_columns=not keep_columns,
            **hardware.training_arguments(),
        )

    def _fit(
        self, trainer: Trainer, hardware: HardwareSetup, resume_from: str | None, rows: int
    ) -> _Fit:
        clock = StepClock(self.samples_per_step)
        trainer.add_callback(clock)
        resumed_epochs = _checkpoint_epoch(resume_from) if resume_from else 0.0
        started = time.perf_counter()
        with hardware.attention():
            output = trainer.train(resume_from_checkpoint=resume_from)
        # Under DDP, every process has loaded the best checkpoint before rank 0 goes on (and
        # eventually deletes the checkpoints); a no-op for one process.
        trainer.accelerator.wait_for_everyone()
        seconds = time.perf_counter() - started
        return _Fit(
            trainer.state, output.training_loss, seconds, clock, resume_from, rows, resumed_epochs
        )

    def _save_best(
        self, trainer: Trainer, tokenizer: PreTrainedTokenizerBase, pre: PreprocessingConfig
    ) -> Path:
        """best/ appears whole or not at all (staged, then renamed), written by rank 0 alone
        (the Trainer's should_save: the other processes' save_model writes nothing)."""
        best_dir = self.run.best_dir
        if not self.is_main:
            trainer.save_model(str(best_dir))
            return best_dir
        with atomic_directory(best_dir) as staging:
            trainer.save_model(str(staging))
            tokenizer.save_pretrained(str(staging))
            pre.save(staging)
        return best_dir

    def _evaluate_test(
        self,
        best_dir: Path,
        tokenizer: PreTrainedTokenizerBase,
        data: TrainingData,
        pre: PreprocessingConfig,
        hardware: HardwareSetup,
    ) -> ClassificationMetrics | None:
        """Test metrics from the saved model in fp32: the figures export and classify
        reproduce. (The Trainer's model still runs under autocast: accelerate wraps its
        forward.) Rank 0 alone predicts, once."""
        if data.test is None or not self.is_main:
            return None
        saved = AutoModelForSequenceClassification.from_pretrained(
            str(best_dir), dtype=torch.float32
        ).to(hardware.device)
        with hardware.attention():
            return evaluate(
                saved,
                tokenizer,
                data.test,
                data.label_names,
                self.config.eval_batch_size,
                pre.max_length,
            )

    def _result(
        self,
        data: TrainingData,
        train_rows: LabeledTexts,
        fit: _Fit,
        test: ClassificationMetrics | None,
        pre: PreprocessingConfig,
        hardware: HardwareSetup,
        started: float,
        step: StepPlan,
    ) -> TrainResult:
        cfg, state = self.config, fit.state
        train_seconds = max(fit.seconds - fit.clock.seconds, 1e-9)
        epochs_run = (state.epoch or 0.0) - fit.resumed_epochs
        steady = fit.clock.steady_samples_per_s
        return TrainResult(
            run_dir=self.run_dir,
            best_dir=self.run.best_dir,
            model=cfg.model,
            label_names=data.label_names,
            data=DataSummary(
                source=data.source,
                validation_source=data.validation_source,
                text_columns=data.text_columns,
                train_rows=fit.train_rows,
                validation_rows=len(data.validation),
                test_rows=len(data.test) if data.test else 0,
                train_class_counts=class_counts(train_rows, data.label_names),
            ),
            validation=_validation_history(state.log_history),
            best=BestCheckpoint(
                cfg.metric,
                state.best_metric,
                state.best_global_step if len(data.validation) else state.global_step,
            ),
            stopped_early=state.global_step < state.max_steps,
            epochs_completed=state.epoch or 0.0,
            steps=state.global_step,
            max_steps=state.max_steps,
            test=test,
            training=TrainingStats(
                wall_time_s=round(fit.seconds, 2),
                train_time_s=round(train_seconds, 2),
                evaluation_time_s=round(fit.clock.seconds, 2),
                samples_per_s=round(epochs_run * fit.train_rows / train_seconds, 2),
                steady_samples_per_s=None if steady is None else round(steady, 2),
                total_time_s=round(time.perf_counter() - started, 2),
                train_loss=fit.train_loss,
                device=hardware.device_name,
                precision=hardware.precision,
                threads=torch.get_num_threads(),
                resumed_from=fit.resumed_from,
                world_size=self.world_size,
                effective_batch_size=self.samples_per_step,
                step=step,
            ),
            config=replace(cfg, preprocessing=pre),
            environment=machine_summary(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )


def train(
    config: TrainingConfig,
    callbacks: Sequence[TrainerCallback] = (),
    on_start: Callable[[TrainingPlan], None] | None = None,
) -> TrainResult:
    """Fine-tune a classifier with the recipe in `config`; see `NewsTrainer`.

    Args:
        config: the recipe, the data and the output folder.
        callbacks: Trainer callbacks, e.g. for progress.
        on_start: called once with the `TrainingPlan` before the first step.

    Returns:
        `TrainResult`: the run folder, best checkpoint, validation history and test metrics.

    Raises:
        InputError: bad data or options. ModelError / OfflineError: the model cannot load.
    """
    return NewsTrainer(config, callbacks).train(on_start)


def _compute_metrics(label_names: list[str]) -> Callable[[Any], dict[str, float]]:
    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        full = classification_metrics(labels, logits.argmax(axis=-1), label_names)
        return {
            "accuracy": full.accuracy,
            "f1_macro": full.f1_macro,
            "f1_weighted": full.f1_weighted,
        }

    return compute


def _validation_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "epoch": entry.get("epoch"),
            "step": entry.get("step"),
            "loss": entry.get("eval_loss"),
            "accuracy": entry.get("eval_accuracy"),
            "f1_macro": entry.get("eval_f1_macro"),
            "f1_weighted": entry.get("eval_f1_weighted"),
        }
        for entry in log_history
        if "eval_loss" in entry
    ]


def _complete_checkpoint(checkpoint: Path) -> bool:
    state = checkpoint / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any((checkpoint / name).is_file() for name in ("model.safetensors", "pytorch_model.bin"))


def _checkpoint_epoch(checkpoint: str) -> float:
    state = Path(checkpoint) / "trainer_state.json"
    try:
        return float(json.loads(state.read_text(encoding="utf-8")).get("epoch") or 0.0)
    except (OSError, ValueError) as exc:
        raise NewsclfError(f"Cannot read {state}: {exc}") from exc
