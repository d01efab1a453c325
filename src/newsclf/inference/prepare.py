"""Preparing chunks of rows for inference: the text columns joined and cleaned as the model was
trained (`model_texts`), then tokenized into flat id buffers (`TextEncoder`).

`PreparePool` runs it beside inference, in the input's order, with a bounded number of chunks
in flight: in turn (by the inference thread), in threads (where the work releases the GIL:
Arrow and the Rust tokenizer), or in processes (where it does not: cleaning is Python, one row
at a time). A reader thread reads the chunks and hands them to the pool. This module stays
light (no torch, no ONNX Runtime): worker processes import it.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from newsclf.environment import cpu_cores
from newsclf.errors import NewsclfError
from newsclf.io import model_texts

_IDS = attrgetter("ids")


@dataclass
class Encoded:
    """Token ids of texts, unpadded: every row's ids one after another in one flat buffer,
    and each row's length."""

    ids: np.ndarray
    lengths: np.ndarray

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def starts(self) -> np.ndarray:
        """Where each row's ids start in `ids`."""
        return np.concatenate(([0], np.cumsum(self.lengths, dtype=np.int64)[:-1]))

    def __len__(self) -> int:
        return len(self.lengths)


# Texts on which a fast tokenizer must give `tokenizers`' ids before it is used: accents and
# their stripping, special tokens inside text, scripts, controls, invisible and exotic
# characters, a word too long for the vocabulary, truncation.
PROBE_TEXTS = (
    "",
    "Stocks rally as rates fall; Rovers win the cup final!",
    'It\'s $5.3bn -- "quoted" (parens) [CLS] inside [SEP] and [PAD] [UNK]',
    "caf\u00e9 na\u00efve \u00c9COLE e\u0301 \u0130stanbul stra\u00dfe \ufb01 \u03a3\u0391\u03a3",
    "\u4e2d\u6587\u5b57 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0928\u092e\u0938\u094d\u0924\u0947",
    "emoji \U0001f600\U0001f44d\U0001f3fd \u200d\u2764 zero\u200bwidth \u202eoverride\u202c",
    "tab\there\x00nul\x07bel\x1besc a\x0bb\x0cc\x85next \u00a0nbsp\u3000ideo",
    "x" * 150,
    "markets " * 300,
)


class TextEncoder:
    """The model's tokenizer as classify uses it: no padding (batches pad themselves),
    truncation at the model's max length, special tokens as trained. Picklable (it travels as
    the tokenizer's JSON), so that worker processes tokenize exactly as this process does.

    It runs nanotoken (a WordPiece tokenizer that gives `tokenizers`' ids many times faster
    per core, straight into flat buffers: benchmarks/NOTES.md) where it is installed, supports
    the tokenizer and gives the same ids as `tokenizers` on `PROBE_TEXTS`; `tokenizers`
    otherwise, saying why in `fallback_reason`. `name` says which runs."""

    def __init__(self, tokenizer_json: str, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer_json = tokenizer_json
        self.max_length = max_length
        self._reference = Tokenizer.from_str(tokenizer_json)
        self._reference.no_padding()
        self._reference.enable_truncation(max_length)
        self._fast, self.fallback_reason = self._fast_tokenizer()
        self.name = _version("nanotoken" if self._fast is not None else "tokenizers")

    def _fast_tokenizer(self) -> tuple[Any, str | None]:
        try:
            import nanotoken
        except ImportError:
            return None, "nanotoken is not installed"
        try:
            fast = nanotoken.Tokenizer(self._reference)
        except nanotoken.UnsupportedTokenizerError as exc:
            return None, f"nanotoken does not support this tokenizer ({exc})"
        ids = fast.encode_batch(list(PROBE_TEXTS), max_length=self.max_length).to_list()
        expected = [e.ids for e in self._reference.encode_batch(list(PROBE_TEXTS))]
        if [list(map(int, row)) for row in ids] != expected:
            return None, "nanotoken's ids differ from tokenizers' on a probe text"
        return fast, None

    def __reduce__(self) -> tuple[Any, ...]:
        return (TextEncoder, (self.tokenizer_json, self.max_length))

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Token ids of (already prepared) texts."""
        if self._fast is not None:
            ragged = self._fast.encode_batch(list(texts), max_length=self.max_length)
            return Encoded(ragged.ids, ragged.lengths.astype(np.int32))
        encodings = self._reference.encode_batch(list(texts))
        ids = list(map(_IDS, encodings))
        lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        return Encoded(flat, lengths)


def _version(package: str) -> str:
    from importlib import metadata

    return f"{package} {metadata.version(package)}"


@dataclass
class PreparedChunk:
    """A chunk's token ids, its rows with empty text, and the seconds preparing took."""

    encoded: Encoded
    empty_rows: int
    busy_s: float


@dataclass(frozen=True)
class Preparer:
    """From a record batch to its token ids, as the model was trained: `text_columns` joined
    by `separator`, cleaned when `clean`, tokenized by `encoder`."""

    text_columns: tuple[str, ...]
    clean: bool
    separator: str
    encoder: TextEncoder

    def __call__(self, batch: Any) -> PreparedChunk:
        import pyarrow.compute as pc

        started = time.perf_counter()
        texts = model_texts(batch, self.text_columns, clean=self.clean, separator=self.separator)
        empty = int(pc.sum(pc.equal(texts, "")).as_py() or 0)
        encoded = self.encoder.encode(texts.to_pylist())
        return PreparedChunk(encoded, empty, time.perf_counter() - started)


def pool_plan(
    device: str, inference_threads: int, clean: bool, workers: int | None, kind: str = "auto"
) -> tuple[str, int]:
    """(kind, workers) of the preparing pool. `workers` None: on CUDA every core but two
    (the GPU needs one to feed it, the writer one); on the CPU one thread where inference
    leaves a core free, else none (inference uses every core; a pool would only compete with
    it). `kind` auto: processes where the work holds the GIL (cleaning) and there are several
    workers, threads otherwise."""
    if workers is None and device == "cuda":
        workers = max(1, cpu_cores() - 2)
    elif workers is None:
        workers = 1 if inference_threads < cpu_cores() else 0
    if workers == 0:
        return "in turn", 1
    if kind == "auto":
        kind = "processes" if clean and workers > 1 else "threads"
    return kind, workers


class PreparePool:
    """Runs a `Preparer` over a stream of record batches (`run`), in order. Use as a context
    manager: leaving it stops the reader thread and the workers (a Ctrl-C in the middle of a
    run stops them within seconds)."""

    def __init__(self, preparer: Preparer, kind: str, workers: int) -> None:
        self.preparer, self.kind, self.workers = preparer, kind, workers
        self.read_s = 0.0
        self.prepare_s = 0.0
        self._executor: Executor | None = None
        self._known: dict[int, Any] = {}

    def __enter__(self) -> PreparePool:
        if self.kind == "threads":
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="newsclf-prepare")
        elif self.kind == "processes":
            import multiprocessing

            self._executor = ProcessPoolExecutor(
                self.workers,
                # Not fork: this process holds threads (ONNX Runtime's, the reader's).
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.preparer, os.getpid()),
            )
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        self._known.update(getattr(executor, "_processes", None) or {})
        if exc_type is None:
            executor.shutdown(wait=True)  # every chunk was taken: the workers just leave
            return
        # Stopped early (an error, Ctrl-C): the workers go at once, then the pool's manager
        # thread, which waits for them, ends too.
        for process in self._known.values():
            process.kill()
        executor.shutdown(wait=True, cancel_futures=True)

    def run(self, batches: Iterator[Any]) -> Iterator[tuple[Any, PreparedChunk]]:
        """(batch, its prepared chunk) for each batch of `batches`, in their order."""
        if self._executor is None:
            return self._in_turn(batches)
        return self._pooled(batches, self._executor)

    def _in_turn(self, batches: Iterator[Any]) -> Iterator[tuple[Any, PreparedChunk]]:
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            self.read_s += time.perf_counter() - started
            if batch is None:
                return
            prepared = self.preparer(batch)
            self.prepare_s += prepared.busy_s
            yield batch, prepared

    def _pooled(
        self, batches: Iterator[Any], executor: Executor
    ) -> Iterator[tuple[Any, PreparedChunk]]:
        window: queue.Queue[Any] = queue.Queue(maxsize=2 * self.workers)
        stop = threading.Event()
        columns = list(self.preparer.text_columns)
        in_process = isinstance(executor, ProcessPoolExecutor)

        def read() -> None:
            try:
                while not stop.is_set():
                    started = time.perf_counter()
                    batch = next(batches, None)
                    self.read_s += time.perf_counter() - started
                    if batch is None:
                        break
                    # Processes get only the text columns (the rest stays here for writing).
                    future = (
                        executor.submit(_prepare_in_worker, batch.select(columns))
                        if in_process
                        else executor.submit(self.preparer, batch)
                    )
                    _put(window, (batch, future), stop)
                _put(window, _END, stop)
            except BaseException as exc:  # handed to the consumer, which raises it
                _put(window, _Failed(exc), stop)

        reader = threading.Thread(target=read, name="newsclf-read", daemon=True)
        reader.start()
        try:
            while True:
                item = window.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                batch, future = item
                prepared = self._result(future)
                self.prepare_s += prepared.busy_s
                yield batch, prepared
        finally:
            stop.set()
            while not window.empty():
                item = window.get_nowait()
                if isinstance(item, tuple):
                    item[1].cancel()
            reader.join(5)

    def _result(self, future: Future[PreparedChunk]) -> PreparedChunk:
        self._known.update(getattr(self._executor, "_processes", None) or {})
        try:
            return future.result()
        except BrokenProcessPool:
            raise self._death() from None

    def _death(self) -> BaseException:
        """What ended a worker: an interrupt (SIGINT or SIGTERM to the process group, whose
        signal reached the worker first), or a death to name (a SIGKILL is most often the
        out-of-memory killer)."""
        time.sleep(0.2)  # the pool's manager thread reaps the dead worker
        codes = {pid: p.exitcode for pid, p in self._known.items() if p.exitcode is not None}
        if codes and all(-code in (signal.SIGINT, signal.SIGTERM) for code in codes.values()):
            return KeyboardInterrupt()
        dead = [
            f"pid {pid}, "
            + (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
            for pid, code in codes.items()
            if -code != signal.SIGTERM  # those the pool stopped after the death
        ]
        return NewsclfError(
            f"A preparing worker process died ({'; '.join(dead) or 'no exit status'}); it may "
            "have run out of memory. Nothing was written. Try fewer --prepare-workers or a "
            "smaller --chunk-rows."
        )


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _put(window: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put `item`, unless the consumer has stopped."""
    while not stop.is_set():
        try:
            window.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


# -- in a worker process ---------------------------------------------------------------------

_PREPARER: Preparer | None = None


def _start_worker(preparer: Preparer, parent: int) -> None:
    global _PREPARER
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One tokenizer thread per worker: the pool is the parallelism.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _PREPARER = preparer
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when the parent is gone (killed with -9, say): never an orphan."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _prepare_in_worker(batch: Any) -> PreparedChunk:
    assert _PREPARER is not None
    return _PREPARER(batch)
