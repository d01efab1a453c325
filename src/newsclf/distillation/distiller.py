"""`distill()`: a smaller student that keeps its teacher's labels.

The student is the teacher's architecture with K of its encoder layers (`spread_layers`),
started from the teacher's weights, and trained with `NewsTrainer` on the teacher's training
split (the same rows and validation split as the teacher's own run, early stopping on it) with
a loss that mixes the teacher's soft targets and the true labels (`distillation_loss`).
Unlabelled transfer texts, when given, are labelled by the teacher and trained on with the
soft term alone. The teacher's logits are computed once and cached in the run folder
(RUN/teacher_logits.safetensors), so that --resume does not run the teacher again. The test
split is read for the report only: the student's and the teacher's test accuracy, and how
often they agree.

The result is a run folder like `train`'s (best/, metrics.json with "kind": "distill", the
parity, validation and calibration samples, a model card) that `export` takes unchanged; its
settings are in distill_config.json (not train_config.json: `newsclf train --resume` cannot
continue a student).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from newsclf.artifacts import RunFolder
from newsclf.distillation.config import DistillConfig
from newsclf.distillation.losses import NO_LABEL, TEACHER_LOGITS, student_loss
from newsclf.distillation.student import make_student, spread_layers
from newsclf.distillation.teacher import Teacher, find_teacher, load_classifier
from newsclf.errors import InputError, ModelError
from newsclf.io import atomic_file, choose_text_columns, read_table, texts_from_rows
from newsclf.metrics import ClassificationMetrics, classification_metrics
from newsclf.training import (
    LabeledTexts,
    NewsTrainer,
    TrainingConfig,
    TrainingData,
    TrainingPlan,
    TrainResult,
    default_run_dir,
    load_training_data,
    predict_logits,
    world_size,
)

# The splits whose teacher logits are cached before training (the test split's are computed
# for the report only, after training).
CACHED_SPLITS = ("train", "transfer", "validation")


@dataclass(frozen=True)
class DistillPlan:
    """What is about to be distilled: passed to `on_start` before the first step."""

    teacher: Path
    teacher_kind: str
    teacher_layers: int
    layers: int
    kept_layers: list[int]
    train_rows: int
    transfer_rows: int
    transfer_rows_left_out: int
    temperature: float
    soft_weight: float
    # Whether the teacher's logits came from the run folder's cache (--resume).
    teacher_logits_cached: bool
    training: TrainingPlan


@dataclass(frozen=True)
class SplitComparison:
    """The student and the teacher on one labelled split (fp32 forwards of both)."""

    rows: int
    # The share of rows on which the student predicts the teacher's class.
    agreement: float
    student: ClassificationMetrics
    teacher: ClassificationMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "agreement": self.agreement,
            "student_accuracy": self.student.accuracy,
            "student_f1_macro": self.student.f1_macro,
            "teacher_accuracy": self.teacher.accuracy,
            "teacher_f1_macro": self.teacher.f1_macro,
        }


@dataclass(frozen=True)
class DistillResult:
    """A finished student: its run folder, what it was cut from, how it trained, and how it
    compares with its teacher; `to_dict()` is its metrics.json ("kind": "distill")."""

    run_dir: Path
    best_dir: Path
    teacher: Path
    teacher_kind: str
    teacher_layers: int
    layers: int
    kept_layers: list[int]
    temperature: float
    soft_weight: float
    transfer_file: Path | None
    train_rows: int
    transfer_rows: int
    transfer_rows_left_out: int
    # On the validation and test splits (None without one).
    validation: SplitComparison | None
    test: SplitComparison | None
    # The student's training run (validation history, best step, test metrics, speed).
    training: TrainResult
    config: DistillConfig

    def to_dict(self) -> dict[str, Any]:
        record = self.training.to_dict()
        record.pop("kind")
        return {
            "kind": "distill",
            **record,
            "distill": {
                "teacher": str(self.teacher),
                "teacher_kind": self.teacher_kind,
                "teacher_layers": self.teacher_layers,
                "layers": self.layers,
                "kept_layers": self.kept_layers,
                "temperature": self.temperature,
                "soft_weight": self.soft_weight,
                "transfer_file": str(self.transfer_file) if self.transfer_file else None,
                "train_rows": self.train_rows,
                "transfer_rows": self.transfer_rows,
                "transfer_rows_left_out": self.transfer_rows_left_out,
                "agreement": {
                    "validation": self.validation.agreement if self.validation else None,
                    "test": self.test.agreement if self.test else None,
                },
                "validation": self.validation.to_dict() if self.validation else None,
                "test": self.test.to_dict() if self.test else None,
                "config": self.config.to_dict(),
            },
        }


class Distiller:
    """Distils the teacher run of `config` into a student run folder.

    The checks that need no training (the teacher is a finished run, K is below its depth,
    the output folder is free, the transfer file exists) run when it is made, so that a
    mistake is reported at once.

    Args:
        config: the teacher, the student's depth, the soft targets, the recipe.
        callbacks: Trainer callbacks (progress display).
        on_stage: called with a short sentence before each long step that is not training
            (the teacher labelling the rows, the final comparison).

    Raises:
        InputError: bad options, a finished output folder, several processes.
        ModelError: the teacher is not a finished run (the message says what it is).
    """

    def __init__(
        self,
        config: DistillConfig,
        callbacks: Sequence[TrainerCallback] = (),
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        if world_size() > 1:
            raise InputError(
                "newsclf distill runs in one process; start it without torchrun or "
                "accelerate launch."
            )
        if config.resume:
            config = self._saved(config)
        self.config = config
        self.callbacks = list(callbacks)
        self.on_stage = on_stage or (lambda message: None)
        assert config.teacher is not None and config.layers is not None  # __post_init__
        self.teacher: Teacher = find_teacher(config.teacher)
        self.kept = spread_layers(self.teacher.depth, config.layers)
        self.run = RunFolder(
            config.output_dir
            or default_run_dir(f"{self.teacher.run_dir.name}-{config.layers}layers")
        )
        if not config.resume and self.run.best_dir.exists():
            raise InputError(
                f"{self.run.path} already holds a finished run; choose another --output-dir."
            )
        if config.transfer_file is not None and not config.transfer_file.is_file():
            raise InputError(f"--transfer-file {config.transfer_file}: no such file.")
        self.training = self._training_config()

    @staticmethod
    def _saved(config: DistillConfig) -> DistillConfig:
        assert config.output_dir is not None
        run = RunFolder(config.output_dir)
        if not run.distill_config_file.is_file():
            raise InputError(
                f"--resume: {run.path} is not a distillation run folder (no "
                f"{run.distill_config_file.name})."
            )
        if run.metrics_file.is_file() and run.best_dir.is_dir():
            raise InputError(f"--resume: {run.path} is already finished; nothing to continue.")
        saved = DistillConfig.load(run.distill_config_file)
        return replace(saved, output_dir=config.output_dir, resume=True)

    def _training_config(self) -> TrainingConfig:
        """The teacher's data, split and recipe, with the student's changes: what the
        student's NewsTrainer runs (it never loads `model`, which names the source)."""
        recipe = self.config.recipe()
        recipe.pop("max_train_samples", None)  # applied to the labelled rows, before
        return self.teacher.training.replace(
            model=str(self.teacher.student_source.absolute()),
            output_dir=self.run.path,
            resume=self.config.resume,
            rdrop=0.0,
            max_train_samples=None,
            **recipe,
        )

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def samples_per_step(self) -> int:
        return self.training.batch_size * self.training.grad_accum

    def distill(self, on_start: Callable[[DistillPlan], None] | None = None) -> DistillResult:
        """Label the rows with the teacher (or read its cached logits), train the student,
        compare it with the teacher, write the run folder.

        Raises:
            InputError, ModelError, OfflineError: bad data, models or options.
        """
        cfg, teacher = self.config, self.teacher
        data = load_training_data(self.training)
        if data.label_names != teacher.label_names:
            raise ModelError(
                f"The teacher's classes ({', '.join(teacher.label_names)}) are not those of "
                f"its training data ({', '.join(data.label_names)})."
            )
        train_rows = data.train
        if cfg.max_train_samples and cfg.max_train_samples < len(train_rows):
            train_rows = train_rows.subset(range(cfg.max_train_samples))
        transfer, left_out = self._transfer_texts(data)
        self.run.path.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            cfg.save(self.run.distill_config_file)
        logits, cached = self._teacher_logits(train_rows.texts, transfer, data.validation.texts)

        student_start = load_classifier(teacher.student_source)
        student = make_student(student_start, self.kept)
        del student_start
        tokenizer = self._tokenizer()
        rows = LabeledTexts(
            train_rows.texts + transfer, train_rows.labels + [NO_LABEL] * len(transfer)
        )
        targets = np.concatenate([logits["train"], logits["transfer"]])
        trainer = NewsTrainer(
            replace(self.training, resume=cfg.resume and self._has_checkpoint()),
            self.callbacks,
            data=replace(data, train=rows),
            model=(student, tokenizer),
            loss=student_loss(cfg.temperature, cfg.soft_weight),
            train_columns={TEACHER_LOGITS: [row.tolist() for row in targets]},
            records=False,
        )

        def started(plan: TrainingPlan) -> None:
            if on_start is not None:
                on_start(
                    DistillPlan(
                        teacher=teacher.run_dir,
                        teacher_kind=teacher.kind,
                        teacher_layers=teacher.depth,
                        layers=len(self.kept),
                        kept_layers=self.kept,
                        train_rows=len(train_rows),
                        transfer_rows=len(transfer),
                        transfer_rows_left_out=left_out,
                        temperature=cfg.temperature,
                        soft_weight=cfg.soft_weight,
                        teacher_logits_cached=cached,
                        training=plan,
                    )
                )

        trained = trainer.train(on_start=started)
        self.on_stage("Comparing the student with the teacher (fp32, validation and test)")
        validation, test = self._compare(data, logits["validation"])
        result = DistillResult(
            run_dir=self.run.path,
            best_dir=self.run.best_dir,
            teacher=teacher.run_dir.absolute(),
            teacher_kind=teacher.kind,
            teacher_layers=teacher.depth,
            layers=len(self.kept),
            kept_layers=self.kept,
            temperature=cfg.temperature,
            soft_weight=cfg.soft_weight,
            transfer_file=cfg.transfer_file,
            train_rows=len(train_rows),
            transfer_rows=len(transfer),
            transfer_rows_left_out=left_out,
            validation=validation,
            test=test,
            training=trained,
            config=cfg,
        )
        trainer.finish_run_dir(result.to_dict())
        return result

    # -- steps ------------------------------------------------------------------------------

    def _has_checkpoint(self) -> bool:
        # An interruption before the first checkpoint (e.g. while the teacher labelled the
        # rows) leaves nothing to continue: the student starts again, the cache is reused.
        probe = NewsTrainer(self.training, records=False)
        return probe.has_checkpoint

    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(self.teacher.student_source))
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"Cannot load the tokenizer of {self.teacher.student_source}: {exc}"
            ) from None

    def _transfer_texts(self, data: TrainingData) -> tuple[list[str], int]:
        """The transfer file's texts, prepared as the teacher's inputs, without those that are
        also validation or test rows (which would otherwise be learnt from the teacher, and
        their scores flattered); and how many were left out."""
        path = self.config.transfer_file
        if path is None:
            return [], 0
        pre = self.teacher.preprocessing
        columns, chunk = read_table(path)
        text_columns = choose_text_columns(columns, trained=pre.text_columns, where=str(path))
        texts = texts_from_rows(
            chunk.rows, text_columns, clean=pre.clean, separator=pre.text_separator
        )
        held_out = set(data.validation.texts) | set(data.test.texts if data.test else [])
        kept = [text for text in texts if text and text not in held_out]
        if not kept:
            raise InputError(
                f"--transfer-file {path}: no text left to learn from ({len(texts)} rows, "
                f"{len(texts) - len(kept)} of them empty or in the validation or test split)."
            )
        return kept, len(texts) - len(kept)

    def _fingerprint(self, splits: dict[str, list[str]]) -> str:
        """What the cached logits depend on: the teacher's weights (by name, size and time),
        its input settings, and every text of every cached split, in order."""
        digest = hashlib.sha256()
        files = sorted(
            (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
            for folder in self.teacher.model_dirs
            for p in folder.glob("*.safetensors")
        )
        digest.update(json.dumps([files, self.teacher.preprocessing.to_dict()]).encode())
        for name in CACHED_SPLITS:
            digest.update(f"\0{name}\0{len(splits[name])}".encode())
            for text in splits[name]:
                digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()

    def _teacher_logits(
        self, train: list[str], transfer: list[str], validation: list[str]
    ) -> tuple[dict[str, np.ndarray], bool]:
        """The teacher's logits on each cached split, from RUN/teacher_logits.safetensors when
        it holds those of these very texts, else computed (fp32) and cached."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file, save_file

        splits = {"train": train, "transfer": transfer, "validation": validation}
        fingerprint = self._fingerprint(splits)
        path = self.run.teacher_logits_file
        if path.is_file():
            try:
                from safetensors import safe_open

                with safe_open(str(path), framework="numpy") as handle:
                    stored = (handle.metadata() or {}).get("fingerprint")
                if stored == fingerprint:
                    return load_file(str(path)), True
            except (OSError, SafetensorError):
                pass  # damaged: computed again below
        rows = sum(len(texts) for texts in splits.values())
        self.on_stage(
            f"The teacher labels {rows:,} rows ({len(train):,} training, {len(transfer):,} "
            f"transfer, {len(validation):,} validation); cached in {path.name}"
        )
        model, tokenizer = self.teacher.load()
        model = model.to(_device())
        classes = len(self.teacher.label_names)
        logits = {}
        for name, texts in splits.items():
            logits[name] = (
                self._predict(model, tokenizer, texts)
                if texts
                else np.zeros((0, classes), dtype=np.float32)
            )
        with atomic_file(path) as (fd, partial):
            os.close(fd)
            save_file(logits, str(partial), metadata={"fingerprint": fingerprint})
        return logits, False

    def _predict(self, model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
        max_length = self.teacher.preprocessing.max_length
        return predict_logits(model, tokenizer, texts, self.training.eval_batch_size, max_length)

    def _compare(
        self, data: TrainingData, teacher_validation: np.ndarray
    ) -> tuple[SplitComparison | None, SplitComparison | None]:
        """The saved student and the teacher, fp32, on the validation and test rows."""
        student = load_classifier(self.run.best_dir).to(_device())
        tokenizer = self._tokenizer()
        validation = test = None
        names = data.label_names
        if len(data.validation):
            rows = data.validation
            student_logits = self._predict(student, tokenizer, rows.texts)
            validation = _comparison(rows, student_logits, teacher_validation, names)
        if data.test is not None and len(data.test):
            model, teacher_tokenizer = self.teacher.load()
            teacher_logits = self._predict(model.to(_device()), teacher_tokenizer, data.test.texts)
            del model
            student_logits = self._predict(student, tokenizer, data.test.texts)
            test = _comparison(data.test, student_logits, teacher_logits, names)
        return validation, test


def _comparison(
    rows: LabeledTexts, student: np.ndarray, teacher: np.ndarray, label_names: list[str]
) -> SplitComparison:
    student_classes, teacher_classes = student.argmax(axis=-1), teacher.argmax(axis=-1)
    return SplitComparison(
        rows=len(rows),
        agreement=float(np.mean(student_classes == teacher_classes)),
        student=classification_metrics(rows.labels, student_classes, label_names),
        teacher=classification_metrics(rows.labels, teacher_classes, label_names),
    )


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def distill(
    config: DistillConfig,
    callbacks: Sequence[TrainerCallback] = (),
    on_start: Callable[[DistillPlan], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> DistillResult:
    """Distil a teacher run into a smaller student run folder; see `Distiller`.

    Args:
        config: the teacher, the student's depth (`layers`), the soft targets, the recipe
            (default: the teacher's), the transfer texts, the output folder.
        callbacks: Trainer callbacks, e.g. for progress.
        on_start: called once with the `DistillPlan` before the first step.
        on_stage: called with a sentence before each long step that is not training.

    Returns:
        `DistillResult`: the student's run folder, the layers it kept, its training run, and
        its accuracy and agreement with the teacher on validation and test.

    Raises:
        InputError: bad options or data, K not below the teacher's depth, a finished output
            folder. ModelError: the teacher is not a finished run, or cannot be loaded.
    """
    return Distiller(config, callbacks, on_stage).distill(on_start)
