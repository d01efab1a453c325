"""`newsclf distill`: options -> DistillConfig -> Distiller (a NewsTrainer underneath, with the
training progress display) -> the rendered comparison with the teacher."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from newsclf.cli.console import console
from newsclf.cli.options import changed, refuse, values, with_options
from newsclf.distillation import DistillConfig

if TYPE_CHECKING:
    from newsclf.distillation import Distiller, DistillResult

DISTILL_OPTIONS = DistillConfig.option_specs()


@with_options(DISTILL_OPTIONS)
def distill(context: typer.Context, **options: Any) -> None:
    """Distil a run (train, soup or ensemble) into a smaller student with K of its encoder
    layers that learns the teacher's soft targets and the true labels; writes a run folder
    that export takes."""
    from newsclf.distillation import Distiller

    config = DistillConfig(**values(options, DISTILL_OPTIONS))
    if config.resume:
        others = [s for s in DISTILL_OPTIONS if s.name not in ("resume", "output_dir")]
        refuse(
            changed(context, options, others),
            "--resume continues with the distillation's saved settings.",
        )
        console.print("Resuming with the distillation's saved settings.")
    distiller = Distiller(
        config, on_stage=lambda message: console.print(Text(message, style="dim"))
    )
    run_distillation(distiller)


def run_distillation(distiller: Distiller) -> DistillResult:
    """Distil with the live training display, then print the comparison with the teacher."""
    from newsclf.cli.progress import TrainingProgress
    from newsclf.cli.render import distill_plan, distill_summary

    distiller.callbacks.append(
        TrainingProgress(console, distiller.samples_per_step, distiller.training)
    )
    result = distiller.distill(on_start=lambda plan: console.print(distill_plan(plan)))
    console.print(distill_summary(result))
    return result
