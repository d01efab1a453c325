"""`newsclf classify --engine ray`: the local engine's per-chunk steps on Ray Data.

Ray tasks read the inputs with newsclf's reader (a file per task: errors name file and line);
actors (`Predictor`, a `Classifier` each) prepare, classify and add the prediction columns,
chunk by chunk. One output file: the chunks come back in input order and the driver writes them
with the local engine's writer. A folder (`--output DIR/`): each actor writes its chunks as part
files named to sort in input order, staged and renamed into place at the end. Either way only
the chunks and a small record per chunk travel; nothing waits on a call per chunk. The export
folder and the inputs must be readable at the same paths on every node.
"""

from __future__ import annotations

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
from newsclf.integrations.ray.actors import STATS, Predictor, WorkerStats, read_files
from newsclf.integrations.ray.config import RayConfig
from newsclf.io import STDIN, SkippedLine, TableReader, atomic_directory, is_url, table_files

INSTALL_HINT = "--engine ray needs Ray: pip install 'newsclf[ray]' (or 'ray[data]>=2.40')."
# What `ResultWriter.write` adds to the counts on the ordered path: the records carry it.
NO_FIGURES = ChunkFigures(tokens=0, empty_rows=0)


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
        classifier: each worker's device, variant and batching (threads: `ray_config`'s).
        config: how rows are read and written, as for the local engine.
        ray_config: cluster address, workers, threads per worker.
        output: one output file (every row once, in input order; format by extension), or a
            folder ending in `/` (or an existing one) for part files.
        review_output: the rows under `config.min_confidence` also to this file (one output
            file only).
        progress: called after each written chunk with (rows done, rows done, None).

    Raises:
        InputError: Ray missing; the input missing or malformed; an option the Ray engine
            cannot honour; an output that would overwrite an input.
        ModelError, ProviderError: the export or the device does not work (also when an
            actor raised it).
    """
    classifier, config = classifier or ClassifierConfig(), config or ClassifyConfig()
    ray_config = ray_config or RayConfig()
    if classifier.threads is not None:
        raise InputError("--threads is the local engine's; use --threads-per-worker with Ray.")
    if config.prepare_workers is not None or config.prepare_pool != "auto":
        raise InputError("--prepare-workers/--prepare-pool are the local engine's.")
    folder = ExportFolder.load(export)  # a bad folder fails here, before any cluster starts
    if str(input) == STDIN:
        raise InputError("--engine ray reads files, not stdin: use --engine local for -.")
    inputs = table_files(str(input), config.format)
    to_folder = output is not None and (
        str(output).endswith(("/", os.sep)) or Path(output).is_dir()
    )
    if to_folder and is_url(str(output)):
        raise InputError(
            f"--output {output}: part files are staged and renamed into place, which needs a "
            "file system path (local or shared by every node)."
        )
    if not to_folder and output is None and (len(inputs) > 1 or is_url(inputs[0])):
        raise InputError(
            f"{input} is several files or a URL: name the output, --output FILE.ext for one "
            "ordered file or --output DIR/ for part files."
        )
    if review_output is not None and to_folder:
        raise InputError(
            "--review-output needs one output file (--output FILE.ext); with part files, select "
            "the rows whose needs_review is true from them."
        )
    first = TableReader(inputs[0], config.format, on_error=config.on_error)
    plan = OutputPlan.for_input(
        first.columns, first.name, label_names=folder.label_names,
        preprocessing=folder.preprocessing, config=config,
    )  # fmt: skip
    started = time.perf_counter()
    ray, owns_cluster = _connect(ray_config.address)
    try:
        run = _Run(ray, folder, classifier, config, ray_config, plan, first)
        run.startup_s = time.perf_counter() - started
        if to_folder:
            return run.to_parts(inputs, Path(output))  # type: ignore[arg-type]
        return run.ordered(inputs, output, review_output, progress)
    finally:
        if owns_cluster:
            ray.shutdown()


def _connect(address: str | None) -> tuple[Any, bool]:
    """Ray, joined to the cluster at `address` or a new local one (None), and whether this call
    connected (and must shut it down): not when the process was already connected."""
    try:
        import ray
        import ray.data  # the extra: Ray Data, not only Ray core
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)  # fmt: skip
    except ConnectionError as exc:
        raise InputError(f"--ray-address {address}: cannot join a Ray cluster ({exc}).") from exc
    return ray, True


def _newsclf_error(exc: BaseException) -> NewsclfError:
    """The newsclf error an actor or task raised, out of Ray's wrappers; else Ray's message."""
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
        plan: OutputPlan,
        first: TableReader,
    ) -> None:
        self.ray, self.folder, self.config, self.ray_config = ray, folder, config, ray_config
        self.plan, self.first = plan, first
        self.started, self.startup_s = time.perf_counter(), 0.0
        self.evaluation = Evaluation(folder.label_names, config.min_confidence)
        self.counts, self.skipped = RunCounts(), list[SkippedLine]()
        self.workers: dict[str, WorkerStats] = {}
        self.info: dict[str, Any] | None = None
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        self.gpus = int(classifier.device == "cuda" or (classifier.device == "auto" and gpus > 0))
        self.classifier = replace(classifier, threads=ray_config.threads_per_worker)
        self.actors = ray_config.workers or (
            max(1, gpus) if self.gpus else max(1, cpus // ray_config.threads_per_worker)
        )
        self.stages = StageTimes(
            prepare_pool="ray", prepare_workers=self.actors, inference_workers=self.actors
        )
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def tables(self, inputs: list[str], parts: Path | None, part_format: str) -> Any:
        """The actors' answers: the inputs read by Ray tasks, classified by the actors."""
        import ray.data
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = parts is None
        context.enable_progress_bars = context.print_on_execution_start = False
        items = [{"path": path, "index": i} for i, path in enumerate(inputs)]
        schema = self.first.schema()
        read = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            read_files, batch_size=1, batch_format="pyarrow",
            fn_kwargs={"format": self.config.format, "on_error": self.config.on_error,
                       "rows": self.ray_config.batch_rows, "schema": schema},
            num_cpus=0,  # the actors may hold every CPU of a small cluster
        )  # fmt: skip
        answers = read.map_batches(
            Predictor, batch_size=None, batch_format="pyarrow",
            fn_constructor_kwargs={
                "export": str(self.folder.path.resolve()), "config": self.classifier,
                "plan": self.plan, "parts": None if parts is None else str(parts),
                "part_format": part_format, "schema": schema,
            },
            compute=ActorPoolStrategy(size=self.actors),
            num_cpus=self.ray_config.threads_per_worker, num_gpus=self.gpus,
        )  # fmt: skip
        try:
            yield from answers.iter_batches(batch_size=None, batch_format="pyarrow")
        except Exception as exc:
            raise _newsclf_error(exc) from None

    def gather(self, record: dict[str, Any], rows: int = 0) -> None:
        """One chunk's record from an actor: the worker's figures and the reader's; `rows` where
        they are not counted as they are written."""
        self.info = self.info or record.get("info")
        figures = ChunkFigures(**record["figures"])
        self.counts.add(rows, figures)
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
        with ResultWriter(
            self.plan, self.first.schema(), (target, out_format), review, self.evaluation,
            self.counts,
        ) as sink:  # fmt: skip
            for table in self.tables(inputs, None, out_format):
                for record in filter(None, table.column(STATS).to_pylist()):
                    self.gather(json.loads(record))
                with self.stages.timing("write"):
                    for batch in table.drop_columns([STATS]).combine_chunks().to_batches():
                        sink.write(batch, NO_FIGURES)
                if progress is not None:
                    progress(self.counts.rows, self.counts.rows, None)
            if self.counts.rows == 0:
                raise InputError(f"{inputs[0]}: no rows.")
        name = ",".join(inputs) if len(inputs) > 1 else self.first.name
        return self.result(name, str(target), review)

    def to_parts(self, inputs: list[str], output: Path) -> RayClassifyResult:
        if any(Path(p).resolve().is_relative_to(output.resolve()) for p in inputs if not is_url(p)):
            raise InputError(f"--output {output} holds input files; choose another folder.")
        with atomic_directory(output) as staging:
            for table in self.tables(inputs, staging, self.first.format or "csv"):
                for record in map(json.loads, table.column(STATS).to_pylist()):
                    self.gather(record, record["rows"])
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
            input, output, self.counts, self.stages, ClassifierInfo(**self.info),
            self.evaluation, skipped=self.skipped,
            wall_s=time.perf_counter() - self.started,
            ray_address=self.ray.get_runtime_context().gcs_address, startup_s=self.startup_s,
            workers=sorted(self.workers.values(), key=lambda w: -w.rows),
            review_output=review[0] if review is not None else None,
        )  # fmt: skip
