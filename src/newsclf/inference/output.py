"""Where a classify run's output goes (`output_target`, `review_target`), what it holds
(`OutputPlan`: the input's columns, then the predictions as Arrow columns) and the writer stage
(`ResultWriter`), the same for the local engine and Ray: a classified chunk to the output and
the review file, its figures to the evaluation and the counts."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.artifacts import PreprocessingConfig
from newsclf.errors import InputError
from newsclf.inference.config import DEFAULT_LABEL_COLUMN, ClassifyConfig
from newsclf.inference.evaluation import Evaluation
from newsclf.inference.result import ChunkFigures, RunCounts
from newsclf.io import (
    NO_LABEL,
    STDIN,
    AtomicTableWriter,
    choose_text_columns,
    detect_format,
    model_texts,
)

PREDICTED_COLUMN = "predicted_label"
CONFIDENCE_COLUMN = "confidence"
# With --min-confidence P: true where the row's confidence is under P.
NEEDS_REVIEW_COLUMN = "needs_review"
# Decimals of the confidence and probability columns. Review flags, coverage and histograms
# are computed from the confidence as written, so they can be recomputed from the output.
DECIMALS = 6
_EXTENSION = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}


def default_output_path(input_path: str | Path, fmt: str) -> str:
    """`<input>.predictions.<ext>` beside the input (stdout for stdin)."""
    if str(input_path) == STDIN:
        return STDIN
    path = Path(input_path)
    return str(path.with_name(f"{path.stem}.predictions{_EXTENSION[fmt]}"))


def output_target(
    input_path: str | Path, requested: str | Path | None, input_format: str
) -> tuple[str, str]:
    """(path, format) of the output: `requested` (format by extension, `-` for stdout) or
    `<input>.predictions.<ext>` beside the input; never the input itself.

    Raises:
        InputError: the output would overwrite the input, or its format is unknown.
    """
    if requested is None:
        output, fmt = default_output_path(input_path, input_format), input_format
    elif str(requested) == STDIN:
        output, fmt = STDIN, input_format
    elif Path(requested).is_dir():
        raise InputError(f"--output {requested} is a folder; give a file path to write to.")
    else:
        output, fmt = str(requested), detect_format(requested, None)
    if (
        STDIN not in (output, str(input_path))
        and Path(output).resolve() == Path(input_path).resolve()
    ):
        raise InputError(f"--output {output} is the input file; choose another path.")
    return output, fmt


def review_target(
    review_output: str | Path | None,
    min_confidence: float | None,
    inputs: Sequence[str | Path],
    output: str,
) -> tuple[str, str] | None:
    """(path, format) of the review file (the rows under --min-confidence), or None.

    Raises:
        InputError: it is asked for without --min-confidence, it is stdout, a folder, an input
            or the output, or its format is unknown.
    """
    if review_output is None:
        return None
    if min_confidence is None:
        raise InputError(
            "--review-output holds the rows under --min-confidence; give --min-confidence P too."
        )
    if str(review_output) == STDIN:
        raise InputError("--review-output needs a file path (stdout is for --output).")
    if Path(review_output).is_dir():
        raise InputError(f"--review-output {review_output} is a folder; give a file path.")
    path = Path(review_output).resolve()
    for other in [*inputs, output]:
        if str(other) != STDIN and path == Path(other).resolve():
            raise InputError(
                f"--review-output {review_output} is also {other}; choose another path."
            )
    return str(review_output), detect_format(review_output, None)


@dataclass(frozen=True)
class RowPredictions:
    """What the prediction columns of a batch of rows hold: the class index, the confidence as
    written (`DECIMALS` decimals) and whether the row needs review (all False without a
    threshold)."""

    predicted: np.ndarray
    confidence: np.ndarray
    needs_review: np.ndarray


@dataclass(frozen=True)
class OutputPlan:
    """What a classify run reads and writes: the text and label columns it uses, and the
    output's columns (the input's, in order, then the predictions)."""

    input_columns: list[str]
    text_columns: list[str]
    # None: no evaluation (the input has no label column).
    label_column: str | None
    label_names: list[str]
    probabilities: bool
    preprocessing: PreprocessingConfig
    # --min-confidence: rows under it get needs_review = true; None: no such column.
    min_confidence: float | None = None

    @classmethod
    def for_input(
        cls,
        columns: Sequence[str],
        where: str,
        *,
        label_names: Sequence[str],
        preprocessing: PreprocessingConfig,
        config: ClassifyConfig,
    ) -> OutputPlan:
        """The plan for an input with `columns` (named `where` in errors).

        Raises:
            InputError: a text or label column asked for is missing, or a prediction column
                would overwrite one of the input's.
        """
        columns = list(columns)
        text_columns = choose_text_columns(
            columns,
            requested=config.text_columns,
            trained=preprocessing.text_columns,
            where=where,
        )
        label_column = config.label_column
        if label_column is not None and label_column not in columns:
            raise InputError(
                f"{where}: no label column {label_column!r} (--label-column); columns found: "
                f"{', '.join(columns) or '(none)'}."
            )
        if label_column is None and DEFAULT_LABEL_COLUMN in columns:
            label_column = DEFAULT_LABEL_COLUMN
        plan = cls(
            columns,
            text_columns,
            label_column,
            list(label_names),
            config.probabilities,
            preprocessing,
            config.min_confidence,
        )
        clash = [c for c in plan.added_columns if c in columns]
        if clash:
            raise InputError(
                f"{where} already has column(s) {', '.join(clash)}; rename them so that the "
                "predictions do not overwrite them."
            )
        return plan

    @property
    def added_columns(self) -> list[str]:
        added = [PREDICTED_COLUMN, CONFIDENCE_COLUMN]
        if self.min_confidence is not None:
            added.append(NEEDS_REVIEW_COLUMN)
        if self.probabilities:
            added += [f"prob_{name}" for name in self.label_names]
        return added

    @property
    def output_columns(self) -> list[str]:
        return self.input_columns + self.added_columns

    def output_schema(self, input_schema: Any) -> Any:
        """The output's Arrow schema: the input's (`TableReader.schema()`), then the
        predictions' (class name as string, confidence and probabilities as float64, the
        review flag as bool)."""
        import pyarrow as pa

        types = {PREDICTED_COLUMN: pa.string(), NEEDS_REVIEW_COLUMN: pa.bool_()}
        added = [pa.field(name, types.get(name, pa.float64())) for name in self.added_columns]
        return pa.schema([*input_schema, *added])

    def texts(self, batch: Any) -> Any:
        """The model's texts of a batch: the text columns joined, cleaned if trained so."""
        pre = self.preprocessing
        return model_texts(batch, self.text_columns, clean=pre.clean, separator=pre.text_separator)

    def predictions(self, probabilities: np.ndarray) -> RowPredictions:
        """The predicted class, the confidence as written and the review flag of each row."""
        rows = len(probabilities)
        predicted = probabilities.argmax(axis=1) if rows else np.empty(0, dtype=np.int64)
        top = probabilities[np.arange(rows), predicted]
        confidence = np.round(top.astype(np.float64), DECIMALS)
        if self.min_confidence is None:
            review = np.zeros(rows, dtype=bool)
        else:
            review = confidence < self.min_confidence
        return RowPredictions(predicted, confidence, review)

    def annotate(self, batch: Any, probabilities: np.ndarray) -> Any:
        """The batch with the prediction columns added (a record batch of `output_schema`)."""
        import pyarrow as pa

        result = self.predictions(probabilities)
        added = [
            pa.array(self.label_names, pa.string()).take(pa.array(result.predicted)),
            pa.array(result.confidence),
        ]
        if self.min_confidence is not None:
            added.append(pa.array(result.needs_review))
        if self.probabilities:
            rounded = np.round(probabilities.astype(np.float64), DECIMALS)
            added += [pa.array(rounded[:, j]) for j in range(len(self.label_names))]
        return pa.RecordBatch.from_arrays(
            [*batch.columns, *added], schema=self.output_schema(batch.schema)
        )


class ResultWriter:
    """The writer stage: each classified chunk (the input's rows with the prediction columns,
    `OutputPlan.annotate`) goes to the output and, with a review threshold, its flagged rows to
    the review file; its predictions and labels to the evaluation, its figures to the counts.
    A context manager: the output (and review file) appear whole when it closes without an
    error, and not at all otherwise.

    Args:
        output, review: (path, format) of the output and of the review file (or None).
        schema: the input's Arrow schema (the output adds the prediction columns).
    """

    def __init__(
        self,
        plan: OutputPlan,
        schema: Any,
        output: tuple[str, str],
        review: tuple[str, str] | None,
        evaluation: Evaluation,
        counts: RunCounts,
    ) -> None:
        import pyarrow as pa

        schema = plan.output_schema(schema)
        self.plan, self.evaluation, self.counts = plan, evaluation, counts
        self.output = AtomicTableWriter(*output, schema)
        self.review = None if review is None else AtomicTableWriter(*review, schema)
        self._names = pa.array(plan.label_names, pa.string())
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ResultWriter:
        with contextlib.ExitStack() as stack:
            for writer in (self.output, self.review):
                if writer is not None:
                    stack.enter_context(writer)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def write(self, batch: Any, figures: ChunkFigures, first_row: int | None = None) -> None:
        """Write a classified chunk whose first row is row `first_row` of the input (default:
        the next, `counts.rows`)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.output.write(batch)
        if self.review is not None:
            self.review.write(batch.filter(batch.column(NEEDS_REVIEW_COLUMN)))
        predicted = pc.index_in(batch.column(PREDICTED_COLUMN), value_set=self._names)
        label = self.plan.label_column
        truth = (
            self.evaluation.match(batch.column(label), batch.schema.field(label))
            if label
            else np.full(batch.num_rows, NO_LABEL, dtype=np.int64)
        )

        def texts_of(rows: np.ndarray) -> list[str]:
            return self.plan.texts(batch.take(pa.array(rows))).to_pylist()

        self.evaluation.add(
            truth,
            predicted.to_numpy(zero_copy_only=False).astype(np.int64),
            batch.column(CONFIDENCE_COLUMN).to_numpy(zero_copy_only=False),
            texts_of,
            self.counts.rows if first_row is None else first_row,
        )
        self.counts.add(batch.num_rows, figures)
