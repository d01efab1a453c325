"""An exported model ready to classify texts: tokenizer, one ONNX Runtime session, batching.

Texts are tokenized once without padding, sorted by length so that each batch pads to a
similar length (padding waste is the largest avoidable cost on a CPU), run, and put back in
their original order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from newsclf.environment import cpu_cores
from newsclf.errors import ModelError, ProviderError
from newsclf.runtime import AUTO_VARIANTS, CPU, CUDA, ExportFolder, create_session, run_logits


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


class OnnxClassifier:
    """Classifies texts with one variant of an export folder on one execution provider."""

    def __init__(
        self,
        folder: ExportFolder,
        *,
        device: str = "auto",
        variant: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ModelError(f"The batch size must be positive, not {batch_size}.")
        self.folder = folder
        self.batch_size = batch_size
        self.label_names = folder.label_names
        self.max_length = folder.preprocessing.max_length
        self.fallback_reason: str | None = None
        self.threads = threads or cpu_cores()
        self.session, self.device, self.variant = self._open(device, variant, threads)
        self.provider = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "logits" not in outputs:
            raise ModelError(f"{folder.path}: the ONNX graph has no 'logits' output.")
        width = outputs["logits"].shape[-1]
        if isinstance(width, int) and width != len(self.label_names):
            raise ModelError(
                f"{folder.path}: the graph outputs {width} classes but config.json names "
                f"{len(self.label_names)}; the folder mixes files of different models."
            )
        tokenizer = folder.load_tokenizer()
        # The Rust tokenizer directly: no padding (batches pad themselves), truncation at the
        # model's max length, special tokens as the model was trained with.
        self._tokenizer = tokenizer.backend_tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._io_binding = self.provider == CUDA

    def _open(self, device: str, variant: str, threads: int | None) -> tuple[Any, str, str]:
        if device not in ("auto", "cuda", "cpu"):
            raise ProviderError(f"--device must be auto, cuda or cpu, not {device!r}.")
        if device in ("auto", "cuda"):
            import onnxruntime as ort

            if CUDA in ort.get_available_providers() or device == "cuda":
                chosen = self._pick_variant(variant, "cuda")
                try:
                    return (
                        create_session(self.folder.verify(chosen), "cuda", threads),
                        "cuda",
                        chosen,
                    )
                except ProviderError as exc:
                    if device == "cuda":
                        raise
                    self.fallback_reason = f"--device auto chose the CPU: {exc}"
        chosen = self._pick_variant(variant, "cpu")
        return create_session(self.folder.verify(chosen), "cpu", threads), "cpu", chosen

    def _pick_variant(self, variant: str, device: str) -> str:
        if variant != "auto":
            return variant
        for candidate in AUTO_VARIANTS[device]:
            if candidate in self.folder.variants:
                return candidate
        raise ModelError(f"{self.folder.path} holds no ONNX variant usable on {device}.")

    @property
    def overlaps_well(self) -> bool:
        """Whether preparing the next chunk in another thread speeds things up: on a GPU, or
        when inference leaves CPU cores free. When it already uses every core, the extra thread
        only competes with it (332 rows/s with it, 349-359 without, on 2 cores)."""
        return self.device == "cuda" or self.threads < cpu_cores()

    @property
    def model_path(self) -> Path:
        return self.folder.variants[self.variant]

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        return Encoded(ids, np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids)))

    def batches(self, encoded: Encoded) -> list[np.ndarray]:
        """Row indices per batch, rows of similar length together."""
        order = np.argsort(encoded.lengths, kind="stable")
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

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
        for rows in self.batches(encoded):
            started = time.perf_counter()
            feeds = self.feeds(encoded, rows)
            probabilities[rows] = softmax(self.logits(feeds))
            if stats is not None:
                stats.padded_tokens += feeds["input_ids"].size
                stats.latencies_ms.append(1000 * (time.perf_counter() - started))
        return probabilities

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities for `texts` (already cleaned), in their order."""
        return self.probabilities(self.encode(texts))

    def describe(self) -> dict[str, Any]:
        return {
            "model": str(self.folder.path),
            "variant": self.variant,
            "file": self.model_path.name,
            "device": self.device,
            "provider": self.provider,
            "batch_size": self.batch_size,
            "fallback_reason": self.fallback_reason,
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


__all__ = ["CPU", "CUDA", "BatchStats", "Encoded", "OnnxClassifier", "softmax"]
