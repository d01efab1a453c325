"""What a training run reports: the plan it announces before the first step, and the result it
returns and writes as metrics.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from newsclf.metrics import ClassificationMetrics
from newsclf.training.config import TrainingConfig


@dataclass(frozen=True)
class StepPlan:
    """How the rows of one optimizer step go through the model on a device: `micro_batch`
    rows at a time, `grad_accum` times (losses averaged), and why."""

    micro_batch: int
    grad_accum: int
    why: str

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return {
            "micro_batch": self.micro_batch,
            "grad_accum": self.grad_accum,
            "effective_batch": self.effective_batch,
            "why": self.why,
        }


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
    step: StepPlan | None = None


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
    # How each device ran its share of a step: one batch, or micro-batches accumulated.
    step: StepPlan | None = None


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
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "train",
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
            "test": self.test.to_dict() if self.test else None,
            "training": {
                **asdict(self.training),
                "step": self.training.step.to_dict() if self.training.step else None,
            },
            "environment": self.environment,
            "config": self.config.to_dict(),
        }
