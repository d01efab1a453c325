"""`newsclf classify --engine ray`: the local engine's pipeline on Ray Data, one machine or many.

Every worker is an actor holding one `Classifier` of the export folder (the same cleaning,
tokenization, batching, variant and provider rules), with ONNX Runtime's threads set explicitly
(Ray sets `OMP_NUM_THREADS` to an actor's CPUs) and, on CUDA, one GPU per actor. The export
folder must be readable at the same path on every node. The output plan, the evaluation, the
counts and the result are the local engine's (`newsclf.inference`); what is Ray's here is the
actors, the readers and the writers. Two ways through, chosen by the output:

* One output file (`--output FILE.ext`, or beside a single input file): every row once, in
  input order. The driver reads local files with newsclf's `TableReader` (errors name the file
  and line; `--on-error skip` works), sends only the row index, the joined raw text and the
  label's class to Ray's object store, and, as the answers come back in order, reads the rows
  again and writes them: the full rows never travel, and no value is re-typed by Arrow. URL
  inputs (s3://, ...) are read by Ray's readers on this path, without line numbers.
* A folder (`--output DIR/`): Ray's readers and writers, part files in Ray's block order,
  staged and renamed into place at the end. Nothing passes through the driver.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.artifacts import ExportFolder
from newsclf.errors import InputError, NewsclfError
from newsclf.inference import (
    NEEDS_REVIEW_COLUMN,
    ClassifierConfig,
    ClassifierInfo,
    ClassifyConfig,
    ClassifyResult,
    Evaluation,
    OutputPlan,
    ProgressCallback,
    StageTimes,
    output_target,
    review_target,
)
from newsclf.integrations.ray.actors import (
    ROW,
    TEXT,
    TRUTH,
    Predictor,
    Tally,
    WorkerStats,
    probability_column,
)
from newsclf.integrations.ray.config import RayConfig
from newsclf.io import (
    STDIN,
    AtomicTableWriter,
    SkippedLine,
    TableReader,
    atomic_directory,
    delimiter_for,
    detect_format,
    is_url,
    join_columns,
    table_files,
)

INSTALL_HINT = "--engine ray needs Ray: pip install 'newsclf[ray]' (or 'ray[data]>=2.40')."
# CPUs Ray's read and write tasks ask for: none, so that actors holding every CPU of a small
# cluster do not leave them waiting forever (they parse and write; the actors do the work).
_IO = {"num_cpus": 0}


@dataclass
class RayClassifyResult(ClassifyResult):
    """`ClassifyResult` of the Ray engine, plus the cluster and the per-worker figures.
    `wall_s` runs from the first input read to the output in place; `startup_s` is the time
    to start or join the cluster before."""

    engine: str = "ray"
    ray_address: str = ""
    startup_s: float = 0.0
    workers: list[WorkerStats] = field(default_factory=list)
    part_files: list[str] = field(default_factory=list)

    def to_report(self) -> dict[str, Any]:
        ray = {"address": self.ray_address, "startup_s": round(self.startup_s, 3)}
        ray |= {"workers": [w.to_dict() for w in self.workers], "part_files": self.part_files}
        return super().to_report() | {"engine": self.engine, "ray": ray}


def classify_with_ray(
    input: str | Path,
    export: str | Path,
    classifier: ClassifierConfig | None = None,
    config: ClassifyConfig | None = None,
    ray_config: RayConfig | None = None,
    *,
    output: str | Path | None = None,
    review_output: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> RayClassifyResult:
    """Classify a table, a folder or glob of tables, or a URL on Ray Data (see the module).

    Args:
        input: a CSV, TSV, JSONL or Parquet file, a folder or glob of them, or a URL.
        export: the export folder; at the same path on every node of a cluster.
        classifier: device, variant and batching of each worker (its threads are
            `ray_config.threads_per_worker`).
        config: how rows are read and written, as for the local engine.
        ray_config: cluster address, workers, threads per worker.
        output: one output file (every row once, in input order; format by extension), or a
            folder ending in `/` (or an existing one) for Ray's part files.
        review_output: also write the rows under `config.min_confidence` to this file (one
            output file only: not with part files).
        progress: called after each written batch with (rows done, units done, units total).

    Raises:
        InputError: Ray missing; the input missing or malformed; an option that the Ray
            engine cannot honour; an output that would overwrite an input.
        ModelError, ProviderError: the export or the device does not work (also raised by an
            actor, re-raised here).
    """
    classifier = classifier or ClassifierConfig()
    config = config or ClassifyConfig()
    ray_config = ray_config or RayConfig()
    if classifier.threads is not None:
        raise InputError(
            "--threads is the local engine's; with --engine ray use --threads-per-worker."
        )
    ray = _import_ray()
    folder = ExportFolder.load(export)  # a bad folder fails here, before any cluster starts
    if str(input) == STDIN:
        raise InputError("--engine ray reads files, not stdin: use --engine local for -.")
    inputs = table_files(str(input), config.format)
    to_folder = output is not None and (
        str(output).endswith(("/", os.sep)) or Path(output).is_dir()
    )
    if to_folder and is_url(str(output)):
        raise InputError(
            f"--output {output}: part files are staged and renamed into place, "
            "which needs a file system path (local or shared by every node)."
        )
    if not to_folder and output is None and (len(inputs) > 1 or is_url(inputs[0])):
        raise InputError(
            f"{input} is several files or a URL: name the output, --output "
            "FILE.ext for one ordered file or --output DIR/ for part files."
        )
    if review_output is not None and to_folder:
        raise InputError(
            "--review-output needs one output file (--output FILE.ext); with part files, "
            "select the rows whose needs_review is true from them."
        )
    if config.on_error == "skip" and (to_folder or any(is_url(p) for p in inputs)):
        raise InputError(
            "--on-error skip needs newsclf's line-numbered reader: local files with --output "
            "FILE.ext (Ray's readers, for URLs and --output DIR/, stop at a bad row)."
        )
    started = time.perf_counter()
    owns_cluster = _connect(ray, ray_config.address)
    startup_s = time.perf_counter() - started
    try:
        run = _Run(ray, folder, classifier, config, ray_config, startup_s)
        if to_folder:
            return run.to_parts(inputs, Path(output))  # type: ignore[arg-type]
        if any(is_url(p) for p in inputs):
            return run.ordered_from_ray_reader(inputs, str(output), review_output, progress)
        return run.ordered(inputs, output, review_output, progress)
    finally:
        if owns_cluster:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address`, or start a local one (None). True when this call started
    or joined it (and must shut it down); False when the process was already connected."""
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except ConnectionError as exc:
        raise InputError(f"--ray-address {address}: cannot join a Ray cluster ({exc}).") from exc
    return True


def _newsclf_error(exc: BaseException) -> NewsclfError:
    """The newsclf error an actor raised, out of Ray's wrappers; else Ray's own message."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewsclfError):
            return current
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]
    message = str(exc).strip().splitlines()
    return NewsclfError(f"Ray Data failed: {message[-1] if message else type(exc).__name__}")


class _Run:
    """One run on a connected cluster: the tally, the actors, the ways through."""

    def __init__(
        self,
        ray: Any,
        folder: ExportFolder,
        classifier: ClassifierConfig,
        config: ClassifyConfig,
        ray_config: RayConfig,
        startup_s: float,
    ) -> None:
        from ray.data import DataContext

        self.ray, self.folder, self.config, self.ray_config = ray, folder, config, ray_config
        self.startup_s = startup_s
        self.started = time.perf_counter()
        self.stages = StageTimes(overlapped=True)
        self.skipped: list[SkippedLine] = []
        self.evaluation = Evaluation(folder.label_names, config.min_confidence)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.gpus_per_worker = int(
            classifier.device == "cuda" or (classifier.device == "auto" and gpus > 0)
        )
        self.classifier = replace(classifier, threads=ray_config.threads_per_worker)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = ray_config.workers or (
            max(1, gpus) if self.gpus_per_worker else max(1, cpus // ray_config.threads_per_worker)
        )
        self.tally = ray.remote(num_cpus=0)(Tally).remote(folder.label_names, config.min_confidence)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False

    def plan(self, columns: list[str], where: str) -> OutputPlan:
        return OutputPlan.for_input(
            columns,
            where,
            label_names=self.folder.label_names,
            preprocessing=self.folder.preprocessing,
            config=self.config,
        )

    def predict(self, dataset: Any, plan: OutputPlan, *, ordered: bool) -> Any:
        from ray.data import ActorPoolStrategy

        return dataset.map_batches(
            Predictor,
            batch_format="pyarrow",
            # Ordered: the driver's blocks are the batches (merging them would starve actors).
            batch_size=None if ordered else self.ray_config.batch_rows,
            fn_constructor_kwargs={
                "export": str(self.folder.path.resolve()),
                "config": self.classifier,
                "plan": plan,
                "tally": self.tally,
                "ordered": ordered,
            },
            compute=ActorPoolStrategy(size=self.workers),
            num_cpus=self.ray_config.threads_per_worker,
            num_gpus=self.gpus_per_worker,
        )

    def batches(self, dataset: Any) -> Iterator[Any]:
        try:
            yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        except Exception as exc:
            raise _newsclf_error(exc) from None

    # -- one ordered output file from local files: newsclf reads, Ray classifies ------------

    def ordered(
        self,
        inputs: list[str],
        output: str | Path | None,
        review_output: str | Path | None,
        progress: ProgressCallback | None,
    ) -> RayClassifyResult:
        first = TableReader(inputs[0], self.config.format, on_error=self.config.on_error)
        plan = self.plan(first.columns, first.name)
        target, out_format = output_target(inputs[0], output, first.format)
        if any(Path(target).resolve() == Path(p).resolve() for p in inputs[1:]):
            raise InputError(f"--output {target} is an input file; choose another path.")
        review = review_target(review_output, self.config.min_confidence, inputs, target)
        refs, rows = [], 0
        for reader in self.readers(inputs, first, plan):  # pass 1: only what workers need
            for chunk in self.stages.timed_reads(reader.iter_chunks(self.ray_config.batch_rows)):
                texts = [
                    join_columns(
                        [row.get(c) for c in plan.text_columns], plan.preprocessing.text_separator
                    )
                    for row in chunk.rows
                ]
                truth = (
                    self.evaluation.match(plan.label_values(chunk.rows))
                    if plan.label_column
                    else np.full(len(texts), -1, dtype=np.int64)
                )
                refs.append(self.ray.put(_driver_batch(rows, texts, truth)))
                rows += len(chunk)
            self.skipped += _named_skips(reader, len(inputs))
        if rows == 0:
            raise InputError(
                f"{first.name}: "
                + (
                    "every row was malformed and skipped."
                    if self.skipped
                    else "the file has a header but no rows."
                )
            )
        if len(refs) < self.workers * 4:
            # A small input makes few blocks: cut it into smaller ones, in order, so that every
            # actor gets work (Ray's repartition would need CPUs the actors hold).
            import pyarrow as pa

            table, size = pa.concat_tables(self.ray.get(refs)), math.ceil(rows / (self.workers * 4))
            refs = [self.ray.put(table.slice(i, size)) for i in range(0, rows, size)]
        from ray.data import from_arrow_refs

        answers = _Answers(self.batches(self.predict(from_arrow_refs(refs), plan, ordered=True)))
        done = 0
        schema = plan.output_schema(first.schema())
        with (
            AtomicTableWriter(target, out_format, plan.output_columns, schema) as writer,
            _review_writer(review, plan, schema) as review_writer,
        ):
            for reader in self.readers(inputs, None, plan):  # pass 2: the rows, in step
                for chunk in self.stages.timed_reads(reader.iter_chunks(self.config.chunk_rows)):
                    with self.stages.timing("write"):
                        index, probabilities = answers.take(len(chunk))
                        if index[0] != done or index[-1] != done + len(chunk) - 1:
                            raise NewsclfError(
                                f"{reader.name}: Ray returned rows out of order; "
                                "nothing was written."
                            )
                        flags = plan.annotate(chunk.rows, probabilities).needs_review
                        writer.write_rows(chunk.rows)
                        if review_writer is not None:
                            review_writer.write_rows(
                                [r for r, f in zip(chunk.rows, flags, strict=True) if f]
                            )
                    done += len(chunk)
                    if progress is not None:
                        progress(done, done, rows)
            if done != rows or not answers.exhausted():
                raise NewsclfError(
                    f"{done} rows read again but {rows} classified: did an input "
                    "file change while it was read? Nothing was written."
                )
        name = ",".join(inputs) if len(inputs) > 1 else first.name
        return self.result(name, str(target), plan, review)

    def readers(
        self, inputs: list[str], first: TableReader | None, plan: OutputPlan
    ) -> Iterator[TableReader]:
        """A reader per input file; each must have the columns the plan was made for."""
        for index, path in enumerate(inputs):
            with self.stages.timing("read"):
                reader = (
                    first
                    if index == 0 and first is not None
                    else TableReader(path, self.config.format, on_error=self.config.on_error)
                )
            # JSONL keys may come in another order; the output writes them by name.
            same = (
                set(reader.columns) == set(plan.input_columns)
                if reader.format == "jsonl"
                else reader.columns == plan.input_columns
            )
            if not same:
                raise InputError(
                    f"{reader.name}: its columns ({', '.join(reader.columns)}) differ from "
                    f"{inputs[0]}'s ({', '.join(plan.input_columns)}); one output needs one set "
                    "of columns."
                )
            yield reader

    # -- Ray's readers: URLs to one ordered file, anything to part files ---------------------

    def read(self, inputs: list[str]) -> tuple[Any, str, OutputPlan]:
        import pyarrow.csv as pacsv
        import ray.data

        fmt = detect_format(inputs[0], self.config.format)
        paths = inputs[0] if len(inputs) == 1 else inputs
        try:
            if fmt == "parquet":
                dataset = ray.data.read_parquet(paths, **_IO)
            elif fmt == "jsonl":
                dataset = ray.data.read_json(paths, lines=True, file_extensions=None, **_IO)
            else:
                options = pacsv.ParseOptions(delimiter=delimiter_for(fmt))
                dataset = ray.data.read_csv(paths, parse_options=options, **_IO)
            schema = dataset.schema()
        except Exception as exc:
            raise InputError(f"{inputs[0]}: Ray cannot read it ({_newsclf_error(exc)}).") from None
        if schema is None:
            raise InputError(f"{inputs[0]}: no rows.")
        return dataset, fmt, self.plan(list(schema.names), inputs[0])

    def ordered_from_ray_reader(
        self,
        inputs: list[str],
        target: str,
        review_output: str | Path | None,
        progress: ProgressCallback | None,
    ) -> RayClassifyResult:
        dataset, _, plan = self.read(inputs)
        review = review_target(review_output, self.config.min_confidence, inputs, target)
        rows = 0
        with (
            AtomicTableWriter(target, detect_format(target), plan.output_columns) as writer,
            _review_writer(review, plan, None) as review_writer,
        ):
            for batch in self.batches(self.predict(dataset, plan, ordered=False)):
                with self.stages.timing("write"):
                    batch_rows = batch.to_pylist()
                    writer.write_rows(batch_rows)
                    if review_writer is not None:
                        review_writer.write_rows([r for r in batch_rows if r[NEEDS_REVIEW_COLUMN]])
                rows += batch.num_rows
                if progress is not None:
                    progress(rows, rows, None)
            if rows == 0:
                raise InputError(f"{inputs[0]}: no rows.")
        return self.result(inputs[0], target, plan, review)

    def to_parts(self, inputs: list[str], output: Path) -> RayClassifyResult:
        import pyarrow.csv as pacsv

        dataset, fmt, plan = self.read(inputs)
        if any(Path(p).resolve().is_relative_to(output.resolve()) for p in inputs if not is_url(p)):
            raise InputError(f"--output {output} holds input files; choose another folder.")
        predicted = self.predict(dataset, plan, ordered=False)
        with self.stages.timing("write"), atomic_directory(output) as staging:
            try:
                if fmt == "parquet":
                    predicted.write_parquet(str(staging), ray_remote_args=_IO)
                elif fmt == "jsonl":
                    predicted.write_json(str(staging), ray_remote_args=_IO, force_ascii=False)
                else:
                    # Built inside the function: WriteOptions do not pickle to Ray's tasks.
                    delimiter = delimiter_for(fmt)
                    predicted.write_csv(
                        str(staging),
                        ray_remote_args=_IO,
                        arrow_csv_args_fn=lambda: {
                            "write_options": pacsv.WriteOptions(delimiter=delimiter)
                        },
                    )
            except Exception as exc:
                raise _newsclf_error(exc) from None
            parts = sorted(p.name for p in staging.iterdir() if p.is_file())
            if self.ray.get(self.tally.summary.remote())["counts"].rows == 0:
                raise InputError(f"{inputs[0]}: no rows.")
        result = self.result(inputs[0], str(output) + os.sep, plan)
        result.part_files = [str(output / p) for p in parts]
        return result

    def result(
        self,
        input: str,
        output: str,
        plan: OutputPlan,
        review: tuple[str, str] | None = None,
    ) -> RayClassifyResult:
        tally = self.ray.get(self.tally.summary.remote())
        if tally["info"] is None:
            raise NewsclfError("No Ray worker reported: nothing was classified.")
        self.stages.tokenize_s, self.stages.inference_s = (
            tally["stages"].tokenize_s,
            tally["stages"].inference_s,
        )
        self.evaluation.merge(tally["evaluation"])
        return RayClassifyResult.of(
            input,
            output,
            tally["counts"],
            self.stages,
            ClassifierInfo(**tally["info"]),
            self.evaluation,
            skipped=self.skipped,
            wall_s=time.perf_counter() - self.started,
            ray_address=self.ray.get_runtime_context().gcs_address,
            startup_s=self.startup_s,
            workers=sorted(tally["workers"].values(), key=lambda w: -w.rows),
            review_output=review[0] if review is not None else None,
        )


def _review_writer(
    review: tuple[str, str] | None, plan: OutputPlan, schema: Any
) -> contextlib.AbstractContextManager[AtomicTableWriter | None]:
    """The writer of the review file (the output's columns), or nothing without one."""
    if review is None:
        return contextlib.nullcontext()
    return AtomicTableWriter(review[0], review[1], plan.output_columns, schema)


def _driver_batch(first_row: int, texts: list[str], truth: np.ndarray) -> Any:
    import pyarrow as pa

    rows = np.arange(first_row, first_row + len(texts), dtype=np.int64)
    return pa.table({ROW: rows, TEXT: pa.array(texts, type=pa.string()), TRUTH: truth})


def _named_skips(reader: TableReader, files: int) -> list[SkippedLine]:
    if files == 1:
        return list(reader.skipped)
    return [SkippedLine(s.line, f"{reader.name}: {s.reason}") for s in reader.skipped]


class _Answers:
    """The actors' answers (row index, probabilities), in order, a chunk of rows at a time."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self.batches = batches
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.buffered = 0

    def _pull(self) -> bool:
        batch = next(self.batches, None)
        if batch is None:
            return False
        if batch.num_rows:
            columns = [c for c in batch.column_names if c != ROW]
            probabilities = np.column_stack(
                [batch.column(probability_column(j)).to_numpy() for j in range(len(columns))]
            ).astype(np.float32)
            self.pending.append((batch.column(ROW).to_numpy(), probabilities))
            self.buffered += batch.num_rows
        return True

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        while self.buffered < n:
            if not self._pull():
                raise NewsclfError("Ray returned fewer rows than were sent; nothing was written.")
        rows, probabilities = (np.concatenate(p) for p in zip(*self.pending, strict=True))
        self.pending = [(rows[n:], probabilities[n:])] if len(rows) > n else []
        self.buffered -= n
        return rows[:n], probabilities[:n]

    def exhausted(self) -> bool:
        """Whether every answer was taken (reading on through empty batches)."""
        while self.buffered == 0 and self._pull():
            pass
        return self.buffered == 0
