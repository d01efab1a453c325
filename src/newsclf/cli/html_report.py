"""The HTML report of `newsclf classify --html`: one self-contained file (CSS inline, charts as
PNG data URIs; nothing is fetched from anywhere) to open in a browser.

It shows the run (model, variant, provider, rows, throughput, time per stage), the confidence
calibration and the review threshold, the predicted-class counts and the confidence histogram;
with labels also accuracy and F1, the per-class table, the confusion matrix as a heat map, the
reliability diagram, the coverage / accuracy trade-off and the most confused class pairs with
example texts. Rendering only: every figure comes from the `ClassifyResult`. Everything that
comes from the user (paths, class names, texts, reasons) is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsclf.cli.plots import (
    confusion_figure,
    counts_figure,
    coverage_figure,
    histogram_figure,
    png_bytes,
    reliability_figure,
)
from newsclf.io import write_text_atomic
from newsclf.metrics import percent

if TYPE_CHECKING:
    from newsclf.inference import ClassifyResult

# Characters of an example text shown (the rest is cut, marked with an ellipsis).
EXAMPLE_CHARS = 400

_CSS = """
:root { --ink: #1a202c; --muted: #4a5568; --line: #e2e8f0; --accent: #2b6cb0;
        --warn: #c05621; --bg: #f7fafc; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 12px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 20px; word-break: break-all; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 16px 20px; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; background: none; border: 0;
         padding: 0; }
.card { flex: 1 1 150px; background: #fff; border: 1px solid var(--line); border-radius: 8px;
        padding: 12px 16px; }
.card .value { font-size: 26px; font-weight: 650; color: var(--accent); }
.card .label { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #edf2f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 200px; background: none; color: var(--muted); font-weight: 500; }
tr.chosen td { background: #fefcbf; font-weight: 650; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; margin: 0 0 18px; }
.grid > section { flex: 1 1 420px; margin: 0; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption, .note { color: var(--muted); font-size: 13px; margin-top: 6px; }
.warn { color: var(--warn); }
.bar { background: var(--accent); height: 10px; border-radius: 2px; display: inline-block; }
.pair { margin: 0 0 14px; }
.pair h3 { font-size: 15px; margin: 0 0 4px; }
.pair ol { margin: 0; padding-left: 22px; }
.pair li { margin: 2px 0; }
.row-no { color: var(--muted); font-size: 12px; margin-right: 6px; }
.text { white-space: pre-wrap; word-break: break-word; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
"""


def _e(value: Any) -> str:
    """Escaped text: everything a user gave (paths, class names, texts) goes through here."""
    return html.escape(str(value), quote=True)


def _image(png: bytes, alt: str, caption: str | None = None) -> str:
    data = base64.b64encode(png).decode("ascii")
    figure = f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
    if caption:
        figure += f"<figcaption>{_e(caption)}</figcaption>"
    return figure + "</figure>"


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool], **attrs: str
) -> str:
    """A table; `header` and the cells are already escaped HTML."""
    classes = {i for i, is_number in enumerate(numeric) if is_number}
    head = "".join(
        f'<th class="num">{h}</th>' if i in classes else f"<th>{h}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        row_class = ""
        if isinstance(row, _Row):
            row_class = f' class="{row.css}"' if row.css else ""
        cells = "".join(
            f'<td class="num">{c}</td>' if i in classes else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr{row_class}>{cells}</tr>")
    attributes = "".join(f' {k}="{_e(v)}"' for k, v in attrs.items())
    return (
        f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


class _Row(list[str]):
    """Cells of a table row with a CSS class."""

    def __init__(self, cells: Iterable[str], css: str = "") -> None:
        super().__init__(cells)
        self.css = css


def _kv(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _card(value: str, label: str) -> str:
    return (
        f'<div class="card"><div class="value">{value}</div><div class="label">{label}</div></div>'
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _summary(result: ClassifyResult) -> str:
    pairs = [(name, _e(text)) for name, text in result.summary_lines()]
    if result.classifier.fallback_reason:
        pairs.append(("note", f'<span class="warn">{_e(result.classifier.fallback_reason)}</span>'))
    shares = result.stages.busy_shares(result.wall_s)
    stage_rows = [
        [
            stage,
            f"{seconds:.2f}",
            f"{100 * shares[stage]:.0f}%",
            f'<span class="bar" style="width:{200 * shares[stage]:.0f}px"></span>',
        ]
        for stage, seconds in result.stages.seconds().items()
    ]
    stage_table = _table(
        ["stage", "busy seconds", "busy share", ""], stage_rows, [False, True, True, False]
    )
    note = (
        '<p class="note">The stages run at the same time, each in its own threads or '
        "processes: the one busy nearly all of its time is the one that held the run back.</p>"
    )
    return (
        "<section><h2>Run</h2>" + _kv(pairs) + "<h3>Stages</h3>" + stage_table + note + "</section>"
    )


def _confidence(result: ClassifyResult) -> str:
    """Calibration and the review threshold."""
    temperature = result.classifier.temperature
    if temperature != 1.0:
        calibration = (
            f"calibrated: logits divided by the export's temperature T = {temperature:.3f} "
            "(fitted on the run's validation rows) before the softmax"
        )
    else:
        calibration = (
            '<span class="warn">raw softmax (T = 1): the export is uncalibrated, or '
            "--no-calibrate was given</span>"
        )
    pairs = [("confidence", calibration)]
    if result.calibration_error is not None:
        pairs.append(
            (
                "calibration error here",
                f"ECE {percent(result.calibration_error)} on {result.labelled_rows:,} labelled "
                "rows (15 equal-width confidence bins)",
            )
        )
    if result.min_confidence is not None:
        pairs.append(
            (
                "review threshold",
                f"P = {result.min_confidence:g}: {result.review_rows:,} of {result.rows:,} rows "
                f"({_share(result.review_rows, result.rows)}) have needs_review = true",
            )
        )
        if result.review_output:
            pairs.append(("review file", _e(result.review_output)))
    else:
        pairs.append(("review threshold", "none (give --min-confidence P to flag rows)"))
    return "<section><h2>Confidence</h2>" + _kv(pairs) + "</section>"


def _cards(result: ClassifyResult) -> str:
    cards = []
    metrics = result.metrics
    if metrics is not None:
        cards += [
            _card(percent(metrics.accuracy), f"accuracy on {result.labelled_rows:,} labelled rows"),
            _card(percent(metrics.f1_macro), "macro-F1"),
            _card(percent(metrics.f1_weighted), "weighted-F1"),
        ]
    cards.append(_card(f"{result.rows:,}", "rows classified"))
    cards.append(_card(f"{result.rows_per_s:,.0f}", "rows per second"))
    chosen = result.chosen_coverage
    if chosen is not None:
        accuracy = percent(chosen.accuracy)
        cards.append(
            _card(
                f"{100 * chosen.coverage:.1f}%",
                f"of labelled rows at confidence &ge; {chosen.threshold:g}, {accuracy} accurate",
            )
        )
    elif result.min_confidence is not None:
        cards.append(
            _card(
                _share(result.review_rows, result.rows),
                f"rows to review (&lt; {result.min_confidence:g})",
            )
        )
    return '<section class="cards">' + "".join(cards) + "</section>"


def _per_class(result: ClassifyResult) -> str:
    metrics = result.metrics
    assert metrics is not None
    rows = [
        [
            _e(name),
            percent(scores.precision),
            percent(scores.recall),
            percent(scores.f1),
            f"{scores.support:,}",
            f"{result.predicted_counts.get(name, 0):,}",
        ]
        for name, scores in metrics.per_class.items()
    ]
    table = _table(
        ["class", "precision", "recall", "F1", "support", "predicted"],
        rows,
        [False, True, True, True, True, True],
    )
    return "<section><h2>Per class</h2>" + table + "</section>"


def _predicted(result: ClassifyResult) -> str:
    total = sum(result.predicted_counts.values())
    rows = [
        [_e(name), f"{count:,}", _share(count, total)]
        for name, count in result.predicted_counts.items()
    ]
    table = _table(["class", "rows predicted", "share"], rows, [False, True, True])
    chart = _image(png_bytes(counts_figure(result.predicted_counts)), "rows predicted per class")
    return "<section><h2>Predicted classes</h2>" + chart + table + "</section>"


def _histogram(result: ClassifyResult) -> str:
    from newsclf.inference import histogram_edges

    chart = histogram_figure(histogram_edges(), result.confidence_histogram, result.min_confidence)
    caption = "Rows per confidence bin (every row, labelled or not)."
    return (
        "<section><h2>Confidence histogram</h2>"
        + _image(png_bytes(chart), "confidence histogram", caption)
        + "</section>"
    )


def _reliability(result: ClassifyResult) -> str:
    chart = reliability_figure(result.reliability, result.calibration_error)
    caption = (
        "Accuracy of the labelled rows in each confidence bin against their mean confidence: "
        "on the diagonal, a confidence of 0.8 is right 80% of the time."
    )
    return (
        "<section><h2>Reliability diagram</h2>"
        + _image(png_bytes(chart), "reliability diagram", caption)
        + "</section>"
    )


def _coverage(result: ClassifyResult) -> str:
    rows = [
        _Row(
            [
                f"&ge; {point.threshold:g}" + (" (P)" if point.chosen else ""),
                f"{point.rows:,}",
                f"{100 * point.coverage:.1f}%",
                percent(point.accuracy),
                f"{result.labelled_rows - point.rows:,}",
            ],
            "chosen" if point.chosen else "",
        )
        for point in result.coverage
    ]
    table = _table(
        ["confidence", "rows accepted", "coverage", "accuracy", "rows to review"],
        rows,
        [False, True, True, True, True],
    )
    chart = _image(png_bytes(coverage_figure(result.coverage)), "coverage and accuracy")
    note = (
        '<p class="note">Accept the rows at or above a threshold, send the rest to a person: the '
        "share of labelled rows accepted and the accuracy among them.</p>"
    )
    return "<section><h2>Coverage / accuracy</h2>" + note + chart + table + "</section>"


def _confusions(result: ClassifyResult) -> str:
    if not result.confusions:
        return "<section><h2>Most confused pairs</h2><p>No mistakes.</p></section>"
    parts = []
    for c in result.confusions:
        examples = c.examples
        items = "".join(
            f'<li><span class="row-no">row {example.row:,}</span><span class="text">'
            f"{_e(_cut(example.text))}</span></li>"
            for example in examples
        )
        if not items and c.example:
            items = f'<li><span class="text">{_e(_cut(c.example))}</span></li>'
        parts.append(
            f'<div class="pair"><h3>{_e(c.true)} &rarr; predicted {_e(c.predicted)}: '
            f"{c.count:,} rows</h3><ol>{items}</ol></div>"
        )
    note = '<p class="note">The first examples by row number (1 = the first data row).</p>'
    return "<section><h2>Most confused pairs</h2>" + note + "".join(parts) + "</section>"


def _cut(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "\u2026"


def _notes(result: ClassifyResult) -> str:
    notes = []
    if result.empty_text_rows:
        notes.append(f"{result.empty_text_rows:,} rows had empty text (classified anyway).")
    if result.skipped_lines:
        shown = ", ".join(str(s.line) for s in result.skipped_lines[:20])
        notes.append(
            f"{len(result.skipped_lines):,} malformed lines skipped (no prediction written): "
            f"{_e(shown)}."
        )
    if result.unknown_labels:
        listed = ", ".join(
            f"{_e(k)} &times;{v:,}" for k, v in list(result.unknown_labels.items())[:10]
        )
        notes.append(f"Labels the model does not know, excluded from the metrics: {listed}.")
    if result.unlabelled_rows:
        notes.append(f"{result.unlabelled_rows:,} rows without a label, excluded from the metrics.")
    if not notes:
        return ""
    items = "".join(f'<li class="warn">{n}</li>' for n in notes)
    return f"<section><h2>Notes</h2><ul>{items}</ul></section>"


def html_report(result: ClassifyResult) -> str:
    """The report as one self-contained HTML document.

    Raises:
        InputError: matplotlib is not installed.
    """
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [_cards(result), _summary(result), _confidence(result), _notes(result)]
    if result.metrics is not None:
        parts.append(_per_class(result))
        heat_map = _image(
            png_bytes(confusion_figure(result.metrics, title=False)),
            "confusion matrix",
            "Rows: true class; columns: predicted class.",
        )
        parts.append("<section><h2>Confusion matrix</h2>" + heat_map + "</section>")
        parts.append('<div class="grid">' + _histogram(result) + _reliability(result) + "</div>")
        parts.append(_coverage(result))
        parts.append(_confusions(result))
        parts.append(_predicted(result))
    else:
        parts.append(
            "<section><h2>No labels</h2><p>The input has no label column, so there is nothing "
            "to evaluate: accuracy, the per-class table, the confusion matrix, the reliability "
            "diagram and the coverage table need one (--label-column).</p></section>"
        )
        parts.append('<div class="grid">' + _predicted(result) + _histogram(result) + "</div>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>newsclf classify: {_e(Path(result.input).name)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        "<h1>newsclf classify report</h1>\n"
        f'<p class="sub">{_e(result.input)} &rarr; {_e(result.output)} &middot; {created}</p>\n'
        + "\n".join(p for p in parts if p)
        + "\n<footer>Written by newsclf classify --html. Self-contained: no network needed."
        "</footer>\n</main>\n</body>\n</html>\n"
    )


def write_html_report(path: str | Path, result: ClassifyResult) -> Path:
    """Write `html_report(result)` to `path`, atomically.

    Raises:
        InputError: matplotlib is not installed.
    """
    return write_text_atomic(Path(path), html_report(result))
