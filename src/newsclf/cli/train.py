"""`newsclf train`: options -> TrainingConfig -> NewsTrainer -> the rendered result."""

from __future__ import annotations

from typing import Any

import typer

from newsclf.cli.console import console
from newsclf.cli.options import changed, refuse, with_options
from newsclf.errors import InputError
from newsclf.training import NewsTrainer, TrainingConfig, TrainResult

TRAIN_OPTIONS = TrainingConfig.option_specs()


@with_options(TRAIN_OPTIONS)
def train(context: typer.Context, **options: Any) -> None:
    """Fine-tune a classifier with the recipe; writes best/, metrics.json and a model card."""
    config = TrainingConfig.from_options(options)
    if config.resume:
        if config.output_dir is None:
            raise InputError("--resume needs --output-dir: the run to continue.")
        others = [s for s in TRAIN_OPTIONS if s.name not in ("resume", "output_dir")]
        refuse(
            changed(context, options, others),
            "--resume continues with the run's saved configuration.",
        )
        trainer = NewsTrainer.resume(config.output_dir)
        console.print("Resuming with the run's saved configuration.")
    else:
        trainer = NewsTrainer(config)
    run_training(trainer)


def run_training(trainer: NewsTrainer) -> TrainResult:
    """Train with a live progress display on the main process, then print the summary (also
    `tune --train-best`'s way to train)."""
    from newsclf.cli.progress import TrainingProgress
    from newsclf.cli.render import training_plan, training_summary

    if not trainer.is_main:  # under torchrun / accelerate launch, rank 0 alone prints
        return trainer.train()
    config = trainer.config
    trainer.callbacks.append(TrainingProgress(console, trainer.samples_per_step, config))
    result = trainer.train(on_start=lambda plan: console.print(training_plan(plan)))
    console.print(training_summary(result))
    return result
