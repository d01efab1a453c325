"""`newsclf classify --engine ray`: the local engine's pipeline on Ray Data, one machine or many.

Ray tasks read the inputs with newsclf's own reader (a file per task; errors name the file and
line, `--on-error skip` records them); actors (`Predictor`, one `Classifier` each, ONNX
Runtime's threads set explicitly, one GPU each on CUDA) prepare, classify and add the
prediction columns, batch by batch, exactly as the local engine does. The export folder and
the inputs must be readable at the same paths on every node. Two ways out, chosen by the
output:

* One output file (`--output FILE.ext`, or beside a single input file): the batches come back
  in input order and the driver writes them with the local engine's writer stage.
* A folder (`--output DIR/`): each actor writes its batches as part files (named so that they
  sort in input order), staged and renamed into place at the end; only a small record per
  batch reaches the driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from newsclf.artifacts import ExportFolder
from newsclf.errors import InputError, NewsclfError
from newsclf.inference import (
    ChunkFigures,
    ClassifierConfig,
    ClassifierInfo,
    ClassifyConfig,
    ClassifyResult,
    Evaluation,
    OutputPlan,
    ProgressCallback,
    ResultWriter,
    RunCounts,
    StageTimes,
    output_target,
    review_target,
)
from newsclf.integrations.ray.actors import (
    STATS,
    Predictor,
    WorkerStats,
    read_files,
)
from newsclf.integrations.ray.config import RayConfig
from newsclf.io import (
    STDIN,
    AtomicTableWriter,
    SkippedLine,
    TableReader,
    atomic_directory,
    is_url,
    table_files,
)

INSTALL_HINT = "--engine ray needs Ray: pip install 'newsclf[ray]' (or 'ray[data]>=2.40')."


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
            folder ending in `/` (or an existing one) for part files.
        review_output: also write the rows under `config.min_confidence` to this file (one
            output file only: not with part files).
        progress: called after each written batch with (rows done, rows done, None).

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
    if config.prepare_workers is not None or config.prepare_pool != "auto":
        raise InputError("--prepare-workers/--prepare-pool are the local engine's.")
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
    first = TableReader(inputs[0], config.format, on_error=config.on_error)
    plan = OutputPlan.for_input(
        first.columns,
        first.name,
        label_names=folder.label_names,
        preprocessing=folder.preprocessing,
        config=config,
    )
    started = time.perf_counter()
    owns_cluster = _connect(ray, ray_config.address)
    startup_s = time.perf_counter() - started
    try:
        run = _Run(ray, folder, classifier, config, ray_config, startup_s, plan, first)
        if to_folder:
            return run.to_parts(inputs, Path(output))  # type: ignore[arg-type]
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
    """One run on a connected cluster: the dataset, the ways out, the figures gathered."""

    def __init__(
        self,
        ray: Any,
        folder: ExportFolder,
        classifier: ClassifierConfig,
        config: ClassifyConfig,
        ray_config: RayConfig,
        startup_s: float,
        plan: OutputPlan,
        first: TableReader,
    ) -> None:
        self.ray, self.folder, self.config, self.ray_config = ray, folder, config, ray_config
        self.plan, self.first, self.startup_s = plan, first, startup_s
        self.started = time.perf_counter()
        self.evaluation = Evaluation(folder.label_names, config.min_confidence)
        self.counts = RunCounts()
        self.skipped: list[SkippedLine] = []
        self.workers: dict[str, WorkerStats] = {}
        self.info: dict[str, Any] | None = None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.gpus_per_worker = int(
            classifier.device == "cuda" or (classifier.device == "auto" and gpus > 0)
        )
        self.classifier = replace(classifier, threads=ray_config.threads_per_worker)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.actors = ray_config.workers or (
            max(1, gpus) if self.gpus_per_worker else max(1, cpus // ray_config.threads_per_worker)
        )
        self.stages = StageTimes(
            prepare_pool="ray", prepare_workers=self.actors, inference_workers=self.actors
        )
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def dataset(self, inputs: list[str], parts: Path | None, part_format: str) -> Any:
        """The inputs read by Ray tasks, then classified by the actors."""
        import ray.data
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = parts is None
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        schema = self.first.schema()
        items = [{"path": path, "index": i} for i, path in enumerate(inputs)]
        read = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            read_files,
            batch_size=1,
            batch_format="pyarrow",
            fn_kwargs={
                "format": self.config.format,
                "on_error": self.config.on_error,
                "rows": self.ray_config.batch_rows,
                "schema": schema,
            },
            # No CPU asked: the actors may hold every CPU of a small cluster.
            num_cpus=0,
        )
        return read.map_batches(
            Predictor,
            batch_size=None,
            batch_format="pyarrow",
            fn_constructor_kwargs={
                "export": str(self.folder.path.resolve()),
                "config": self.classifier,
                "plan": self.plan,
                "parts": None if parts is None else str(parts),
                "part_format": part_format,
                "schema": schema,
            },
            compute=ActorPoolStrategy(size=self.actors),
            num_cpus=self.ray_config.threads_per_worker,
            num_gpus=self.gpus_per_worker,
        )

    def tables(self, dataset: Any) -> Any:
        try:
            yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        except Exception as exc:
            raise _newsclf_error(exc) from None

    def gather(self, record: dict[str, Any]) -> ChunkFigures:
        """Take in one batch's record from an actor: the worker's figures, the reader's."""
        if "info" in record:
            self.info = self.info or record["info"]
        figures = ChunkFigures(**record["figures"])
        worker, node, pid = record["worker"]
        seen = self.workers.get(worker) or WorkerStats(worker, node, pid, 0, 0, 0, 0.0)
        busy = figures.prepare_s + figures.inference_s
        self.workers[worker] = WorkerStats(
            worker, node, pid, seen.batches + 1, seen.rows + record["rows"],
            seen.tokens + figures.tokens, seen.busy_s + busy,
        )  # fmt: skip
        self.stages.prepare_s += figures.prepare_s
        self.stages.inference_s += figures.inference_s
        for read in record["read"]:
            self.stages.read_s += read["read_s"]
            self.skipped += [SkippedLine(line, reason) for line, reason in read["skipped"]]
        return figures

    def ordered(
        self,
        inputs: list[str],
        output: str | Path | None,
        review_output: str | Path | None,
        progress: ProgressCallback | None,
    ) -> RayClassifyResult:
        target, out_format = output_target(inputs[0], output, self.first.format or "csv")
        if any(Path(target).resolve() == Path(p).resolve() for p in inputs if not is_url(p)):
            raise InputError(f"--output {target} is an input file; choose another path.")
        review = review_target(review_output, self.config.min_confidence, inputs, target)
        schema = self.plan.output_schema(self.first.schema())
        with (
            AtomicTableWriter(target, out_format, schema) as writer,
            (
                AtomicTableWriter(review[0], review[1], schema)
                if review
                else contextlib.nullcontext()
            ) as review_writer,
        ):
            sink = ResultWriter(self.plan, writer, review_writer, self.evaluation, self.counts)
            for table in self.tables(self.dataset(inputs, None, out_format)):
                records = [json.loads(r) for r in table.column(STATS).to_pylist() if r]
                figures = [self.gather(r) for r in records]
                rows = table.drop_columns([STATS]).combine_chunks()
                with self.stages.timing("write"):
                    for batch in rows.to_batches():
                        sink.write(batch, _sum(figures))
                        figures = []
                if progress is not None:
                    progress(self.counts.rows, self.counts.rows, None)
            if self.counts.rows == 0:
                raise InputError(f"{inputs[0]}: no rows.")
        name = ",".join(inputs) if len(inputs) > 1 else self.first.name
        return self.result(name, str(target), review)

    def to_parts(self, inputs: list[str], output: Path) -> RayClassifyResult:
        if any(Path(p).resolve().is_relative_to(output.resolve()) for p in inputs if not is_url(p)):
            raise InputError(f"--output {output} holds input files; choose another folder.")
        part_format = self.first.format or "csv"
        with atomic_directory(output) as staging:
            for table in self.tables(self.dataset(inputs, staging, part_format)):
                for text in table.column(STATS).to_pylist():
                    record = json.loads(text)
                    self.counts.add(record["rows"], self.gather(record))
                    self.evaluation.merge(Evaluation.from_dict(record["evaluation"]))
                    self.stages.write_s += record["write_s"]
            parts = sorted(p.name for p in staging.iterdir() if p.is_file())
            if self.counts.rows == 0:
                raise InputError(f"{inputs[0]}: no rows.")
        result = self.result(inputs[0], str(output) + os.sep)
        result.part_files = [str(output / p) for p in parts]
        return result

    def result(
        self, input: str, output: str, review: tuple[str, str] | None = None
    ) -> RayClassifyResult:
        if self.info is None:
            raise NewsclfError("No Ray worker reported: nothing was classified.")
        return RayClassifyResult.of(
            input,
            output,
            self.counts,
            self.stages,
            ClassifierInfo(**self.info),
            self.evaluation,
            skipped=self.skipped,
            wall_s=time.perf_counter() - self.started,
            ray_address=self.ray.get_runtime_context().gcs_address,
            startup_s=self.startup_s,
            workers=sorted(self.workers.values(), key=lambda w: -w.rows),
            review_output=review[0] if review is not None else None,
        )


def _sum(figures: list[ChunkFigures]) -> ChunkFigures:
    """The figures of several batches as one (counts and latencies; seconds are gathered)."""
    total = ChunkFigures(tokens=0, empty_rows=0)
    for f in figures:
        total.tokens += f.tokens
        total.empty_rows += f.empty_rows
        total.padded_tokens += f.padded_tokens
        total.latencies_ms += f.latencies_ms
    return total
