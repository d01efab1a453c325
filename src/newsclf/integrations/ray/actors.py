"""The Ray actors: `Predictor` (one `Classifier` per worker) and `Tally` (sums what the workers
report: counts, stage seconds and partial evaluations, which merge into the local engine's
figures)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.inference import (
    BatchStats,
    Classifier,
    ClassifierConfig,
    Evaluation,
    OutputPlan,
    RunCounts,
    StageTimes,
)
from newsclf.io import NO_LABEL, prepare_texts

# Columns of the driver's batches and of the actors' answers on the ordered path.
ROW, TEXT, TRUTH = "__row", "__text", "__truth"


def probability_column(j: int) -> str:
    return f"__p{j}"


@dataclass(frozen=True)
class WorkerStats:
    """What one Ray actor did: its rows, and the seconds it spent on them (cleaning,
    tokenizing and inference, not waiting)."""

    worker: str
    node: str
    pid: int
    batches: int
    rows: int
    tokens: int
    busy_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.busy_s if self.busy_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rows_per_s": round(self.rows_per_s, 2)}


class Tally:
    """A small actor that sums the workers' reports."""

    def __init__(self, label_names: list[str], min_confidence: float | None = None) -> None:
        self.counts = RunCounts()
        self.evaluation = Evaluation(label_names, min_confidence)
        self.stages = StageTimes(overlapped=True)
        self.workers: dict[str, WorkerStats] = {}
        self.info: dict[str, Any] | None = None

    def hello(self, info: dict[str, Any]) -> None:
        self.info = self.info or info

    def add(
        self,
        worker: WorkerStats,
        counts: RunCounts,
        evaluation: Evaluation,
        tokenize_s: float,
        inference_s: float,
    ) -> None:
        self.counts.merge(counts)
        self.evaluation.merge(evaluation)
        self.stages.tokenize_s += tokenize_s
        self.stages.inference_s += inference_s
        seen = self.workers.get(worker.worker)
        if seen is not None:
            worker = WorkerStats(
                worker.worker,
                worker.node,
                worker.pid,
                seen.batches + 1,
                seen.rows + worker.rows,
                seen.tokens + worker.tokens,
                seen.busy_s + worker.busy_s,
            )
        self.workers[worker.worker] = worker

    def summary(self) -> dict[str, Any]:
        return dict(vars(self))


class Predictor:
    """One Ray worker: a `Classifier` on its own threads (or GPU), called once per batch.

    `ordered`: batches come from the driver (row index, joined raw text, class index of the
    label) and the answer is the row index and the class probabilities. Otherwise batches are
    whole rows from Ray's readers and the answer is those rows with the prediction columns
    added, as the local engine writes them.
    """

    def __init__(
        self, export: str, config: ClassifierConfig, plan: OutputPlan, tally: Any, ordered: bool
    ) -> None:
        import ray

        self.classifier = Classifier(Path(export), config)
        self.plan = plan
        self.tally = tally
        self.ordered = ordered
        context = ray.get_runtime_context()
        self.worker = context.get_actor_id() or f"pid-{os.getpid()}"
        self.node = context.get_node_id()
        ray.get(tally.hello.remote(self.classifier.info().to_dict()))

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        import ray

        started = time.perf_counter()
        evaluation = Evaluation(self.plan.label_names, self.plan.min_confidence)
        if self.ordered:
            first_row = int(batch.column(ROW)[0].as_py()) if batch.num_rows else 0
            pre = self.plan.preprocessing
            raw = [[text] for text in batch.column(TEXT).to_pylist()]
            texts = prepare_texts(raw, clean=pre.clean, separator=pre.text_separator)
            truth = batch.column(TRUTH).to_numpy().astype(np.int64)
        else:
            first_row, rows = 0, batch.to_pylist()
            texts = self.plan.texts(rows)
            truth = (
                evaluation.match(self.plan.label_values(rows))
                if self.plan.label_column
                else np.full(len(rows), NO_LABEL, dtype=np.int64)
            )
        encoded = self.classifier.encode(texts)
        tokenized = time.perf_counter()
        stats = BatchStats()
        probabilities = self.classifier.probabilities(encoded, stats)
        inferred = time.perf_counter()
        # The columns as the driver (ordered) or this actor (otherwise) writes them.
        added: list[dict[str, Any]] = [{} for _ in texts]
        predictions = (
            self.plan.predictions(probabilities)
            if self.ordered
            else self.plan.annotate(added, probabilities)
        )
        evaluation.add(truth, predictions.predicted, predictions.confidence, texts, first_row)
        counts = RunCounts()
        counts.add(texts, encoded.tokens, stats)
        worker = WorkerStats(
            self.worker,
            self.node,
            os.getpid(),
            1,
            len(texts),
            encoded.tokens,
            inferred - started,
        )
        ray.get(
            self.tally.add.remote(
                worker, counts, evaluation, tokenized - started, inferred - tokenized
            )
        )
        if self.ordered:
            answer = {ROW: batch.column(ROW)}
            for j in range(probabilities.shape[1]):
                answer[probability_column(j)] = pa.array(probabilities[:, j])
            return pa.table(answer)
        for name in self.plan.added_columns:
            batch = batch.append_column(name, pa.array([row[name] for row in added]))
        return batch
