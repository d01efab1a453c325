"""`Classifier`: an export folder ready to classify texts, the engine behind `newsclf classify`.

Texts are cleaned as the model was trained, tokenized once without padding, sorted by length so
that each batch pads to a similar length (padding waste is the largest avoidable cost), cut
into batches bounded by rows and by padded tokens, run, and put back in their original order.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.artifacts import ExportFolder
from newsclf.environment import cpu_cores
from newsclf.errors import ModelError, ProviderError
from newsclf.inference.config import ClassifierConfig
from newsclf.inference.sessions import CUDA, open_session, run_logits
from newsclf.io import prepare_texts

# Preference when --variant auto: the fastest variant for each device that the folder holds
# (benchmarks/NOTES.md); openvino only where the openvino package is installed.
AUTO_VARIANTS = {
    "cuda": ("fp16", "optimized", "fp32"),
    "cpu": ("openvino", "int8", "optimized", "fp32"),
}


@dataclass
class BatchStats:
    padded_tokens: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class Encoded:
    """Token ids of texts, unpadded, and their lengths."""

    ids: list[list[int]]
    lengths: np.ndarray

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


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


def token_budget_batches(
    lengths: np.ndarray, max_rows: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Row indices per batch: rows sorted by length, each batch at most `max_rows` rows and,
    when `max_tokens` is set, at most that many padded tokens (rows x longest row). A row
    longer than the budget alone still gets a batch of its own."""
    order = np.argsort(lengths, kind="stable")
    if max_tokens is None:
        return [order[i : i + max_rows] for i in range(0, len(order), max_rows)]
    batches: list[np.ndarray] = []
    start = 0
    for i, row in enumerate(order):
        # Sorted ascending: the row being added is the longest of its batch.
        rows = i - start + 1
        if rows > max_rows or (rows > 1 and rows * int(lengths[row]) > max_tokens):
            batches.append(order[start:i])
            start = i
    if start < len(order):
        batches.append(order[start:])
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
            (`auto`: the fastest the folder holds for the device), batching and threads;
            None for the defaults.

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
        if config.variant == "openvino" and config.device == "cuda":
            raise ProviderError("The openvino variant runs on the CPU; use --device cpu or auto.")
        opened = open_session(
            lambda on: self.folder.verify(self._pick_variant(on)),
            config.device,
            config.threads,
            openvino_on_cpu=self._pick_variant("cpu") == "openvino",
        )
        self.session = opened.session
        self.device = opened.device
        self.provider = opened.provider
        self.variant = self._pick_variant(opened.device)
        self.fallback_reason = opened.fallback_reason
        self.batch_size, self.max_batch_tokens = config.batching_for(self.device)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._check_outputs()
        tokenizer = self.folder.load_tokenizer()
        # The Rust tokenizer directly: no padding (batches pad themselves), truncation at the
        # model's max length, special tokens as the model was trained with.
        self._tokenizer = tokenizer.backend_tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.preprocessing.max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # On CUDA, logits stay on the device until the batch is done (I/O binding).
        self._io_binding = self.provider == CUDA

    def _pick_variant(self, device: str) -> str:
        if self.config.variant != "auto":
            return self.config.variant
        for candidate in AUTO_VARIANTS[device]:
            if candidate == "openvino" and importlib.util.find_spec("openvino") is None:
                continue
            if candidate in self.folder.variants:
                return candidate
        raise ModelError(f"{self.folder.path} holds no ONNX variant usable on {device}.")

    def _check_outputs(self) -> None:
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "logits" not in outputs:
            raise ModelError(f"{self.folder.path}: the ONNX graph has no 'logits' output.")
        width = outputs["logits"].shape[-1]
        if isinstance(width, int) and width != len(self.label_names):
            raise ModelError(
                f"{self.folder.path}: the graph outputs {width} classes but config.json names "
                f"{len(self.label_names)}; the folder mixes files of different models."
            )

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
        )

    # -- the steps, shared with classify_file --------------------------------------------

    @property
    def model_path(self) -> Path:
        return self.folder.variants[self.variant]

    @property
    def overlaps_well(self) -> bool:
        """Whether preparing the next chunk in another thread speeds things up: on a GPU, or
        when inference leaves CPU cores free. When it already uses every core, the extra thread
        only competes with it (benchmarks/NOTES.md)."""
        return self.device == "cuda" or self.threads < cpu_cores()

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Raw texts as the model saw them in training (cleaned or not)."""
        pre = self.preprocessing
        return prepare_texts(([t] for t in texts), clean=pre.clean, separator=pre.text_separator)

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        return Encoded(ids, np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids)))

    def batches(self, encoded: Encoded) -> list[np.ndarray]:
        """Row indices per batch, rows of similar length together."""
        return token_budget_batches(encoded.lengths, self.batch_size, self.max_batch_tokens)

    def feeds(self, encoded: Encoded, rows: np.ndarray) -> dict[str, np.ndarray]:
        lengths = encoded.lengths[rows]
        width = int(lengths.max())
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : lengths[i]] = encoded.ids[row]
        attention_mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
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
        probabilities = np.empty((len(encoded.ids), len(self.label_names)), dtype=np.float32)
        batches = self.batches(encoded)
        run_many = getattr(self.session, "run_many", None)
        if run_many is not None and len(batches) > 1:
            # OpenVINO: every batch of the chunk in flight at once, one per stream.
            all_feeds = [self.feeds(encoded, rows) for rows in batches]
            outputs = run_many("logits", all_feeds)
            for rows, feeds, (logits, seconds) in zip(batches, all_feeds, outputs, strict=True):
                probabilities[rows] = softmax(logits.astype(np.float32, copy=False))
                if stats is not None:
                    stats.padded_tokens += feeds["input_ids"].size
                    stats.latencies_ms.append(1000 * seconds)
            return probabilities
        for rows in batches:
            started = time.perf_counter()
            feeds = self.feeds(encoded, rows)
            probabilities[rows] = softmax(self.logits(feeds))
            if stats is not None:
                stats.padded_tokens += feeds["input_ids"].size
                stats.latencies_ms.append(1000 * (time.perf_counter() - started))
        return probabilities


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
