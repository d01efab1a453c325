"""`newsclf distill`: options -> DistillConfig -> Distiller (a NewsTrainer underneath, with the
training progress display) -> the rendered comparison with the teacher."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from newsclf.cli.console import console
from newsclf.cli.options import changed, refuse, values, with_options
from newsclf.distillation import DistillConfig
from newsclf.metrics import percent

if TYPE_CHECKING:
    from newsclf.distillation import Distiller, DistillPlan, DistillResult

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

    training = distiller.training
    distiller.callbacks.append(
        TrainingProgress(
            console,
            distiller.samples_per_step,
            metric=training.metric,
            evaluations=training.has_validation,
        )
    )
    result = distiller.distill(on_start=lambda plan: console.print(distill_plan(plan)))
    console.print(distill_summary(result))
    return result


def distill_plan(plan: DistillPlan) -> RenderableType:
    training = plan.training
    kept = ", ".join(str(i) for i in plan.kept_layers)
    text = Text.assemble(
        ("newsclf distill", "bold"),
        f" {plan.teacher} ({plan.teacher_kind}, {plan.teacher_layers} layers) -> a student of ",
        (f"{plan.layers} layer{'s' if plan.layers != 1 else ''}", "bold"),
        f" (the teacher's {kept})\n{plan.train_rows:,} training rows",
        f" + {plan.transfer_rows:,} transfer texts" if plan.transfer_rows else "",
        f" ({plan.transfer_rows_left_out:,} left out: in validation or test)"
        if plan.transfer_rows_left_out
        else "",
        f" / {training.validation_rows:,} validation / {training.test_rows:,} test rows; "
        f"temperature {plan.temperature:g}, soft weight {plan.soft_weight:g}; teacher logits ",
        "cached" if plan.teacher_logits_cached else "computed",
        "\ndevice ",
        (training.device, "bold"),
        ", precision ",
        (training.precision, "bold"),
        f", {training.threads} threads on {training.cores} cores; run dir {training.run_dir}",
    )
    if training.resumed_from:
        text.append("\nresuming from ")
        text.append(training.resumed_from, style="bold")
    return text


def distill_summary(result: DistillResult) -> RenderableType:
    from newsclf.cli.render import confusion_table, metrics_table

    run = result.training
    best = run.best
    kept = ", ".join(str(i) for i in result.kept_layers)
    lines = [
        f"run dir      {result.run_dir}",
        f"student      {result.layers} of the teacher's {result.teacher_layers} layers ({kept})",
        (
            f"best         {best.metric} {percent(best.value)} at step {best.step}"
            + ("  (stopped early)" if run.stopped_early else "")
            if run.data.validation_rows
            else f"kept         the last weights (step {best.step}): no validation split"
        ),
        f"training     {run.training.wall_time_s:.0f} s wall, {run.training.samples_per_s:.1f} "
        f"samples/s on {run.training.device} ({run.training.precision})",
    ]
    for name, comparison in (("validation", result.validation), ("test", result.test)):
        if comparison is not None:
            lines.append(
                f"{name:<12} agrees with the teacher on {percent(comparison.agreement)} of "
                f"{comparison.rows:,} rows; accuracy {percent(comparison.student.accuracy)} "
                f"(teacher {percent(comparison.teacher.accuracy)})"
            )
    parts: list[RenderableType] = []
    if run.test is not None:
        parts += [metrics_table(run.test, "Test, per class"), confusion_table(run.test)]
    title = Text(f"newsclf distill: {result.teacher}")
    return Group(Panel(Text("\n".join(lines)), title=title, expand=False), *parts)
