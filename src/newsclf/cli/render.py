"""rich renderables for what the library returns. Rendering only: no computation here.

Every string that comes from the user (paths, texts, class names, column names) reaches rich
as `Text`, never as markup: a text holding "[/b]" is printed, not interpreted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from newsclf.metrics import ClassificationMetrics, percent

if TYPE_CHECKING:
    from newsclf.artifacts import AutoChoice
    from newsclf.combine import SoupResult
    from newsclf.distillation import DistillPlan, DistillResult
    from newsclf.export import ExportResult
    from newsclf.inference import Classifier, ClassifyResult, EnvironmentReport
    from newsclf.integrations.ray import RayClassifyResult
    from newsclf.training import StepPlan, TrainingPlan, TrainResult
    from newsclf.tuning import TrialRecord, TuneResult


def _table(title: str, caption: str | None = None, **options: Any) -> Table:
    return Table(
        title=Text(title),
        title_justify="left",
        caption=Text(caption) if caption else None,
        caption_justify="left",
        **options,
    )


def _panel(lines: Sequence[str], title: str) -> Panel:
    return Panel(Text("\n".join(lines)), title=Text(title), expand=False)


def metrics_table(metrics: ClassificationMetrics, title: str = "Per class") -> Table:
    table = _table(title)
    table.add_column("class")
    for name in ("precision", "recall", "F1", "support"):
        table.add_column(name, justify="right")
    for name, scores in metrics.per_class.items():
        table.add_row(
            Text(name),
            percent(scores.precision),
            percent(scores.recall),
            percent(scores.f1),
            f"{scores.support:,}",
        )
    return table


def confusion_table(metrics: ClassificationMetrics) -> Table:
    """Rows are true labels, columns predictions; the diagonal green, errors red by weight."""
    # The header cell says which axis is which; a longer title would wrap on narrow tables.
    table = _table("Confusion matrix")
    table.add_column(Text("true \\ predicted"))
    for name in metrics.labels:
        table.add_column(Text(name), justify="right")
    matrix = metrics.confusion_matrix
    largest_error = max(
        (c for t, row in enumerate(matrix) for p, c in enumerate(row) if t != p), default=0
    )
    for t, row in enumerate(matrix):
        cells = []
        for p, count in enumerate(row):
            if t == p:
                style = "bold green"
            elif count and largest_error:
                style = "bold red" if count >= largest_error / 2 else "red"
            else:
                style = "dim"
            cells.append(Text(f"{count:,}", style=style))
        table.add_row(Text(metrics.labels[t]), *cells)
    return table


def training_plan(plan: TrainingPlan) -> RenderableType:
    text = Text.assemble(
        ("newsclf train", "bold"),
        f" {plan.model} on {plan.source}: {plan.train_rows:,} train / "
        f"{plan.validation_rows:,} validation / {plan.test_rows:,} test rows, "
        f"{len(plan.label_names)} classes",
    )
    return _append_where(text, plan)


def _append_where(text: Text, plan: TrainingPlan) -> Text:
    """The device, precision, threads and run folder of a plan, and the checkpoint it resumes."""
    text.append("\ndevice ")
    text.append(plan.device, style="bold")
    text.append(", precision ")
    text.append(plan.precision, style="bold")
    text.append(f", {plan.threads} threads on {plan.cores} cores; run dir {plan.run_dir}")
    if plan.step is not None:
        text.append(f"\nstep {_step(plan.step)}")
    if plan.resumed_from:
        text.append("\nresuming from ")
        text.append(plan.resumed_from, style="bold")
    return text


def _step(step: StepPlan) -> str:
    """'128 rows x 2 micro-batches (why)' or '128 rows in one batch (why)'."""
    how = (
        f"{step.effective_batch} rows in one batch"
        if step.grad_accum == 1
        else f"{step.micro_batch} rows x {step.grad_accum} micro-batches"
    )
    return f"{how} ({step.why})"


def _run_lines(result: TrainResult) -> list[str]:
    """The run folder, the checkpoint kept and the training speed of a finished run."""
    training = result.training
    best = result.best
    return [
        f"run dir      {result.run_dir}",
        (
            f"best         {best.metric} {percent(best.value)} at step {best.step}"
            + ("  (stopped early)" if result.stopped_early else "")
            if result.data.validation_rows
            else f"kept         the last weights (step {best.step}): no validation split"
        ),
        f"training     {training.wall_time_s:.0f} s wall, {training.samples_per_s:.1f} "
        f"samples/s on {training.device} ({training.precision})",
        *([f"step         {_step(training.step)}"] if training.step else []),
    ]


def training_summary(result: TrainResult) -> RenderableType:
    lines = _run_lines(result)
    parts: list[RenderableType] = []
    if result.test:
        lines.append(
            f"test         accuracy {percent(result.test.accuracy)}, macro-F1 "
            f"{percent(result.test.f1_macro)} on {result.test.rows:,} rows"
        )
        parts += [metrics_table(result.test, "Test, per class"), confusion_table(result.test)]
    return Group(_panel(lines, "newsclf train"), *parts)


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
    )
    return _append_where(text, training)


def distill_summary(result: DistillResult) -> RenderableType:
    """The student's run, then how it compares with the teacher on validation and test."""
    run = result.training
    kept = ", ".join(str(i) for i in result.kept_layers)
    lines = _run_lines(run)
    lines.insert(
        1, f"student      {result.layers} of the teacher's {result.teacher_layers} layers ({kept})"
    )
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
    return Group(_panel(lines, f"newsclf distill: {result.teacher}"), *parts)


def soup_summary(result: SoupResult) -> RenderableType:
    """Each ingredient's validation score, then the soup's and the ensemble's."""
    table = _table(f"newsclf soup ({result.method}): {result.run_dir}")
    table.add_column("run", overflow="fold")
    table.add_column(f"validation {result.metric}", justify="right")
    for item in result.ingredients:
        table.add_row(Text(str(item.run_dir)), percent(item.validation_score))
    kept = "ensemble" if result.method == "ensemble" else "soup"
    lines = [
        f"{len(result.ingredients)} runs on validation {result.metric} "
        f"({result.validation_rows:,} rows, fp32): weights averaged (soup) "
        f"{percent(result.soup_validation_score)}, predictions averaged (ensemble, one forward "
        f"pass per run) {percent(result.ensemble_validation_score)}; kept: the {kept}"
    ]
    if result.test:
        lines.append(
            f"test: accuracy {percent(result.test.accuracy)}, macro-F1 "
            f"{percent(result.test.f1_macro)} on {result.test.rows:,} rows"
        )
    parts: list[RenderableType] = [table, Text("\n".join(lines))]
    if result.test:
        parts += [metrics_table(result.test, "Test, per class"), confusion_table(result.test)]
    return Group(*parts)


def export_table(result: ExportResult) -> RenderableType:
    """One row per exported variant: size, parity figures and speed."""
    # Nine columns and OpenVINO's long provider names: no inner rules, one space between
    # columns, so that the figures fit 80 columns (the provider folds rather than any figure).
    table = _table(
        f"ONNX export: {result.output_dir}",
        "agree: same label as PyTorch on the parity texts; all shapes: also on short "
        "fragments and max-length truncations. ms: median per batch.",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for name in ("variant", "MB", "max |Δ|", "agree", "all shapes", "acc Δ", "ms", "on", "ok"):
        table.add_column(
            name,
            justify="left" if name in ("variant", "on") else "right",
            no_wrap=name != "on",
            overflow="fold",
        )
    for v in result.variants:
        delta = v.accuracy_delta
        table.add_row(
            v.variant,
            f"{v.size_bytes / 1e6:,.1f}",
            f"{v.max_abs_diff:.1e}",
            percent(v.label_agreement),
            percent(v.label_agreement_all_shapes),
            "-" if delta is None else f"{100 * delta:+.2f}",
            f"{v.ms_per_batch:.0f}",
            Text(v.provider.replace("ExecutionProvider", "")),
            Text("pass", style="bold green") if v.passed else Text("FAIL", style="bold red"),
        )
    notes = [f"parity texts: {result.parity_source}"]
    notes += [f"{v.variant} recipe: {v.recipe}" for v in result.variants if v.recipe]
    notes += [
        f"note: {v.variant}: {v.fallback_reason}" for v in result.variants if v.fallback_reason
    ]
    parts: list[RenderableType] = [table, Text("\n".join(notes))]
    parts += [Text(f"note: {lo.message()}", "yellow") for lo in result.left_out]
    return Group(*parts, calibration_note(result))


def calibration_note(result: ExportResult) -> Text:
    """The temperature the export applies, and ECE / NLL before and after on the rows it was
    fitted on; or that the export is uncalibrated, and why."""
    c = result.calibration
    if not c.calibrated:
        return Text(f"uncalibrated: confidences are the raw softmax (T = 1): {c.reason}", "yellow")
    return Text(
        f"calibration: temperature {c.temperature:.3f} fitted on {c.rows:,} validation rows "
        f"({c.source}): ECE {percent(c.ece_before)} -> {percent(c.ece_after)}, "
        f"NLL {c.nll_before:.4f} -> {c.nll_after:.4f}"
    )


def classify_summary(result: ClassifyResult) -> Panel:
    info = result.classifier
    width = max(len(name) for name, _ in result.summary_lines())
    lines = [f"{name:<{width}}  {text}" for name, text in result.summary_lines()]
    notes = []
    if info.fallback_reason:
        notes.append(Text(f"note: {info.fallback_reason}", style="bold yellow"))
    if result.empty_text_rows:
        notes.append(
            Text(
                f"{result.empty_text_rows:,} rows had empty text (classified anyway)",
                style="yellow",
            )
        )
    if result.skipped_lines:
        shown = ", ".join(str(s.line) for s in result.skipped_lines[:20])
        more = len(result.skipped_lines) - 20
        notes.append(
            Text(
                f"{len(result.skipped_lines):,} malformed lines skipped (no prediction written): "
                f"{shown}{f' and {more} more' if more > 0 else ''}",
                style="yellow",
            )
        )
    if result.unknown_labels:
        listed = ", ".join(f"{k!r} x{v}" for k, v in list(result.unknown_labels.items())[:10])
        notes.append(
            Text(
                f"labels the model does not know, excluded from the metrics: {listed}",
                style="yellow",
            )
        )
    if result.unlabelled_rows:
        notes.append(
            Text(
                f"{result.unlabelled_rows:,} rows without a label, excluded from the metrics",
                style="yellow",
            )
        )
    body: list[RenderableType] = [Text("\n".join(lines)), *notes]
    return Panel(Group(*body), title="newsclf classify", expand=False)


def evaluation_summary(result: ClassifyResult) -> RenderableType:
    metrics = result.metrics
    if metrics is None:
        return Text("no labels: nothing to evaluate")
    head = Text(
        f"accuracy {percent(metrics.accuracy)}   macro-F1 {percent(metrics.f1_macro)}   "
        f"weighted-F1 {percent(metrics.f1_weighted)}   on {result.labelled_rows:,} labelled rows",
        style="bold",
    )
    parts: list[RenderableType] = [head, metrics_table(metrics), confusion_table(metrics)]
    if result.coverage:
        parts.append(coverage_table(result))
    if result.confusions:
        table = _table("Most frequent confusions")
        for name in ("true", "predicted", "count", "example"):
            table.add_column(name, overflow="fold")
        for c in result.confusions:
            example = c.example if len(c.example) <= 120 else c.example[:117] + "..."
            table.add_row(Text(c.true), Text(c.predicted), f"{c.count:,}", Text(example))
        parts.append(table)
    return Group(*parts)


def coverage_table(result: ClassifyResult) -> Table:
    """The coverage / accuracy trade-off: at each confidence threshold, the labelled rows
    accepted and their accuracy; the user's --min-confidence in bold."""
    ece = result.calibration_error
    table = _table(
        "Coverage / accuracy (accept rows at or above the confidence, review the rest)",
        None if ece is None else f"expected calibration error on these rows: {percent(ece)}",
    )
    for name in ("confidence", "rows accepted", "coverage", "accuracy"):
        table.add_column(name, justify="left" if name == "confidence" else "right")
    for point in result.coverage:
        table.add_row(
            f">= {point.threshold:g}" + ("  (--min-confidence)" if point.chosen else ""),
            f"{point.rows:,}",
            percent(point.coverage),
            percent(point.accuracy),
            style="bold" if point.chosen else None,
        )
    return table


_PARAM_HEADERS = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "epochs": "epochs",
    "weight_decay": "wd",
    "warmup_ratio": "warmup",
}
_STATE_STYLES = {"complete": "green", "pruned": "yellow", "fail": "bold red", "running": "cyan"}


def _param(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "learning_rate":
        return f"{value:.2e}"
    return f"{value:.3g}"


def trials_table(records: Sequence[TrialRecord], metric: str, searched: Sequence[str]) -> Table:
    """One row per trial: its searched parameters, validation metric, state and time. A running
    or pruned trial shows its last reported metric, dimmed."""
    table = _table(f"Trials (validation {metric})")
    table.add_column("trial", justify="right")
    for name in searched:
        table.add_column(_PARAM_HEADERS.get(name, name), justify="right")
    for name in (metric, "evals", "state", "time"):
        table.add_column(name, justify="right" if name != "state" else "left")
    best = max(
        (r.value for r in records if r.state == "complete" and r.value is not None), default=None
    )
    for r in sorted(records, key=lambda r: r.number):
        seconds = r.duration_s if r.duration_s is not None else time.time() - r.started
        if r.value is None:
            value = Text("-", style="dim")
        elif r.state == "complete":
            value = Text(percent(r.value), style="bold green" if r.value == best else "")
        else:
            value = Text(percent(r.value), style="dim")
        table.add_row(
            str(r.number),
            *(_param(name, r.params.get(name)) for name in searched),
            value,
            str(r.evaluations),
            Text(r.state, style=_STATE_STYLES.get(r.state, "")),
            f"{seconds:.0f} s",
        )
    return table


def tune_summary(result: TuneResult) -> RenderableType:
    """The best trial, its parameters, the trial counts and files; the CLI prints the train
    command after it, unwrapped."""
    states = ", ".join(f"{n} {s}" for s, n in sorted(result.states.items()))
    params = "  ".join(
        f"{name} {_param(name, value)}" + ("" if name in result.searched else " (fixed)")
        for name, value in result.best_params.items()
    )
    lines = [
        f"best trial   {result.best_trial}: validation {result.metric} "
        f"{percent(result.best_value)}",
        f"parameters   {params}",
        f"trials       {states}",
        f"study        {result.study_path}  (continue with --resume)",
        f"results      {result.best_path}, {result.trials_path}",
        "train it on all training rows (test data, if given, only for the report):",
    ]
    return _panel(lines, "newsclf tune")


def ray_workers_table(result: RayClassifyResult) -> Table:
    """Throughput overall and per Ray worker (busy seconds: cleaning, tokenizing, inference)."""
    table = _table(
        f"Ray workers ({len(result.workers)}; cluster {result.ray_address}, started or joined "
        f"in {result.startup_s:.1f} s): {result.rows_per_s:,.1f} rows/s overall"
    )
    for name in ("worker", "pid", "batches", "rows", "busy s", "rows/s"):
        table.add_column(name, justify="left" if name == "worker" else "right")
    for w in result.workers:
        table.add_row(
            w.worker[:12],
            str(w.pid),
            f"{w.batches:,}",
            f"{w.rows:,}",
            f"{w.busy_s:.2f}",
            f"{w.rows_per_s:,.1f}",
        )
    return table


def classifier_notes(classifier: Classifier) -> Text:
    """Before a run: the faster variant `--variant auto` would have taken, and how to get it;
    the export's damaged variant files that are not used (the one in use was verified)."""
    lines = []
    hint = classifier.auto_choice.hint() if classifier.auto_choice is not None else None
    if hint:
        lines.append(f"note: {hint}")
    lines += [f"warning: {d.message()}" for d in classifier.damaged_variants]
    return Text("\n".join(lines), "yellow", end="\n" if lines else "")


def auto_choice_lines(choice: AutoChoice) -> list[str]:
    """Each variant of auto's order on a device: taken, or why not."""
    return [f"{c.variant}: {c.verdict} ({c.reason})" for c in choice.candidates]


def environment_text(report: EnvironmentReport) -> str:
    """`newsclf env`: a plain-text block to paste into a bug report."""
    versions = report.versions
    ort_name = "onnxruntime-gpu" if versions.get("onnxruntime-gpu") else "onnxruntime"
    built_for = f", built for CUDA {report.cuda.cuda_version}" if report.cuda.cuda_version else ""
    features = ", ".join(
        f"{name} {'yes' if present else 'no'}" for name, present in report.cpu_features.items()
    )
    gpus = ", ".join(report.gpus) or ("none" if report.nvidia_driver is None else "unknown")
    driver = report.nvidia_driver or "no NVIDIA driver"
    if report.cuda.works:
        cuda = "yes: a session comes up on CUDAExecutionProvider"
    else:
        cuda = f"no: {report.cuda.reason}"
        if report.cuda.missing_libraries:
            cuda += f" (missing: {', '.join(report.cuda.missing_libraries)})"
    lines = [
        "Copy and paste the text below into your bug report.",
        "",
        f"- newsclf: {versions.get('newsclf') or 'not installed'}",
        f"- Platform: {report.platform}",
        f"- Python: {report.python}",
    ]
    lines += [
        f"- {name}: {versions.get(name) or 'not installed'}"
        for name in ("torch", "transformers", "tokenizers", "onnx")
    ]
    lines += [
        f"- {ort_name}: {versions.get(ort_name) or 'not installed'}{built_for}; providers: "
        f"{', '.join(report.onnxruntime_providers)}",
        f"- openvino: {versions.get('openvino') or 'not installed'}",
        f"- nncf: {versions.get('nncf') or 'not installed'}",
        f"- CPU: {report.cpu}, {report.cores} cores usable ({report.logical_cpus} logical); "
        f"{features}",
        f"- GPU: {gpus}; driver: {driver}",
        f"- ONNX Runtime on CUDA: {cuda}",
        f"- --device auto runs on: {report.device}",
    ]
    if report.model is not None:
        model = report.model
        choice = model.choice
        lines += [
            f"- Export: {model.path} holds {', '.join(model.variants)}",
            f"- --variant auto here ({choice.device}): {choice.variant or 'nothing it can run'}",
        ]
        lines += [f"    {line}" for line in auto_choice_lines(choice)]
        if choice.hint():
            lines.append(f"- Faster: {choice.hint()}")
        lines += [f"- Damaged: {message}" for message in model.damaged]
    return "\n".join(lines)
