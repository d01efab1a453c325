"""`Classifier`: an export folder ready to classify texts, the engine behind `newsclf classify`.

Texts are cleaned as the model was trained, tokenized once without padding, sorted by length so
that each batch pads to a similar length (padding waste is the largest avoidable cost), cut
into batches bounded by rows and by padded tokens, run, and put back in their original order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.artifacts import VARIANTS, AutoChoice, DamagedVariant, ExportFolder, choose_auto
from newsclf.environment import cpu_cores
from newsclf.errors import ModelError, ProviderError
from newsclf.inference.config import ClassifierConfig
from newsclf.inference.prepare import Encoded, Preparer, TextEncoder
from newsclf.inference.sessions import CUDA, open_session, run_logits
from newsclf.io import model_texts

# --variant auto takes the fastest variant for the device that the folder holds among those whose
# labels do not depend on the batch, and the runtime of which is installed: the registry's
# `auto_rank` and `batch_invariant` (newsclf.artifacts.VARIANTS, `choose_auto`). Dynamic int8
# scales each batch by its own range, so a row's label can change with its neighbours: it runs
# only when asked for. The OpenVINO variants pad each row to its length rounded up to the
# registry's `padding_bucket` (OpenVINO's result for a row depends on its padded width), and
# batches hold one width only: the same row gets the same numbers whatever shares its batch.
# ONNX Runtime's CPU kernels give a row the same numbers at any width, so its variants pad to
# the batch.


@dataclass
class BatchStats:
    padded_tokens: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ClassifierInfo:
    """What a classifier really runs: the figures a report must name."""

    model: str
    variant: str
    file: str
    device: str
    provider: str
    batch_size: int
    max_batch_tokens: int | None
    threads: int
    fallback_reason: str | None
    # What the logits are divided by before the softmax (1.0: raw softmax).
    temperature: float = 1.0
    # What tokenizes ("nanotoken 0.1.0" or "tokenizers 0.23.3"), and why not nanotoken.
    tokenizer: str = ""
    tokenizer_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Predictions:
    """Predicted class names, their probabilities, and every class's probability."""

    labels: list[str]
    confidences: np.ndarray
    probabilities: np.ndarray
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def padded_widths(lengths: np.ndarray, bucket: int | None, cap: int) -> np.ndarray:
    """The width each row is padded to: its length, or with `bucket` its length rounded up to
    a multiple of `bucket` (at most `cap`, the model's max length)."""
    if bucket is None:
        return lengths
    return np.minimum(-(-lengths // bucket) * bucket, max(cap, 1))


def token_budget_batches(
    lengths: np.ndarray, max_rows: int, max_tokens: int | None = None, *, fixed: bool = False
) -> list[np.ndarray]:
    """Row indices per batch: rows sorted by length (their padded width), each batch at most
    `max_rows` rows and, when `max_tokens` is set, at most that many padded tokens (rows x
    widest row). A row wider than the budget alone still gets a batch of its own. With `fixed`,
    a batch holds rows of one width only, so no row is padded beyond its own width."""
    order = np.argsort(lengths, kind="stable")
    ordered = np.asarray(lengths)[order]
    batches: list[np.ndarray] = []
    start, total = 0, len(order)
    while start < total:
        end = min(start + max_rows, total)
        if fixed:
            end = min(end, int(np.searchsorted(ordered, ordered[start], side="right")))
        if max_tokens is not None and end - start > 1:
            # Sorted ascending, so rows x widest grows with each row added: cut at the first
            # row that would take the batch over the budget (never the first row).
            padded = np.arange(1, end - start + 1) * ordered[start:end]
            over = np.flatnonzero(padded[1:] > max_tokens)
            if len(over):
                end = start + 1 + int(over[0])
        batches.append(order[start:end])
        start = end
    return batches


class Classifier:
    """Classifies texts with one variant of an export folder on one execution provider.

    Example:
        >>> clf = Classifier("models/my-run/onnx", ClassifierConfig(device="cpu"))
        >>> clf.predict(["Stocks rally as rates fall"]).labels
        ['Business']

    Args:
        export: an export folder written by `newsclf export --onnx` (path or `ExportFolder`).
        config: device (`auto`: CUDA when it really works, else the CPU, saying why), variant
            (`auto`: the fastest the folder holds for the device), batching, threads, and
            whether to apply the export's calibration temperature; None for the defaults.

    Probabilities are softmax(logits / T), T the temperature the export fitted on the run's
    validation rows (`ExportFolder.temperature`; 1 for an uncalibrated export or with
    `calibrate=False`). Dividing by T never changes a row's label.

    Raises:
        ModelError: the folder is not a complete export, or lacks the variant.
        ProviderError: `device="cuda"` and CUDA does not work here.
    """

    def __init__(
        self, export: str | Path | ExportFolder, config: ClassifierConfig | None = None
    ) -> None:
        self.config = config = config or ClassifierConfig()
        self.folder = export if isinstance(export, ExportFolder) else ExportFolder.load(export)
        self.label_names = self.folder.label_names
        self.preprocessing = self.folder.preprocessing
        self.threads = config.threads or cpu_cores()
        self.temperature = self.folder.temperature if config.calibrate else 1.0
        asked = VARIANTS[config.variant] if config.variant != "auto" else None
        if asked is not None and config.device != "auto" and not asked.runs_on(config.device):
            where = " or ".join("the CPU" if d == "cpu" else "CUDA" for d in asked.devices)
            raise ProviderError(
                f"The {asked.name} variant runs on {where} only; use --device "
                f"{asked.devices[0]} or auto."
            )
        # A variant that never runs on CUDA (OpenVINO's) stays on the CPU, even with auto.
        device = "cpu" if asked is not None and not asked.runs_on("cuda") else config.device
        opened = open_session(
            lambda on: self.folder.verify(self._pick_variant(on)),
            device,
            config.threads,
            openvino_on_cpu=VARIANTS[self._pick_variant("cpu")].runtime == "openvino",
        )
        self.session = opened.session
        self.device = opened.device
        self.provider = opened.provider
        self.variant = self._pick_variant(opened.device)
        # What auto weighed on the device used (None when a variant was asked for by name).
        self.auto_choice: AutoChoice | None = (
            choose_auto(self.device, self.folder.variants) if asked is None else None
        )
        # The export's other variants whose files are missing or modified: not used, but worth
        # a warning (the one in use was verified above, or this would have failed).
        self.damaged_variants: list[DamagedVariant] = [
            d for d in self.folder.damaged_variants() if d.variant != self.variant
        ]
        self.padding_bucket = VARIANTS[self.variant].padding_bucket
        self.fallback_reason = opened.fallback_reason
        self.batch_size, self.max_batch_tokens = config.batching_for(self.device)
        self.input_names = [i.name for i in self.session.get_inputs()]
        tokenizer = self.folder.load_tokenizer()
        self.encoder = TextEncoder(
            tokenizer.backend_tokenizer.to_str(), self.preprocessing.max_length
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # On CUDA, logits stay on the device until the batch is done (I/O binding).
        self._io_binding = self.provider == CUDA

    def _pick_variant(self, device: str) -> str:
        if self.config.variant != "auto":
            return self.config.variant
        choice = choose_auto(device, self.folder.variants)
        if choice.variant is None:
            raise ModelError(
                f"{self.folder.path} holds no variant --variant auto can run on {device}: "
                + "; ".join(f"{c.variant}: {c.reason}" for c in choice.candidates)
            )
        return choice.variant

    # -- the public API ------------------------------------------------------------------

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Predicted class and its probability for each text (cleaned as the model was trained).

        Args:
            texts: raw texts, as they would appear in the text column of a file.

        Returns:
            `Predictions` in the order of `texts`.
        """
        probabilities = self.predict_proba(texts)
        predicted = probabilities.argmax(axis=1) if len(texts) else np.empty(0, dtype=np.int64)
        return Predictions(
            labels=[self.label_names[i] for i in predicted],
            confidences=probabilities[np.arange(len(predicted)), predicted],
            probabilities=probabilities,
            label_names=list(self.label_names),
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), classes), columns in `label_names` order.

        Args:
            texts: raw texts; cleaned as the model was trained before tokenizing.
        """
        return self.probabilities(self.encode(self.prepare(texts)))

    def info(self) -> ClassifierInfo:
        return ClassifierInfo(
            model=str(self.folder.path),
            variant=self.variant,
            file=self.model_path.name,
            device=self.device,
            provider=self.provider,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            threads=self.threads,
            fallback_reason=self.fallback_reason,
            temperature=self.temperature,
            tokenizer=self.encoder.name,
            tokenizer_note=self.encoder.fallback_reason,
        )

    # -- the steps, shared with classify_file --------------------------------------------

    @property
    def model_path(self) -> Path:
        return self.folder.variants[self.variant]

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Raw texts as the model saw them in training (cleaned or not)."""
        import pyarrow as pa

        batch = pa.RecordBatch.from_arrays([pa.array(list(texts), pa.string())], names=["text"])
        pre = self.preprocessing
        prepared = model_texts(batch, ["text"], clean=pre.clean, separator=pre.text_separator)
        return prepared.to_pylist()

    def encode(self, texts: Sequence[str]) -> Encoded:
        return self.encoder.encode(texts)

    def preparer(self, text_columns: Sequence[str]) -> Preparer:
        """What turns a record batch's `text_columns` into token ids for this model."""
        pre = self.preprocessing
        return Preparer(tuple(text_columns), pre.clean, pre.text_separator, self.encoder)

    def widths(self, lengths: np.ndarray) -> np.ndarray:
        """The width each row is padded to (the variant's `padding_bucket`)."""
        return padded_widths(lengths, self.padding_bucket, self.preprocessing.max_length)

    def batches(self, encoded: Encoded) -> list[np.ndarray]:
        """Row indices per batch, rows of similar length together."""
        return token_budget_batches(
            self.widths(encoded.lengths),
            self.batch_size,
            self.max_batch_tokens,
            fixed=self.padding_bucket is not None,
        )

    def feeds(self, encoded: Encoded, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The padded inputs of `rows`, gathered from the flat ids in one step."""
        lengths = encoded.lengths[rows]
        width = int(self.widths(lengths).max())
        columns = np.arange(width)
        present = columns[None, :] < lengths[:, None]
        flat = encoded.ids if len(encoded.ids) else np.zeros(1, dtype=np.int32)
        positions = np.minimum(encoded.starts[rows][:, None] + columns[None, :], len(flat) - 1)
        input_ids = np.where(present, flat[positions], self.pad_id).astype(np.int64)
        attention_mask = present.astype(np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return feeds

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._io_binding:
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output("logits", "cuda")
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0].astype(np.float32, copy=False)
        return run_logits(self.session, feeds)

    def probabilities(self, encoded: Encoded, stats: BatchStats | None = None) -> np.ndarray:
        """Class probabilities for encoded texts, in their order; `stats` collects padding and
        per-batch latency."""
        probabilities = np.empty((len(encoded), len(self.label_names)), dtype=np.float32)
        batches = self.batches(encoded)
        run_many = getattr(self.session, "run_many", None)
        if run_many is not None and len(batches) > 1:
            # OpenVINO: every batch of the chunk in flight at once, one per stream.
            all_feeds = [self.feeds(encoded, rows) for rows in batches]
            outputs = run_many("logits", all_feeds)
            for rows, feeds, (logits, seconds) in zip(batches, all_feeds, outputs, strict=True):
                probabilities[rows] = self.softmax(logits.astype(np.float32, copy=False))
                if stats is not None:
                    stats.padded_tokens += feeds["input_ids"].size
                    stats.latencies_ms.append(1000 * seconds)
            return probabilities
        for rows in batches:
            started = time.perf_counter()
            feeds = self.feeds(encoded, rows)
            probabilities[rows] = self.softmax(self.logits(feeds))
            if stats is not None:
                stats.padded_tokens += feeds["input_ids"].size
                stats.latencies_ms.append(1000 * (time.perf_counter() - started))
        return probabilities

    def softmax(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities of logits, with the calibration temperature applied."""
        return calibrated_softmax(logits, self.temperature)


def calibrated_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature), in the logits' precision; T = 1 is the plain softmax.
    A positive temperature keeps every row's largest class: labels never change."""
    if temperature != 1.0:
        logits = logits / np.asarray(temperature, dtype=logits.dtype)
    return softmax(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
