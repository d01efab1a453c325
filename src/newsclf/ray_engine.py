"""`newsclf classify --engine ray`: the same classification on Ray Data, one machine or many.

Every Ray worker is an actor holding one `Classifier` built from the export folder (the same
cleaning, tokenization, length-sorted batching, variant and provider rules as the local engine),
with ONNX Runtime's threads set explicitly (Ray sets `OMP_NUM_THREADS` to an actor's CPUs) and,
with `--device cuda`, one GPU asked of Ray per actor. The export folder must be readable at the
same path on every node (shared storage).

Two ways through, chosen by the output:

* One output file (`--output FILE.ext`, or `<input>.predictions.<ext>` for a single file):
  every input row exactly once, in input order, written as the local engine writes it. The
  driver reads each local file with newsclf's own `TableReader` (so a malformed line is named,
  file and line, and `--on-error skip` works), in batches; only a row index, the joined raw text
  and the label's class index go to Ray's object store (which spills to disk when large). Ray
  Data runs them through the actors (`map_batches`), in order (`preserve_order`); the driver
  reads the files a second time in step with the results, adds the prediction columns to the
  very rows it read and writes them through `AtomicTableWriter` (hidden file, renamed at the
  end). Why not Ray's readers here: they name no lines, cannot skip a bad one, and re-type
  values (a CSV cell "007" would come back as 7); the full rows never need to travel.
  URL inputs (s3://, gs://, ...) on this path are read by Ray's readers, in order, and written
  the same way; their errors are Ray's (Arrow's), without line numbers.
* A directory (`--output DIR/`, the fast path): Ray's readers read the input (files, folders,
  URLs), the actors add the prediction columns, and Ray's writers write part files into a
  hidden folder renamed into place at the end. Nothing passes through the driver; the rows of
  the part files follow Ray's blocks, and `--on-error skip` is not available there.

Evaluation and throughput come back as counts, not rows: each actor reports, per batch, its id,
rows, tokens, seconds and the (true, predicted) counts to a small tally actor; the driver turns
the summed counts into the same `ClassificationMetrics` as the local engine
(`metrics_from_confusion`).
"""

from __future__ import annotations

import glob
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.atomic import atomic_directory
from newsclf.classifier import BatchStats, Classifier, ClassifierInfo
from newsclf.classify import (
    CONFIDENCE_COLUMN,
    PREDICTED_COLUMN,
    ClassifyResult,
    LabelMatcher,
    ProgressCallback,
    StageTimes,
    _annotate,
    _output_target,
    peak_rss_mb,
)
from newsclf.config import ClassifierConfig, ClassifyConfig, RayConfig
from newsclf.errors import InputError, NewsclfError
from newsclf.export_folder import ExportFolder
from newsclf.metrics import Confusion, metrics_from_confusion
from newsclf.tables import _EXTENSIONS, AtomicTableWriter, SkippedLine, TableReader, detect_format
from newsclf.text import choose_text_columns, join_columns, prepare_texts

INSTALL_HINT = (
    "--engine ray needs Ray: pip install 'newsclf[ray]' (or pip install 'ray[data]>=2.40')."
)

# Columns of the driver's batches and the actors' answers on the ordered path.
_ROW, _TEXT, _TRUTH, _PRED = "__row", "__text", "__truth", "__pred"
# Class index sent for a row without a usable label (empty, or a class the model lacks).
_NO_TRUTH = -1
# CPUs Ray's read and write tasks ask for: none, so that actors holding every CPU of a small
# cluster do not leave them waiting forever (they parse and write; the actors do the work).
_IO_CPUS = 0


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


@dataclass
class RayClassifyResult(ClassifyResult):
    """`ClassifyResult` of the Ray engine, plus the cluster and the per-worker figures.

    `wall_s` runs from the first input read to the output in place (actors starting and
    loading the model included); `startup_s` is the time to start or join the cluster before.
    """

    engine: str = "ray"
    ray_address: str = ""
    startup_s: float = 0.0
    workers: list[WorkerStats] = field(default_factory=list)
    part_files: list[str] = field(default_factory=list)

    def to_report(self) -> dict[str, Any]:
        report = super().to_report()
        report |= {
            "engine": self.engine,
            "ray": {
                "address": self.ray_address,
                "startup_s": round(self.startup_s, 3),
                "workers": [w.to_dict() for w in self.workers],
                "part_files": self.part_files,
            },
        }
        return report


# -- the actors ---------------------------------------------------------------------------


class _Tally:
    """A small actor that sums what the workers report: per-worker rows and seconds, tokens,
    padding, batch latencies, and the evaluation's counts."""

    def __init__(self, classes: int) -> None:
        self.matrix = np.zeros((classes, classes), dtype=np.int64)
        self.examples: dict[tuple[int, int], tuple[int, str]] = {}
        self.unknown: Counter[str] = Counter()
        self.unlabelled = 0
        self.tokens = self.padded_tokens = self.empty = self.rows = 0
        self.tokenize_s = self.inference_s = 0.0
        self.latencies_ms: list[float] = []
        self.workers: dict[str, dict[str, Any]] = {}
        self.info: dict[str, Any] | None = None

    def hello(self, info: dict[str, Any]) -> None:
        self.info = self.info or info

    def add(self, report: dict[str, Any]) -> None:
        self.matrix += np.asarray(report["matrix"], dtype=np.int64)
        for (t, p), (order, text) in report["examples"].items():
            if (t, p) not in self.examples or order < self.examples[(t, p)][0]:
                self.examples[(t, p)] = (order, text)
        self.unknown.update(report["unknown"])
        self.unlabelled += report["unlabelled"]
        for name in ("tokens", "padded_tokens", "empty", "rows"):
            setattr(self, name, getattr(self, name) + report[name])
        self.tokenize_s += report["tokenize_s"]
        self.inference_s += report["inference_s"]
        self.latencies_ms.extend(report["latencies_ms"])
        worker = self.workers.setdefault(
            report["worker"],
            {"node": report["node"], "pid": report["pid"], "batches": 0, "rows": 0, "tokens": 0}
            | {"busy_s": 0.0},
        )
        worker["batches"] += 1
        worker["rows"] += report["rows"]
        worker["tokens"] += report["tokens"]
        worker["busy_s"] += report["tokenize_s"] + report["inference_s"]

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


class _Predictor:
    """One Ray worker: a `Classifier` on its own threads (or GPU), called once per batch.

    `ordered=True`: batches come from the driver (row index, joined raw text, class index of
    the label) and the answer is the row index and the class probabilities. `ordered=False`:
    batches are whole rows from Ray's readers and the answer is those rows with the prediction
    columns added, formatted as the local engine writes them.
    """

    def __init__(
        self,
        export: str,
        classifier: dict[str, Any],
        tally: Any,
        ordered: bool,
        text_columns: list[str],
        label_column: str | None,
        probabilities: bool,
    ) -> None:
        import ray

        self.classifier = Classifier(export, **classifier)
        self.tally = tally
        self.ordered = ordered
        self.text_columns = text_columns
        self.label_column = label_column
        self.with_probabilities = probabilities
        self.match = LabelMatcher(self.classifier.label_names)
        self.label_names = np.asarray(self.classifier.label_names, dtype=object)
        context = ray.get_runtime_context()
        self.worker = context.get_actor_id() or f"pid-{os.getpid()}"
        self.node = context.get_node_id()
        ray.get(tally.hello.remote(self.classifier.info().to_dict()))

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        started = time.perf_counter()
        unknown: Counter[str] = Counter()
        unlabelled = 0
        if self.ordered:
            order = batch.column(_ROW).to_numpy()
            raw = [[t] for t in batch.column(_TEXT).to_pylist()]
            truth = batch.column(_TRUTH).to_numpy().astype(np.int64)
        else:
            order = None
            columns = [batch.column(c).to_pylist() for c in self.text_columns]
            raw = [list(parts) for parts in zip(*columns, strict=True)]
            truth = np.full(batch.num_rows, _NO_TRUTH, dtype=np.int64)
            if self.label_column is not None:
                values = batch.column(self.label_column).to_pylist()
                matched, unlabelled, unknown = self.match.truth(values)
                truth = matched.astype(np.int64)
        pre = self.classifier.preprocessing
        texts = prepare_texts(raw, clean=pre.clean, separator=pre.text_separator)
        encoded = self.classifier.encode(texts)
        tokenized = time.perf_counter()
        stats = BatchStats()
        probabilities = self.classifier.probabilities(encoded, stats)
        inferred = time.perf_counter()
        predicted = probabilities.argmax(axis=1) if len(texts) else np.empty(0, dtype=np.int64)

        k = len(self.label_names)
        known = truth >= 0
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (truth[known], predicted[known]), 1)
        examples: dict[tuple[int, int], tuple[int, str]] = {}
        for i in np.flatnonzero(known & (truth != predicted)):
            key = (int(truth[i]), int(predicted[i]))
            if key not in examples:
                # Rows come in input order: the first mistake of a kind is the local engine's.
                examples[key] = (int(order[i]) if order is not None else 0, texts[i])
        import ray

        ray.get(
            self.tally.add.remote(
                {
                    "worker": self.worker,
                    "node": self.node,
                    "pid": os.getpid(),
                    "rows": len(texts),
                    "tokens": encoded.tokens,
                    "padded_tokens": stats.padded_tokens,
                    "empty": sum(1 for t in texts if not t),
                    "tokenize_s": tokenized - started,
                    "inference_s": inferred - tokenized,
                    "latencies_ms": stats.latencies_ms,
                    "matrix": matrix,
                    "examples": examples,
                    "unknown": unknown,
                    "unlabelled": unlabelled,
                }
            )
        )
        if self.ordered:
            answer = {_ROW: pa.array(order), _PRED: pa.array(predicted.astype(np.int64))}
            for j in range(k):
                answer[f"__p{j}"] = pa.array(probabilities[:, j])
            return pa.table(answer)
        rows = [{} for _ in range(len(texts))]
        _annotate(rows, probabilities, predicted, self.label_names, self.with_probabilities)
        for name in rows[0] if rows else ():
            batch = batch.append_column(name, pa.array([r[name] for r in rows]))
        return batch


# -- the driver ---------------------------------------------------------------------------


def classify_with_ray(
    input: str | Path,
    export: str | Path,
    classifier: ClassifierConfig | None = None,
    config: ClassifyConfig | None = None,
    ray_config: RayConfig | None = None,
    *,
    output: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> RayClassifyResult:
    """Classify a table, a folder or glob of tables, or a URL on Ray Data (see the module).

    Args:
        input: a CSV, TSV, JSONL or Parquet file, a folder or glob of them, or a URL Ray's
            readers accept (s3://, gs://, ...).
        export: the export folder; at the same path on every node of a cluster.
        classifier: device, variant, batching (threads: `ray_config.threads_per_worker`).
        config: how rows are read and written, as for the local engine.
        ray_config: cluster address, workers, threads per worker.
        output: one output file (every row once, in input order; format by extension), or a
            folder ending in `/` (or an existing one) for Ray's part files. Default: beside a
            single input file, as the local engine.
        progress: called after each written batch with (rows done, units done, units total).

    Returns:
        `RayClassifyResult`: the local engine's report, plus the cluster and each worker.

    Raises:
        InputError: Ray is not installed; the input is missing or malformed (file and line on
            the ordered path); the output would overwrite an input.
        ModelError, ProviderError: the export or the device does not work (also raised by an
            actor, re-raised here).
    """
    classifier = classifier or ClassifierConfig()
    config = config or ClassifyConfig()
    ray_config = ray_config or RayConfig()
    ray = _import_ray()
    folder = ExportFolder.load(export)  # a bad folder fails here, before any cluster starts
    inputs = expand_inputs(str(input), config.format)
    to_folder = output is not None and (
        str(output).endswith(("/", os.sep)) or Path(output).is_dir()
    )
    if to_folder and _is_url(str(output)):
        raise InputError(
            f"--output {output}: part files are staged and renamed into place, which needs a "
            "file system path (local or shared, mounted on every node)."
        )
    if not to_folder and output is None and (len(inputs) > 1 or _is_url(inputs[0])):
        raise InputError(
            f"{input} is several files or a URL: name the output, --output FILE.ext for one "
            "ordered file or --output DIR/ for part files."
        )
    if to_folder and config.on_error == "skip":
        raise InputError(
            "--on-error skip needs newsclf's line-numbered reader: use --output FILE.ext, "
            "or --on-error raise with --output DIR/."
        )

    started = time.perf_counter()
    owns_cluster = _connect(ray, ray_config.address)
    startup_s = time.perf_counter() - started
    try:
        session = _Session(ray, folder, classifier, config, ray_config)
        if to_folder:
            return session.to_parts(inputs, Path(output), startup_s)  # type: ignore[arg-type]
        if any(_is_url(p) for p in inputs):
            return session.ordered_from_ray_reader(inputs, output, startup_s, progress)
        return session.ordered(inputs, output, startup_s, progress)
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


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def expand_inputs(input: str, format: str | None = None) -> list[str]:
    """The input files, in the order their rows are read: one file, a folder's tables (sorted
    by name; hidden files left out), a glob's matches (sorted), or a URL as given.

    Raises:
        InputError: stdin, nothing there, or no table in the folder or glob.
    """
    if input == "-":
        raise InputError("--engine ray reads files, not stdin: use --engine local for -.")
    if _is_url(input):
        return [input]
    path = Path(input.removeprefix("file://"))
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file())
    elif glob.has_magic(input):
        candidates = sorted(Path(p) for p in glob.glob(input) if Path(p).is_file())
    else:
        raise InputError(f"{input}: no such file, folder or glob match.")
    files = [
        str(p)
        for p in candidates
        if not p.name.startswith((".", "_")) and (format or p.suffix.lower() in _EXTENSIONS)
    ]
    if not files:
        raise InputError(f"{input}: holds no CSV, TSV, JSONL or Parquet file.")
    return files


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
        raise InputError(
            f"--ray-address {address}: cannot join a Ray cluster there ({exc})."
        ) from exc
    return True


def _newsclf_error(exc: BaseException) -> NewsclfError | None:
    """The newsclf error an actor raised, out of Ray's wrappers."""
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
    return None


@dataclass
class _Run:
    """Figures the driver gathers while a run goes."""

    rows: int = 0
    read_s: float = 0.0
    write_s: float = 0.0
    skipped: list[SkippedLine] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)
    unlabelled: int = 0
    has_labels: bool = False


class _Session:
    """One run on a connected cluster: the tally, the actors, the ways through."""

    def __init__(
        self,
        ray: Any,
        folder: ExportFolder,
        classifier: ClassifierConfig,
        config: ClassifyConfig,
        ray_config: RayConfig,
    ) -> None:
        from ray.data import DataContext

        self.ray = ray
        self.folder = folder
        self.config = config
        self.ray_config = ray_config
        self.label_names = folder.label_names
        self.classifier_kwargs = {
            "device": classifier.device,
            "variant": classifier.variant,
            "batch_size": classifier.batch_size,
            "max_batch_tokens": classifier.max_batch_tokens,
            "threads": ray_config.threads_per_worker,
        }
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.num_gpus = (
            1 if classifier.device == "cuda" or (classifier.device == "auto" and gpus > 0) else 0
        )
        if ray_config.workers is not None:
            self.workers = ray_config.workers
        elif self.num_gpus:
            self.workers = max(1, gpus)
        else:
            cpus = int(resources.get("CPU", 1))
            self.workers = max(1, cpus // ray_config.threads_per_worker)
        self.tally = ray.remote(num_cpus=0)(_Tally).remote(len(self.label_names))
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False

    def _predict(
        self, dataset: Any, *, ordered: bool, text_columns: list[str], label_column: str | None
    ) -> Any:
        from ray.data import ActorPoolStrategy

        return dataset.map_batches(
            _Predictor,
            batch_format="pyarrow",
            # Ordered: the driver's blocks are the batches (merging them would starve actors).
            batch_size=None if ordered else self.ray_config.batch_rows,
            fn_constructor_kwargs={
                "export": str(self.folder.path.resolve()),
                "classifier": self.classifier_kwargs,
                "tally": self.tally,
                "ordered": ordered,
                "text_columns": text_columns,
                "label_column": label_column,
                "probabilities": self.config.probabilities,
            },
            compute=ActorPoolStrategy(size=self.workers),
            num_cpus=self.ray_config.threads_per_worker,
            num_gpus=self.num_gpus,
        )

    def _added_columns(self, columns: list[str], where: str) -> list[str]:
        added = [PREDICTED_COLUMN, CONFIDENCE_COLUMN]
        if self.config.probabilities:
            added += [f"prob_{name}" for name in self.label_names]
        clash = [c for c in added if c in columns]
        if clash:
            raise InputError(
                f"{where} already has column(s) {', '.join(clash)}; rename them so that the "
                "predictions do not overwrite them."
            )
        return added

    def _text_columns(self, columns: list[str], where: str) -> list[str]:
        return choose_text_columns(
            columns,
            requested=self.config.text_columns,
            trained=self.folder.preprocessing.text_columns,
            where=where,
        )

    # -- one ordered output file, from local files ---------------------------------------

    def ordered(
        self,
        inputs: list[str],
        output: str | Path | None,
        startup_s: float,
        progress: ProgressCallback | None,
    ) -> RayClassifyResult:
        started = time.perf_counter()
        config, run = self.config, _Run()
        first = TableReader(inputs[0], config.format, on_error=config.on_error)
        columns = list(first.columns)
        text_columns = self._text_columns(columns, first.name)
        run.has_labels = config.label_column in columns
        target, out_format = _output_target(inputs[0], output, first.format)
        for path in inputs[1:]:
            if Path(target).resolve() == Path(path).resolve():
                raise InputError(f"--output {target} is an input file; choose another path.")
        added = self._added_columns(columns, first.name)

        # Pass 1: only what the workers need goes to the object store.
        match = LabelMatcher(self.label_names)
        pre = self.folder.preprocessing
        refs = []
        for path, reader in self._readers(inputs, first, columns, run):
            for chunk, read_s in _timed(reader.iter_chunks(self.ray_config.batch_rows)):
                run.read_s += read_s
                texts = [
                    join_columns([row.get(c) for c in text_columns], pre.text_separator)
                    for row in chunk.rows
                ]
                truth = np.full(len(chunk), _NO_TRUTH, dtype=np.int16)
                if run.has_labels:
                    values = [row.get(config.label_column) for row in chunk.rows]
                    truth, unlabelled, unknown = match.truth(values)
                    run.unlabelled += unlabelled
                    run.unknown.update(unknown)
                refs.append(self.ray.put(_driver_batch(run.rows, texts, truth)))
                run.rows += len(chunk)
            run.skipped += _named_skips(path, reader, len(inputs))
        if run.rows == 0:
            if not run.skipped:
                raise InputError(f"{first.name}: the file has a header but no rows.")
            raise InputError(f"{first.name}: every row was malformed and skipped.")

        from ray.data import from_arrow_refs

        spread = self.workers * 4
        if len(refs) < spread:
            # A small input (under `spread` batches) makes few blocks: cut it into smaller ones,
            # in order, so that every actor gets work. (Ray's repartition would need CPUs that
            # the actors hold on a small cluster.)
            import pyarrow as pa

            table = pa.concat_tables(self.ray.get(refs))
            size = math.ceil(run.rows / spread)
            refs = [self.ray.put(table.slice(i, size)) for i in range(0, run.rows, size)]
        dataset = self._predict(
            from_arrow_refs(refs), ordered=True, text_columns=[_TEXT], label_column=None
        )
        label_names = np.asarray(self.label_names, dtype=object)
        done = 0
        # Pass 2: the same rows again, in step with the answers, which come in input order.
        with AtomicTableWriter(target, out_format, columns + added) as writer:
            answers = _Answers(self._iterate(dataset), len(self.label_names))
            for path, reader in self._readers(inputs, None, columns, None):
                for chunk, read_s in _timed(reader.iter_chunks(config.chunk_rows)):
                    run.read_s += read_s
                    rows_index, predicted, probabilities = answers.take(len(chunk))
                    t0 = time.perf_counter()
                    if rows_index[0] != done or rows_index[-1] != done + len(chunk) - 1:
                        raise NewsclfError(
                            f"{path}: Ray returned rows out of order; nothing was written."
                        )
                    _annotate(
                        chunk.rows, probabilities, predicted, label_names, config.probabilities
                    )
                    writer.write_rows(chunk.rows)
                    done += len(chunk)
                    run.write_s += time.perf_counter() - t0
                    if progress is not None:
                        progress(done, done, run.rows)
            if done != run.rows or not answers.exhausted():
                raise NewsclfError(
                    f"{done} rows read again but {run.rows} classified: did an input file change "
                    "while it was read? Nothing was written."
                )
        return self._result(
            ",".join(inputs) if len(inputs) > 1 else first.name,
            str(target),
            run,
            time.perf_counter() - started,
            startup_s,
        )

    def _readers(
        self,
        inputs: list[str],
        first: TableReader | None,
        columns: list[str],
        run: _Run | None,
    ) -> Iterator[tuple[str, TableReader]]:
        """A reader per input file; header formats must share the first file's columns."""
        for index, path in enumerate(inputs):
            t0 = time.perf_counter()
            if index == 0 and first is not None:
                reader = first
            else:
                reader = TableReader(path, self.config.format, on_error=self.config.on_error)
            if run is not None:
                run.read_s += time.perf_counter() - t0
            if reader.format != "jsonl" and reader.columns != columns:
                raise InputError(
                    f"{reader.name}: its columns ({', '.join(reader.columns)}) differ from "
                    f"{inputs[0]}'s ({', '.join(columns)}); one output needs one set of columns."
                )
            if reader.format == "jsonl":
                self._text_columns(reader.columns, reader.name)
            yield path, reader

    def _iterate(self, dataset: Any) -> Iterator[Any]:
        try:
            yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> NewsclfError:
        found = _newsclf_error(exc)
        if found is not None:
            return found
        message = str(exc).strip().splitlines()
        return NewsclfError(f"Ray Data failed: {message[-1] if message else type(exc).__name__}")

    # -- Ray's readers: URLs to one ordered file, anything to part files -----------------

    def _read(self, inputs: list[str]) -> tuple[Any, str]:
        import ray.data

        fmt = detect_format(inputs[0], self.config.format)
        paths = inputs[0] if len(inputs) == 1 else inputs
        try:
            if fmt == "parquet":
                return ray.data.read_parquet(paths, num_cpus=_IO_CPUS), fmt
            if fmt == "jsonl":
                return (
                    ray.data.read_json(paths, lines=True, file_extensions=None, num_cpus=_IO_CPUS),
                    fmt,
                )
            import pyarrow.csv as pacsv

            delimiter = "\t" if fmt == "tsv" else ","
            return ray.data.read_csv(
                paths, parse_options=pacsv.ParseOptions(delimiter=delimiter), num_cpus=_IO_CPUS
            ), fmt
        except Exception as exc:
            raise InputError(f"{inputs[0]}: Ray cannot read it ({self._error(exc)}).") from None

    def _schema_columns(self, dataset: Any, where: str) -> list[str]:
        try:
            schema = dataset.schema()
        except Exception as exc:
            raise InputError(f"{where}: Ray cannot read it ({self._error(exc)}).") from None
        if schema is None:
            raise InputError(f"{where}: no rows.")
        return list(schema.names)

    def ordered_from_ray_reader(
        self,
        inputs: list[str],
        output: str | Path | None,
        startup_s: float,
        progress: ProgressCallback | None,
    ) -> RayClassifyResult:
        started = time.perf_counter()
        run = _Run()
        dataset, _ = self._read(inputs)
        columns = self._schema_columns(dataset, inputs[0])
        text_columns = self._text_columns(columns, inputs[0])
        run.has_labels = self.config.label_column in columns
        added = self._added_columns(columns, inputs[0])
        target = str(output)
        predicted = self._predict(
            dataset,
            ordered=False,
            text_columns=text_columns,
            label_column=self.config.label_column if run.has_labels else None,
        )
        with AtomicTableWriter(target, detect_format(target), columns + added) as writer:
            for batch in self._iterate(predicted):
                t0 = time.perf_counter()
                writer.write_rows(batch.to_pylist())
                run.rows += batch.num_rows
                run.write_s += time.perf_counter() - t0
                if progress is not None:
                    progress(run.rows, run.rows, None)
            if run.rows == 0:
                raise InputError(f"{inputs[0]}: no rows.")
        return self._result(inputs[0], target, run, time.perf_counter() - started, startup_s)

    def to_parts(self, inputs: list[str], output: Path, startup_s: float) -> RayClassifyResult:
        started = time.perf_counter()
        run = _Run()
        dataset, fmt = self._read(inputs)
        columns = self._schema_columns(dataset, inputs[0])
        text_columns = self._text_columns(columns, inputs[0])
        run.has_labels = self.config.label_column in columns
        self._added_columns(columns, inputs[0])
        if any(
            Path(p).resolve().is_relative_to(output.resolve()) for p in inputs if not _is_url(p)
        ):
            raise InputError(f"--output {output} holds input files; choose another folder.")
        predicted = self._predict(
            dataset,
            ordered=False,
            text_columns=text_columns,
            label_column=self.config.label_column if run.has_labels else None,
        )
        t0 = time.perf_counter()
        io = {"num_cpus": _IO_CPUS}
        with atomic_directory(output) as staging:
            try:
                if fmt == "parquet":
                    predicted.write_parquet(str(staging), ray_remote_args=io)
                elif fmt == "jsonl":
                    predicted.write_json(str(staging), ray_remote_args=io, force_ascii=False)
                else:
                    import pyarrow.csv as pacsv

                    delimiter = "\t" if fmt == "tsv" else ","
                    predicted.write_csv(
                        str(staging),
                        ray_remote_args=io,
                        arrow_csv_args_fn=lambda: {
                            "write_options": pacsv.WriteOptions(delimiter=delimiter)
                        },
                    )
            except Exception as exc:
                raise self._error(exc) from None
            parts = sorted(p.name for p in staging.iterdir() if p.is_file())
        run.write_s = time.perf_counter() - t0
        summary_rows = self.ray.get(self.tally.summary.remote())["rows"]
        if summary_rows == 0:
            raise InputError(f"{inputs[0]}: no rows.")
        run.rows = summary_rows
        result = self._result(
            inputs[0], str(output) + os.sep, run, time.perf_counter() - started, startup_s
        )
        result.part_files = [str(output / p) for p in parts]
        return result

    # -- the result ---------------------------------------------------------------------

    def _result(
        self, input: str, output: str, run: _Run, wall_s: float, startup_s: float
    ) -> RayClassifyResult:
        tally = self.ray.get(self.tally.summary.remote())
        info = ClassifierInfo(**tally["info"]) if tally["info"] else None
        if info is None:
            raise NewsclfError("No Ray worker reported: nothing was classified.")
        result = RayClassifyResult(
            input=input,
            output=output,
            rows=tally["rows"],
            tokens=tally["tokens"],
            padded_tokens=tally["padded_tokens"],
            wall_s=wall_s,
            stages=StageTimes(
                read_s=run.read_s,
                tokenize_s=tally["tokenize_s"],
                inference_s=tally["inference_s"],
                write_s=run.write_s,
                overlapped=True,
            ),
            classifier=info,
            empty_text_rows=tally["empty"],
            skipped_lines=run.skipped,
            peak_rss_mb=peak_rss_mb(),
            batch_latencies_ms=tally["latencies_ms"],
            ray_address=self.ray.get_runtime_context().gcs_address,
            startup_s=startup_s,
            workers=sorted(
                (
                    WorkerStats(
                        worker=w,
                        node=s["node"],
                        pid=s["pid"],
                        batches=s["batches"],
                        rows=s["rows"],
                        tokens=s["tokens"],
                        busy_s=s["busy_s"],
                    )
                    for w, s in tally["workers"].items()
                ),
                key=lambda w: -w.rows,
            ),
        )
        if run.has_labels:
            unknown = run.unknown + tally["unknown"]
            matrix = np.asarray(tally["matrix"])
            result.unlabelled_rows = run.unlabelled + tally["unlabelled"]
            result.unknown_labels = dict(unknown.most_common())
            result.labelled_rows = int(matrix.sum())
            if result.labelled_rows:
                metrics = metrics_from_confusion(matrix, self.label_names)
                index = {n: i for i, n in enumerate(self.label_names)}
                examples = tally["examples"]
                result.metrics = metrics
                result.confusions = [
                    Confusion(
                        c.true,
                        c.predicted,
                        c.count,
                        examples.get((index[c.true], index[c.predicted]), (0, ""))[1],
                    )
                    for c in metrics.top_confusions()
                ]
        return result


def _driver_batch(first_row: int, texts: list[str], truth: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            _ROW: pa.array(np.arange(first_row, first_row + len(texts), dtype=np.int64)),
            _TEXT: pa.array(texts, type=pa.string()),
            _TRUTH: pa.array(truth),
        }
    )


def _timed(chunks: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Each chunk with the seconds reading it took."""
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk, time.perf_counter() - t0


def _named_skips(path: str, reader: TableReader, files: int) -> list[SkippedLine]:
    if files == 1:
        return list(reader.skipped)
    return [SkippedLine(s.line, f"{path}: {s.reason}") for s in reader.skipped]


class _Answers:
    """The actors' answers, in order, taken a chunk of rows at a time."""

    def __init__(self, batches: Iterator[Any], classes: int) -> None:
        self.batches = batches
        self.classes = classes
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.buffered = 0

    def _pull(self) -> bool:
        batch = next(self.batches, None)
        if batch is None:
            return False
        if batch.num_rows:
            probabilities = np.column_stack(
                [batch.column(f"__p{j}").to_numpy() for j in range(self.classes)]
            ).astype(np.float32)
            self.pending.append(
                (batch.column(_ROW).to_numpy(), batch.column(_PRED).to_numpy(), probabilities)
            )
            self.buffered += batch.num_rows
        return True

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        while self.buffered < n:
            if not self._pull():
                raise NewsclfError("Ray returned fewer rows than were sent; nothing was written.")
        rows, predicted, probabilities = (
            np.concatenate(p) for p in zip(*self.pending, strict=True)
        )
        self.pending = [(rows[n:], predicted[n:], probabilities[n:])] if len(rows) > n else []
        self.buffered -= n
        return rows[:n], predicted[:n], probabilities[:n]

    def exhausted(self) -> bool:
        """Whether every answer was taken (reading on through empty batches)."""
        while self.buffered == 0 and self._pull():
            pass
        return self.buffered == 0
