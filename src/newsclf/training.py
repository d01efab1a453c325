"""Fine-tuning with the Hugging Face Trainer: the recipe, the run folder, honest metrics.

`NewsTrainer` prints nothing: whoever calls it (the CLI) passes Trainer callbacks for progress
and an `on_start` hook that receives the `TrainingPlan`; it returns a typed `TrainResult`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
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
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging as hf_logging

from newsclf.atomic import write_json_atomic
from newsclf.config import PARITY_ROWS, Precision, PreprocessingConfig, TrainingConfig
from newsclf.data import LabeledTexts, TrainingData, class_counts, load_hub_data, load_local_data
from newsclf.environment import cpu_cores, machine_summary
from newsclf.errors import InputError, ModelError, NewsclfError
from newsclf.hub import hub_kwargs, offline_model_error, resolve_model
from newsclf.metrics import ClassificationMetrics, classification_metrics
from newsclf.modelcard import write_model_card
from newsclf.pretraining import PretrainingStats, further_pretrain, load_encoder_into
from newsclf.runs import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    MLM_DIR,
    default_run_dir,
    write_parity_sample,
)
from newsclf.techniques import (
    AveragingResult,
    NewsclfTrainer,
    WeightSnapshots,
    average_weights,
)

# -- processes --------------------------------------------------------------------------------


def world_size() -> int:
    """Processes training together, as torchrun and accelerate launch say (WORLD_SIZE); read
    from the environment, so that nothing initialises a process group or CUDA to know it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process): the one that writes files and prints."""
    return int(os.environ.get("RANK", "0")) == 0


# -- hardware ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HardwareSetup:
    """Device-dependent training choices, made in one place."""

    device: torch.device
    precision: str
    # Pad batches to a multiple of this (bounded shapes, tensor-core friendly) on CUDA.
    pad_to_multiple_of: int | None
    # PyTorch's cuDNN attention builds a plan for every new tensor shape: measured on an H100,
    # 90 ms per new shape against about 5 ms for a bert-base batch of 256 rows. Dynamic padding
    # and length grouping make many shapes; flash / memory-efficient attention has no such cost.
    disable_cudnn_attention: bool
    # Fused AdamW: one kernel per step instead of one per parameter tensor (CUDA only).
    optimizer: str

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(0)})"
        return "cpu"

    @contextlib.contextmanager
    def attention(self) -> Iterator[None]:
        """The attention kernels for batches of ever-changing length, restored on exit."""
        if not self.disable_cudnn_attention:
            yield
            return
        was_enabled = torch.backends.cuda.cudnn_sdp_enabled()
        torch.backends.cuda.enable_cudnn_sdp(False)
        try:
            yield
        finally:
            torch.backends.cuda.enable_cudnn_sdp(was_enabled)


def hardware_setup(requested: Precision) -> HardwareSetup:
    """Device, precision (bf16 where the hardware runs it natively, fp16 on older CUDA GPUs,
    else fp32) and the CUDA-only settings.

    Raises:
        InputError: fp16 asked for without CUDA.
    """
    on_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if on_cuda else "cpu")
    if requested == "fp16" and not on_cuda:
        raise InputError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU.")
    if requested != "auto":
        precision = requested
    elif on_cuda:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        # oneDNN reports bf16 support only for AVX512-BF16 or AMX, where bf16 autocast is fast.
        precision = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return HardwareSetup(
        device=device,
        precision=precision,
        pad_to_multiple_of=8 if on_cuda else None,
        disable_cudnn_attention=on_cuda,
        optimizer="adamw_torch_fused" if on_cuda else "adamw_torch",
    )


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPlan:
    """What is about to be trained, where and how: passed to `on_start`."""

    model: str
    source: str
    train_rows: int
    validation_rows: int
    test_rows: int
    label_names: list[str]
    device: str
    precision: str
    threads: int
    cores: int
    run_dir: Path
    resumed_from: str | None
    # Masked-LM epochs before fine-tuning (0: none, or resumed past them).
    mlm_epochs: float = 0.0


@dataclass(frozen=True)
class DataSummary:
    source: str
    validation_source: str
    text_columns: list[str]
    train_rows: int
    validation_rows: int
    test_rows: int
    train_class_counts: dict[str, int]


@dataclass(frozen=True)
class BestCheckpoint:
    metric: str
    value: float | None
    step: int | None


@dataclass(frozen=True)
class TrainingStats:
    # trainer.train() (training and evaluations); train_time_s leaves evaluations out.
    wall_time_s: float
    train_time_s: float
    evaluation_time_s: float
    samples_per_s: float
    # Over the steps after the first fifth: the speed a long run settles at.
    steady_samples_per_s: float | None
    # Everything: loading data and model, tokenizing, training, the test predictions.
    total_time_s: float
    train_loss: float
    device: str
    precision: str
    threads: int
    resumed_from: str | None
    # Processes that trained together (DDP under torchrun / accelerate launch), and the batch
    # one optimizer step saw: per device x processes x accumulation.
    world_size: int = 1
    effective_batch_size: int = 0


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where it is, how it went; `to_dict()` is its metrics.json."""

    run_dir: Path
    best_dir: Path
    model: str
    label_names: list[str]
    data: DataSummary
    validation: list[dict[str, Any]]
    best: BestCheckpoint
    stopped_early: bool
    epochs_completed: float
    steps: int
    max_steps: int
    test: ClassificationMetrics | None
    training: TrainingStats
    config: TrainingConfig
    # Checkpoint averaging (`average_last`): both candidates' validation scores, which was kept.
    averaging: AveragingResult | None = None
    # Within-task masked-LM pre-training (`mlm_epochs`); None when off or resumed past it.
    pretraining: PretrainingStats | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "model": self.model,
            "label_names": self.label_names,
            "data": asdict(self.data),
            "validation": self.validation,
            "best": asdict(self.best),
            "stopped_early": self.stopped_early,
            "epochs_completed": self.epochs_completed,
            "steps": self.steps,
            "max_steps": self.max_steps,
            "averaging": asdict(self.averaging) if self.averaging else None,
            "pretraining": asdict(self.pretraining) if self.pretraining else None,
            "test": self.test.to_dict() if self.test else None,
            "training": asdict(self.training),
            "environment": self.environment,
            "config": self.config.to_dict(),
        }


# -- the trainer ------------------------------------------------------------------------------


class TokenizedTexts(torch.utils.data.Dataset):
    """Texts tokenized once, without padding; the collator pads each batch to its longest row."""

    def __init__(self, data: LabeledTexts, tokenizer: PreTrainedTokenizerBase, max_length: int):
        encoded = tokenizer(data.texts, truncation=True, max_length=max_length)
        keys = list(encoded.keys())
        self.features = [
            {**{k: encoded[k][i] for k in keys}, "labels": label}
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


class NewsTrainer:
    """Fine-tunes a sequence classifier with the recipe in `config` and writes a run folder
    (see `newsclf.runs`).

    Under torchrun or accelerate launch (WORLD_SIZE > 1) the Trainer runs DDP: every process
    trains on its share of each batch, and rank 0 alone writes the run folder (which
    `output_dir` must name, so that all processes agree on it) and evaluates on the test split.

    Args:
        config: the recipe, data and output folder.
        callbacks: Trainer callbacks (progress display, logging); the trainer adds early
            stopping itself.
        pretraining_callbacks: Trainer callbacks for the masked-LM step (`mlm_epochs`).

    Raises:
        InputError: several processes and no `output_dir`.
    """

    def __init__(
        self,
        config: TrainingConfig,
        callbacks: Sequence[TrainerCallback] = (),
        pretraining_callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.pretraining_callbacks = list(pretraining_callbacks)
        self.world_size = world_size()
        self.is_main = is_main_process()
        if self.world_size > 1 and config.output_dir is None:
            raise InputError(
                f"{self.world_size} processes train together: give --output-dir, the one run "
                "directory they share (each would otherwise pick its own timestamped one)."
            )
        self.run_dir = Path(config.output_dir or default_run_dir(config.model))

    @classmethod
    def resume(cls, run_dir: Path, callbacks: Sequence[TrainerCallback] = ()) -> NewsTrainer:
        """The trainer of an interrupted run, with the configuration it was started with.

        Raises:
            InputError: `run_dir` is not a newsclf run folder.
        """
        config_path = Path(run_dir) / CONFIG_FILE
        if not config_path.is_file():
            raise InputError(f"--resume: {run_dir} has no {CONFIG_FILE}; is it a newsclf run?")
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
        data = self._load_data()
        pre = replace(cfg.preprocessing, text_columns=data.text_columns)
        model, tokenizer = self._load_model(data.label_names)
        hardware = hardware_setup(cfg.precision)
        train_set = data.train
        if cfg.max_train_samples and cfg.max_train_samples < len(train_set):
            train_set = train_set.subset(range(cfg.max_train_samples))
        resume_from = self._last_checkpoint() if cfg.resume else None
        # Without validation rows (--validation-fraction 0) every row trains: no evaluations,
        # no early stopping, the last weights are kept; export's parity rows come from train.
        self._prepare_run_dir(data.validation if len(data.validation) else train_set)
        if on_start is not None and self.is_main:
            on_start(self._plan(data, len(train_set), hardware, resume_from))
        # A fine-tuning checkpoint already holds the pre-trained encoder's descendants.
        pretraining = (
            self._further_pretrain(model, tokenizer, train_set.texts, hardware)
            if cfg.mlm_epochs and resume_from is None
            else None
        )

        train_ds = TokenizedTexts(train_set, tokenizer, pre.max_length)
        val_ds = (
            TokenizedTexts(data.validation, tokenizer, pre.max_length)
            if len(data.validation)
            else None
        )
        clock = StepClock(cfg.batch_size * cfg.grad_accum * self.world_size)
        trainer = self._trainer(model, tokenizer, train_ds, val_ds, data.label_names, hardware)
        trainer.add_callback(clock)
        snapshots = WeightSnapshots(cfg.average_last) if cfg.average_last else None
        if snapshots is not None:
            trainer.add_callback(snapshots)
        fit_started = time.perf_counter()
        with hardware.attention():
            output = trainer.train(resume_from_checkpoint=resume_from)
        # Under DDP, every process has loaded the best checkpoint before rank 0 goes on (and
        # eventually deletes the checkpoints); a no-op for one process.
        trainer.accelerator.wait_for_everyone()
        fit_seconds = time.perf_counter() - fit_started
        averaging = (
            self._average_checkpoints(trainer, snapshots, data, tokenizer, pre, hardware)
            if snapshots is not None
            else None
        )

        best_dir = self._save_best(trainer, tokenizer, pre)
        test = self._evaluate_test(best_dir, tokenizer, data, pre, hardware)
        state = trainer.state
        train_seconds = max(fit_seconds - clock.seconds, 1e-9)
        epochs_run = (state.epoch or 0.0) - (_checkpoint_epoch(resume_from) if resume_from else 0)
        result = TrainResult(
            run_dir=self.run_dir,
            best_dir=best_dir,
            model=cfg.model,
            label_names=data.label_names,
            data=DataSummary(
                source=data.source,
                validation_source=data.validation_source,
                text_columns=data.text_columns,
                train_rows=len(train_ds),
                validation_rows=len(data.validation),
                test_rows=len(data.test) if data.test else 0,
                train_class_counts=class_counts(train_set, data.label_names),
            ),
            validation=_validation_history(state.log_history),
            best=BestCheckpoint(
                cfg.metric,
                state.best_metric,
                state.best_global_step if val_ds is not None else state.global_step,
            ),
            stopped_early=state.global_step < state.max_steps,
            epochs_completed=state.epoch or 0.0,
            steps=state.global_step,
            max_steps=state.max_steps,
            test=test,
            training=TrainingStats(
                wall_time_s=round(fit_seconds, 2),
                train_time_s=round(train_seconds, 2),
                evaluation_time_s=round(clock.seconds, 2),
                samples_per_s=round(epochs_run * len(train_ds) / train_seconds, 2),
                steady_samples_per_s=_rounded(clock.steady_samples_per_s),
                total_time_s=round(time.perf_counter() - started, 2),
                train_loss=output.training_loss,
                device=hardware.device_name,
                precision=hardware.precision,
                threads=torch.get_num_threads(),
                resumed_from=resume_from,
                world_size=self.world_size,
                effective_batch_size=cfg.batch_size * self.world_size * cfg.grad_accum,
            ),
            config=replace(cfg, preprocessing=pre),
            averaging=averaging,
            pretraining=pretraining,
            environment=machine_summary(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if self.is_main:
            self._finish_run_dir(result)
        return result

    # -- steps ------------------------------------------------------------------------------

    def _check_run_dir(self) -> None:
        if self.config.resume and not (self.run_dir / CONFIG_FILE).is_file():
            raise InputError(f"--resume: {self.run_dir} is not a newsclf run directory.")
        if not self.config.resume and (self.run_dir / BEST_DIR).exists():
            raise InputError(
                f"{self.run_dir} already holds a finished run; choose another --output-dir."
            )

    def _load_data(self) -> TrainingData:
        return load_training_data(self.config)

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

    def _further_pretrain(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        texts: list[str],
        hardware: HardwareSetup,
    ) -> PretrainingStats:
        source, is_local = resolve_model(self.config.model)
        with hardware.attention():
            encoder, stats = further_pretrain(
                source,
                tokenizer,
                texts,
                self.config,
                self._hardware_args(hardware),
                hardware.pad_to_multiple_of,
                self.run_dir / MLM_DIR,
                hub_kwargs(is_local),
                write=self.is_main,
                callbacks=self.pretraining_callbacks,
            )
        load_encoder_into(model, encoder)
        return stats

    def _prepare_run_dir(self, parity_rows: LabeledTexts) -> None:
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.resume:
            self.config.save(self.run_dir / CONFIG_FILE)
        write_parity_sample(self.run_dir, parity_rows.texts, parity_rows.labels, PARITY_ROWS)

    def _plan(
        self,
        data: TrainingData,
        train_rows: int,
        hardware: HardwareSetup,
        resumed_from: str | None,
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
            mlm_epochs=self.config.mlm_epochs if resumed_from is None else 0.0,
        )

    def _last_checkpoint(self) -> str:
        folder = self.run_dir / CHECKPOINTS_DIR
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise InputError(f"--resume: {folder} holds no checkpoint to continue from.")
        return last

    def _trainer(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        train_ds: TokenizedTexts,
        val_ds: TokenizedTexts | None,
        label_names: list[str],
        hardware: HardwareSetup,
    ) -> Trainer:
        evaluate = val_ds is not None
        # A new EarlyStoppingCallback per run: it keeps its patience counter.
        stopping = [EarlyStoppingCallback(early_stopping_patience=self.config.patience)]
        trainer = NewsclfTrainer(
            model=model,
            layer_decay=self.config.layer_decay,
            rdrop=self.config.rdrop,
            args=self._training_args(hardware, evaluate),
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(
                tokenizer, pad_to_multiple_of=hardware.pad_to_multiple_of
            ),
            compute_metrics=_make_compute_metrics(label_names) if evaluate else None,
            callbacks=[*(stopping if evaluate else []), *self.callbacks],
        )
        trainer.remove_callback(PrinterCallback)
        return trainer

    def _training_args(self, hardware: HardwareSetup, evaluate: bool) -> TrainingArguments:
        cfg = self.config
        strategy = "steps" if cfg.eval_steps else "epoch"
        return TrainingArguments(
            output_dir=str(self.run_dir / CHECKPOINTS_DIR),
            learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.eval_batch_size,
            num_train_epochs=cfg.epochs,
            weight_decay=cfg.weight_decay,
            gradient_accumulation_steps=cfg.grad_accum,
            # A float below 1 is a share of the steps.
            warmup_steps=cfg.warmup_ratio,
            eval_strategy=strategy if evaluate else "no",
            save_strategy=strategy,
            eval_steps=cfg.eval_steps or None,
            save_steps=cfg.eval_steps or None,
            save_total_limit=2,
            load_best_model_at_end=evaluate,
            metric_for_best_model=cfg.metric if evaluate else None,
            greater_is_better=True if evaluate else None,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            seed=cfg.data_order_seed,
            logging_steps=10,
            disable_tqdm=True,
            report_to="none",
            dataloader_num_workers=0,
            save_only_model=False,
            **self._hardware_args(hardware),
        )

    @staticmethod
    def _hardware_args(hardware: HardwareSetup) -> dict[str, Any]:
        return {
            "bf16": hardware.precision == "bf16",
            "fp16": hardware.precision == "fp16",
            "optim": hardware.optimizer,
            "use_cpu": hardware.device.type == "cpu",
        }

    def _average_checkpoints(
        self,
        trainer: Trainer,
        snapshots: WeightSnapshots,
        data: TrainingData,
        tokenizer: PreTrainedTokenizerBase,
        pre: PreprocessingConfig,
        hardware: HardwareSetup,
    ) -> AveragingResult | None:
        """Score the best checkpoint (which the Trainer has loaded) and the average of the last
        evaluations' weights on the validation split, in fp32 both, and keep the better (the
        average on a tie). None with fewer than two snapshots (a resumed run's are lost).
        Every DDP process computes the same thing, so all keep the same weights."""
        if len(snapshots.snapshots) < 2:
            return None
        metric = self.config.metric
        best = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
        averaged = average_weights(snapshots.snapshots)
        # A fresh fp32 model: the Trainer's forward runs under accelerate's autocast.
        scorer = AutoModelForSequenceClassification.from_config(
            trainer.model.config, dtype=torch.float32
        ).to(hardware.device)

        def score(weights: dict[str, torch.Tensor]) -> float:
            scorer.load_state_dict(weights)
            return validation_score(
                scorer,
                tokenizer,
                data.validation,
                data.label_names,
                metric,
                self.config.eval_batch_size,
                pre.max_length,
            )

        with hardware.attention():
            best_score, average_score = score(best), score(averaged)
        kept = average_score >= best_score
        if kept:
            trainer.model.load_state_dict(averaged)
        return AveragingResult(
            steps=[s.step for s in snapshots.snapshots],
            metric=metric,
            best_checkpoint=best_score,
            average=average_score,
            kept=kept,
        )

    def _save_best(
        self, trainer: Trainer, tokenizer: PreTrainedTokenizerBase, pre: PreprocessingConfig
    ) -> Path:
        best_dir = self.run_dir / BEST_DIR
        trainer.save_model(str(best_dir))  # on rank 0 only (the Trainer's should_save)
        if not self.is_main:
            return best_dir
        tokenizer.save_pretrained(str(best_dir))
        pre.save(best_dir)
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
            logits = predict_logits(
                saved, tokenizer, data.test.texts, self.config.eval_batch_size, pre.max_length
            )
        return classification_metrics(
            data.test.labels, np.argmax(logits, axis=-1), data.label_names
        )

    def _finish_run_dir(self, result: TrainResult) -> None:
        write_json_atomic(self.run_dir / METRICS_FILE, result.to_dict())
        write_model_card(result)
        shutil.rmtree(self.run_dir / CHECKPOINTS_DIR, ignore_errors=True)
        # The pre-trained encoder is only kept for --resume; best/ descends from it.
        shutil.rmtree(self.run_dir / MLM_DIR, ignore_errors=True)


def load_training_data(cfg: TrainingConfig) -> TrainingData:
    """The train, validation and test rows a run with `cfg` uses (the same split every time).

    Raises:
        InputError, OfflineError: bad or unreachable data.
    """
    pre = cfg.preprocessing
    common = {
        "text_columns": pre.text_columns,
        "label_column": pre.label_column,
        "clean": pre.clean,
        "separator": pre.text_separator,
        "validation_fraction": cfg.validation_fraction,
        "seed": cfg.seed,
    }
    if cfg.train_file is not None:
        return load_local_data(cfg.train_file, cfg.validation_file, cfg.test_file, **common)
    if not cfg.dataset:
        raise InputError("Give --train-file (a local file) or --dataset (a hub dataset).")
    return load_hub_data(cfg.dataset, **common)


def validation_score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    validation: LabeledTexts,
    label_names: list[str],
    metric: str,
    batch_size: int,
    max_length: int,
) -> float:
    """`metric` of an fp32 forward of `model` on the validation rows."""
    logits = predict_logits(model, tokenizer, validation.texts, batch_size, max_length)
    scores = classification_metrics(validation.labels, np.argmax(logits, axis=-1), label_names)
    return float(getattr(scores, metric))


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


def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int,
    max_length: int,
) -> np.ndarray:
    """fp32 logits for `texts`, batched by length, returned in the texts' order."""
    model.eval()
    device = next(model.parameters()).device
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
    order = np.argsort(lengths, kind="stable")
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            logits[rows] = model(**batch).logits.float().cpu().numpy()
    return logits


def _make_compute_metrics(label_names: list[str]) -> Callable[[Any], dict[str, float]]:
    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        full = classification_metrics(labels, np.argmax(logits, axis=-1), label_names)
        return {
            "accuracy": full.accuracy,
            "f1_macro": full.f1_macro,
            "f1_weighted": full.f1_weighted,
        }

    return compute


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


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


def _checkpoint_epoch(checkpoint: str) -> float:
    state = Path(checkpoint) / "trainer_state.json"
    try:
        return float(json.loads(state.read_text(encoding="utf-8")).get("epoch") or 0.0)
    except (OSError, ValueError) as exc:
        raise NewsclfError(f"Cannot read {state}: {exc}") from exc
