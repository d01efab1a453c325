"""Fine-tuning with the Hugging Face Trainer: the recipe, the run directory, honest metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging as hf_logging

from newsclf.callbacks import RichProgressCallback
from newsclf.config import PARITY_SAMPLE_FILE, PreprocessingConfig, TrainingConfig
from newsclf.data import LabeledTexts, TrainingData, class_counts, load_hub_data, load_local_data
from newsclf.environment import cpu_cores, machine_summary
from newsclf.errors import InputError, ModelError, NewsclfError
from newsclf.hub import hub_kwargs, offline_model_error, resolve_model
from newsclf.metrics import classification_metrics
from newsclf.modelcard import write_model_card

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
BEST_DIR = "best"
CHECKPOINTS_DIR = "checkpoints"
PARITY_SAMPLE_ROWS = 256


@dataclass
class TrainResult:
    run_dir: Path
    best_dir: Path
    metrics: dict[str, Any]


@contextlib.contextmanager
def varied_shapes_attention(device: torch.device) -> Iterator[None]:
    """Attention kernels that suit batches of ever-changing length (dynamic padding, length
    grouping). On CUDA, PyTorch prefers cuDNN attention, which builds a plan for every new
    shape: measured on an H100, 90 ms per new shape against about 5 ms for a bert-base batch of
    256 rows; training with length grouping (many shapes) ran at half the speed of fp32 random
    batches. Flash / memory-efficient attention has no per-shape cost."""
    if device.type != "cuda":
        yield
        return
    was_enabled = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was_enabled)


def choose_precision(requested: str, device: torch.device) -> str:
    """bf16 where the hardware runs it natively, fp16 on older CUDA GPUs, else fp32."""
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise InputError(f"--precision must be auto, bf16, fp16 or fp32, not {requested!r}.")
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise InputError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU.")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # oneDNN reports bf16 support only for AVX512-BF16 or AMX, where bf16 autocast is fast.
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def default_run_dir(model: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    short = Path(model).name if model != "embedded" else "minilm-embedded"
    return Path("models") / f"{stamp}-{short.replace('/', '-')}"


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


class NewsTrainer:
    """Fine-tunes a sequence classifier with the recipe in `config` and writes a run directory:

    run_dir/best/          a standard Hugging Face folder + newsclf_preprocessing.json
    run_dir/metrics.json   validation history, test metrics, speed, device, versions, config
    run_dir/README.md      a short model card
    """

    def __init__(
        self,
        config: TrainingConfig,
        console: Console | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.callbacks = list(callbacks or [])
        self.run_dir = Path(config.output_dir or default_run_dir(config.model))

    # -- public ------------------------------------------------------------------------------

    @classmethod
    def resume(
        cls,
        run_dir: Path,
        console: Console | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> NewsTrainer:
        """The trainer of an interrupted run, with the configuration it was started with."""
        config_path = Path(run_dir) / CONFIG_FILE
        if not config_path.is_file():
            raise InputError(f"--resume: {run_dir} has no {CONFIG_FILE}; is it a newsclf run?")
        raw = json.loads(config_path.read_text(encoding="utf-8"))
        preprocessing = PreprocessingConfig(**raw.pop("preprocessing"))
        for key in ("train_file", "validation_file", "test_file", "output_dir"):
            if raw.get(key):
                raw[key] = Path(raw[key])
        config = TrainingConfig(**raw, preprocessing=preprocessing)
        return cls(replace(config, resume=True, output_dir=Path(run_dir)), console, callbacks)

    def train(self) -> TrainResult:
        cfg = self.config
        started = time.perf_counter()
        self._validate()
        data = self._load_data()
        pre = replace(cfg.preprocessing, text_columns=data.text_columns)
        model, tokenizer = self._load_model(data.label_names)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        precision = choose_precision(cfg.precision, device)

        train_set = data.train
        if cfg.max_train_samples and cfg.max_train_samples < len(train_set):
            train_set = train_set.subset(range(cfg.max_train_samples))
        self._prepare_run_dir()
        _write_parity_sample(self.run_dir / PARITY_SAMPLE_FILE, data.validation, PARITY_SAMPLE_ROWS)
        self._report_start(data, len(train_set), device, precision)

        train_ds = TokenizedTexts(train_set, tokenizer, pre.max_length)
        val_ds = TokenizedTexts(data.validation, tokenizer, pre.max_length)
        progress = RichProgressCallback(
            self.console, cfg.batch_size * cfg.grad_accum, metric=cfg.metric
        )
        trainer = self._trainer(
            model, tokenizer, train_ds, val_ds, data.label_names, device, precision, progress
        )

        training_started = time.perf_counter()
        resume_from = self._last_checkpoint() if cfg.resume else None
        with varied_shapes_attention(device):
            output = trainer.train(resume_from_checkpoint=resume_from)
        training_wall = time.perf_counter() - training_started

        best_dir = self.run_dir / BEST_DIR
        trainer.save_model(str(best_dir))
        tokenizer.save_pretrained(str(best_dir))
        pre.save(best_dir)

        test_metrics = None
        if data.test is not None:
            # From the saved model in fp32: the figures export and classify reproduce. (The
            # Trainer's model still runs under autocast: accelerate wraps its forward.)
            saved = AutoModelForSequenceClassification.from_pretrained(
                str(best_dir), dtype=torch.float32
            ).to(device)
            with varied_shapes_attention(device):
                logits = predict_logits(
                    saved, tokenizer, data.test.texts, cfg.eval_batch_size, pre.max_length
                )
            test_metrics = classification_metrics(
                data.test.labels, np.argmax(logits, axis=-1), data.label_names
            )

        state = trainer.state
        train_seconds = max(training_wall - progress.evaluation_seconds, 1e-9)
        epochs_run = (state.epoch or 0.0) - (_checkpoint_epoch(resume_from) if resume_from else 0.0)
        metrics = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": cfg.model,
            "label_names": data.label_names,
            "data": {
                "source": data.source,
                "validation_source": data.validation_source,
                "text_columns": data.text_columns,
                "train_rows": len(train_ds),
                "validation_rows": len(val_ds),
                "test_rows": len(data.test) if data.test else 0,
                "train_class_counts": class_counts(train_set, data.label_names),
            },
            "validation": _validation_history(state.log_history),
            "best": {
                "metric": cfg.metric,
                "value": state.best_metric,
                "step": state.best_global_step,
            },
            "stopped_early": state.global_step < state.max_steps,
            "epochs_completed": state.epoch,
            "steps": state.global_step,
            "max_steps": state.max_steps,
            "test": test_metrics,
            "training": {
                # trainer.train() (training and evaluations); train_time_s leaves evaluations out.
                "wall_time_s": round(training_wall, 2),
                "train_time_s": round(train_seconds, 2),
                "evaluation_time_s": round(progress.evaluation_seconds, 2),
                "samples_per_s": round(epochs_run * len(train_ds) / train_seconds, 2),
                # Everything: loading data and model, tokenizing, training, the test predictions.
                "total_time_s": round(time.perf_counter() - started, 2),
                "train_loss": output.training_loss,
                "device": _device_name(device),
                "precision": precision,
                "threads": torch.get_num_threads(),
                "resumed_from": str(resume_from) if resume_from else None,
            },
            "environment": machine_summary(),
            "config": cfg.to_dict() | {"preprocessing": pre.__dict__},
        }
        (self.run_dir / METRICS_FILE).write_text(
            json.dumps(metrics, indent=2) + "\n", encoding="utf-8"
        )
        write_model_card(self.run_dir, metrics)
        shutil.rmtree(self.run_dir / CHECKPOINTS_DIR, ignore_errors=True)
        return TrainResult(self.run_dir, best_dir, metrics)

    def _trainer(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        train_ds: TokenizedTexts,
        val_ds: TokenizedTexts,
        label_names: list[str],
        device: torch.device,
        precision: str,
        progress: RichProgressCallback,
    ) -> Trainer:
        trainer = Trainer(
            model=model,
            args=self._training_args(device, precision),
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(
                tokenizer, pad_to_multiple_of=8 if device.type == "cuda" else None
            ),
            compute_metrics=_make_compute_metrics(label_names),
            callbacks=[
                EarlyStoppingCallback(early_stopping_patience=self.config.patience),
                progress,
                *self.callbacks,
            ],
        )
        trainer.remove_callback(PrinterCallback)
        return trainer

    # -- steps -------------------------------------------------------------------------------

    def _validate(self) -> None:
        cfg = self.config
        positive = {
            "--epochs": cfg.epochs,
            "--batch-size": cfg.batch_size,
            "--eval-batch-size": cfg.eval_batch_size,
            "--grad-accum": cfg.grad_accum,
            "--max-length": cfg.preprocessing.max_length,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise InputError(f"{flag} must be positive, not {value}.")
        if cfg.learning_rate < 0:
            raise InputError(f"--learning-rate must not be negative, not {cfg.learning_rate}.")
        if cfg.patience < 1:
            raise InputError(f"--patience must be at least 1, not {cfg.patience}.")
        if cfg.metric not in ("accuracy", "f1_macro", "f1_weighted"):
            raise InputError(
                f"--metric must be accuracy, f1_macro or f1_weighted, not {cfg.metric}."
            )
        if cfg.resume and not (self.run_dir / CONFIG_FILE).is_file():
            raise InputError(f"--resume: {self.run_dir} is not a newsclf run directory.")
        if not cfg.resume and (self.run_dir / BEST_DIR).exists():
            raise InputError(
                f"{self.run_dir} already holds a finished run; choose another --output-dir."
            )

    def _load_data(self) -> TrainingData:
        cfg, pre = self.config, self.config.preprocessing
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

    def _load_model(
        self, label_names: list[str]
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        source, is_local = resolve_model(self.config.model)
        kwargs = hub_kwargs(is_local)
        # Our own output says what loads; the libraries' bars and "newly initialized" notes
        # would only repeat it.
        logging.getLogger("transformers").setLevel(logging.ERROR)
        hf_logging.disable_progress_bar()
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

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.resume:
            cfg = self.config.to_dict()
            (self.run_dir / CONFIG_FILE).write_text(
                json.dumps(cfg, indent=2) + "\n", encoding="utf-8"
            )

    def _last_checkpoint(self) -> str:
        folder = self.run_dir / CHECKPOINTS_DIR
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise InputError(f"--resume: {folder} holds no checkpoint to continue from.")
        self.console.print(f"Resuming from [bold]{last}[/]")
        return last

    def _training_args(self, device: torch.device, precision: str) -> TrainingArguments:
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
            warmup_steps=cfg.warmup_ratio,
            eval_strategy=strategy,
            save_strategy=strategy,
            eval_steps=cfg.eval_steps or None,
            save_steps=cfg.eval_steps or None,
            save_total_limit=2,
            load_best_model_at_end=True,
            metric_for_best_model=cfg.metric,
            greater_is_better=True,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            use_cpu=device.type == "cpu",
            seed=cfg.seed,
            logging_steps=10,
            disable_tqdm=True,
            report_to="none",
            dataloader_num_workers=0,
            save_only_model=False,
        )

    def _report_start(
        self, data: TrainingData, train_rows: int, device: torch.device, precision: str
    ) -> None:
        cfg = self.config
        self.console.print(
            f"[bold]newsclf train[/] {cfg.model} on {data.source}: "
            f"{train_rows:,} train / {len(data.validation):,} validation / "
            f"{len(data.test) if data.test else 0:,} test rows, {len(data.label_names)} classes"
        )
        self.console.print(
            f"device [bold]{_device_name(device)}[/], precision [bold]{precision}[/], "
            f"{torch.get_num_threads()} threads on {cpu_cores()} cores; run dir {self.run_dir}"
        )


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


def _make_compute_metrics(label_names: list[str]) -> Any:
    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        full = classification_metrics(labels, np.argmax(logits, axis=-1), label_names)
        return {k: full[k] for k in ("accuracy", "f1_macro", "f1_weighted")}

    return compute


def _validation_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    history = []
    for entry in log_history:
        if "eval_loss" in entry:
            history.append(
                {
                    "epoch": entry.get("epoch"),
                    "step": entry.get("step"),
                    "loss": entry.get("eval_loss"),
                    "accuracy": entry.get("eval_accuracy"),
                    "f1_macro": entry.get("eval_f1_macro"),
                    "f1_weighted": entry.get("eval_f1_weighted"),
                }
            )
    return history


def _write_parity_sample(path: Path, data: LabeledTexts, rows: int) -> None:
    lines = [
        json.dumps({"text": text, "label": label}, ensure_ascii=False)
        for text, label in zip(data.texts[:rows], data.labels[:rows], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _checkpoint_epoch(checkpoint: str) -> float:
    state = Path(checkpoint) / "trainer_state.json"
    try:
        return float(json.loads(state.read_text(encoding="utf-8")).get("epoch") or 0.0)
    except (OSError, ValueError) as exc:
        raise NewsclfError(f"Cannot read {state}: {exc}") from exc


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"
