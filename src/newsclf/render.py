"""rich renderables for what the library returns. Rendering only: no computation here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def metrics_table(metrics: dict[str, Any], title: str = "Per class") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    for name in ("precision", "recall", "F1", "support"):
        table.add_column(name, justify="right")
    for name, row in metrics["per_class"].items():
        table.add_row(
            name,
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["f1"]),
            f"{row['support']:,}",
        )
    return table


def confusion_table(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> Table:
    """Rows are true labels, columns predictions; the diagonal green, errors red by weight."""
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("true \\ predicted")
    for name in labels:
        table.add_column(name, justify="right")
    largest_error = max(
        (c for t, row in enumerate(confusion) for p, c in enumerate(row) if t != p), default=0
    )
    for t, row in enumerate(confusion):
        cells = []
        for p, count in enumerate(row):
            if t == p:
                style = "bold green"
            elif count and largest_error:
                style = "bold red" if count >= largest_error / 2 else "red"
            else:
                style = "dim"
            cells.append(Text(f"{count:,}", style=style))
        table.add_row(labels[t], *cells)
    return table


def training_summary(metrics: dict[str, Any], run_dir: Path) -> RenderableType:
    training = metrics["training"]
    best = metrics["best"]
    lines = [
        f"run dir      {run_dir}",
        f"best         {best['metric']} {_pct(best['value'])} at step {best['step']}"
        + ("  (stopped early)" if metrics["stopped_early"] else ""),
        f"training     {training['wall_time_s']:.0f} s wall, {training['samples_per_s']:.1f} "
        f"samples/s on {training['device']} ({training['precision']})",
    ]
    parts: list[RenderableType] = []
    test = metrics.get("test")
    if test:
        lines.append(
            f"test         accuracy {_pct(test['accuracy'])}, macro-F1 {_pct(test['f1_macro'])} "
            f"on {test['rows']:,} rows"
        )
        parts += [
            metrics_table(test, "Test, per class"),
            confusion_table(test["confusion_matrix"], test["labels"]),
        ]
    return Group(Panel("\n".join(lines), title="newsclf train", expand=False), *parts)


def export_table(variants: Sequence[Any], output_dir: Path) -> RenderableType:
    """One row per exported variant: size, parity figures and speed."""
    table = Table(
        title=f"ONNX export: {output_dir}",
        title_justify="left",
        caption="agree: same label as PyTorch on the parity texts; all shapes: also on short "
        "fragments and max-length truncations. ms: median per batch.",
        caption_justify="left",
    )
    for name in ("variant", "MB", "max |Δ|", "agree", "all shapes", "acc Δ", "ms", "on", "ok"):
        table.add_column(
            name, justify="left" if name in ("variant", "on") else "right", no_wrap=True
        )
    for v in variants:
        delta = v.accuracy_delta
        table.add_row(
            v.variant,
            f"{v.size_bytes / 1e6:,.1f}",
            f"{v.max_abs_diff:.1e}",
            _pct(v.label_agreement),
            _pct(v.label_agreement_all_shapes),
            "-" if delta is None else f"{100 * delta:+.2f}",
            f"{v.ms_per_batch:.0f}",
            v.provider.replace("ExecutionProvider", ""),
            Text("pass", style="bold green") if v.passed else Text("FAIL", style="bold red"),
        )
    return table


def classify_summary(report: dict[str, Any]) -> Panel:
    stages = report["stage_seconds"]
    lines = [
        f"input        {report['input']}  ->  {report['output']}",
        f"model        {report['model']}",
        f"variant      {report['variant']} on {report['provider']} (device {report['device']}, "
        f"batch {report['batch_size']})",
        f"rows         {report['rows']:,} in {report['wall_time_s']:.2f} s: "
        f"{report['throughput_rows_per_s']:,.1f} rows/s, "
        f"{report['throughput_tokens_per_s']:,.0f} tokens/s, "
        f"padding +{100 * report['padding_overhead']:.1f}%",
        f"time in      reading {stages['read_s']:.2f} s, tokenizing {stages['tokenize_s']:.2f} s, "
        f"inference {stages['inference_s']:.2f} s, writing {stages['write_s']:.2f} s"
        + (" (reading and tokenizing overlap inference)" if report["stages_overlapped"] else ""),
    ]
    if report.get("peak_rss_mb"):
        lines.append(f"peak memory  {report['peak_rss_mb']:,.0f} MB")
    notes = []
    if report.get("fallback_reason"):
        notes.append(Text(f"note: {report['fallback_reason']}", style="bold yellow"))
    if report["empty_text_rows"]:
        notes.append(
            Text(
                f"{report['empty_text_rows']:,} rows had empty text (classified anyway)",
                style="yellow",
            )
        )
    if report["skipped_lines"]:
        shown = ", ".join(str(s["line"]) for s in report["skipped_lines"][:20])
        more = len(report["skipped_lines"]) - 20
        notes.append(
            Text(
                f"{len(report['skipped_lines']):,} malformed lines skipped "
                "(no prediction written): "
                f"{shown}{f' and {more} more' if more > 0 else ''}",
                style="yellow",
            )
        )
    if report.get("unknown_labels"):
        listed = ", ".join(f"{k!r} x{v}" for k, v in list(report["unknown_labels"].items())[:10])
        notes.append(
            Text(
                f"labels the model does not know, excluded from the metrics: {listed}",
                style="yellow",
            )
        )
    if report.get("unlabelled_rows"):
        notes.append(
            Text(
                f"{report['unlabelled_rows']:,} rows without a label, excluded from the metrics",
                style="yellow",
            )
        )
    body: list[RenderableType] = [Text("\n".join(lines)), *notes]
    return Panel(Group(*body), title="newsclf classify", expand=False)


def evaluation_summary(report: dict[str, Any]) -> RenderableType:
    head = Text(
        f"accuracy {_pct(report['accuracy'])}   macro-F1 {_pct(report['f1_macro'])}   "
        f"weighted-F1 {_pct(report['f1_weighted'])}   on {report['labelled_rows']:,} labelled rows",
        style="bold",
    )
    parts: list[RenderableType] = [
        head,
        metrics_table(report),
        confusion_table(report["confusion_matrix"], report["labels"]),
    ]
    if report["top_confusions"]:
        table = Table(title="Most frequent confusions", title_justify="left")
        for name in ("true", "predicted", "count", "example"):
            table.add_column(name, overflow="fold")
        for c in report["top_confusions"]:
            example = c["example"] if len(c["example"]) <= 120 else c["example"][:117] + "..."
            table.add_row(c["true"], c["predicted"], f"{c['count']:,}", example)
        parts.append(table)
    return Group(*parts)
