"""Proof that an ONNX export computes what its PyTorch model computes.

The same texts go through PyTorch and ONNX Runtime at several shapes (one row at a time, an odd
batch size, very short texts, texts truncated at max length); outputs are compared by name with
an explicit tolerance. Each variant is held to its registry entry's parity rule: `strict` (fp32,
optimized) must match to `fp32_tolerance` with identical labels at every shape; `labels` (fp16,
int8, the OpenVINO ones) must agree with PyTorch on at least `min_label_agreement` of the parity
texts as given (the two-word fragments of the "short" shape are often true ties between classes,
so their agreement is reported, not required).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from newsclf.artifacts import (
    VARIANTS,
    PreprocessingConfig,
    RunFolder,
    read_calibration_sample,
    read_parity_sample,
)
from newsclf.errors import InputError, ParityError
from newsclf.export.config import ExportConfig
from newsclf.inference import open_session, run_logits
from newsclf.io import choose_text_columns, read_table, texts_from_rows

OUTPUT_NAME = "logits"


@dataclass
class ParityCase:
    """One shape of inputs: texts and the batch size they are run at."""

    name: str
    texts: list[str]
    batch_size: int
    # True for the one case that holds every parity text once, as given: the label agreement
    # a reduced-precision variant must reach is counted there (the others repeat a few texts
    # at batch 1, or hold fragments and truncations of them).
    as_given: bool = False


@dataclass
class VariantParity:
    variant: str
    file: str
    size_bytes: int
    provider: str
    rows: int
    max_abs_diff: float
    # Share of the parity texts (as given) whose predicted label equals PyTorch's; the
    # per-shape figures, fragments included, are in `cases`.
    label_agreement: float
    accuracy_torch: float | None
    accuracy_onnx: float | None
    ms_per_batch: float
    batch_size: int
    tolerance: float | None
    passed: bool
    failure: str | None = None
    # Per shape of inputs: rows, max |Δ logits| and label agreement.
    cases: dict[str, dict[str, float]] = field(default_factory=dict)
    # Why a variant meant for CUDA was checked on the CPU (device auto).
    fallback_reason: str | None = None
    # The converter's recipe that passed, where it has several (int8).
    recipe: str | None = None

    @property
    def accuracy_delta(self) -> float | None:
        if self.accuracy_torch is None or self.accuracy_onnx is None:
            return None
        return self.accuracy_onnx - self.accuracy_torch

    @property
    def label_agreement_all_shapes(self) -> float:
        rows = sum(c["rows"] for c in self.cases.values())
        agreeing = sum(c["label_agreement"] * c["rows"] for c in self.cases.values())
        return agreeing / rows if rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "accuracy_delta": self.accuracy_delta,
            "label_agreement_all_shapes": self.label_agreement_all_shapes,
        }


def parity_cases(texts: Sequence[str], max_length: int, odd_batch: int = 17) -> list[ParityCase]:
    texts = list(texts)
    short = [" ".join(t.split()[:2]) for t in texts]
    # Repeating a text until it is far past max_length forces truncation at exactly max_length.
    long = [" ".join([t] * (max_length // max(len(t.split()), 1) + 2)) for t in texts]
    return [
        ParityCase("batch 1", texts[:16], 1),
        ParityCase(f"batch {odd_batch}", texts, odd_batch, as_given=True),
        ParityCase(f"short, batch {odd_batch}", short, odd_batch),
        ParityCase(f"max length, batch {odd_batch}", long[:64], odd_batch),
    ]


def encode(
    tokenizer: Any, texts: Sequence[str], input_names: Sequence[str], max_length: int
) -> dict[str, np.ndarray]:
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="np"
    )
    return {name: encoded[name].astype(np.int64) for name in input_names}


def torch_logits(model: torch.nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        output = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return output.logits.float().numpy()


@dataclass
class Reference:
    """PyTorch outputs for every batch of every case, computed once for all variants."""

    batches: list[tuple[ParityCase, dict[str, np.ndarray], np.ndarray]]
    labels: np.ndarray | None

    @classmethod
    def compute(
        cls,
        model: torch.nn.Module,
        tokenizer: Any,
        cases: Sequence[ParityCase],
        input_names: Sequence[str],
        max_length: int,
        labels: Sequence[int] | None,
    ) -> Reference:
        batches = []
        for case in cases:
            for start in range(0, len(case.texts), case.batch_size):
                feeds = encode(
                    tokenizer, case.texts[start : start + case.batch_size], input_names, max_length
                )
                batches.append((case, feeds, torch_logits(model, feeds)))
        return cls(batches, None if labels is None else np.asarray(labels))


def check_variant(
    variant: str,
    session: Any,
    file: Path,
    provider: str,
    reference: Reference,
    *,
    accuracy_case: str,
    labels: Sequence[int] | None,
    tolerance: float,
    min_label_agreement: float,
) -> VariantParity:
    """Compare one variant's `logits` with the PyTorch reference on every batch."""
    max_diff = 0.0
    agree = total = agree_given = total_given = 0
    predicted: dict[str, list[np.ndarray]] = {}
    expected: dict[str, list[np.ndarray]] = {}
    timings: list[float] = []
    timed_batch = 0
    per_case: dict[str, dict[str, float]] = {}
    for case, feeds, ref in reference.batches:
        case_name = case.name
        started = time.perf_counter()
        out = run_logits(session, feeds)
        elapsed = time.perf_counter() - started
        if case_name == accuracy_case:
            timings.append(elapsed)
            timed_batch = max(timed_batch, len(ref))
        if out.shape != ref.shape:
            raise ParityError(
                f"{variant}: output {OUTPUT_NAME} has shape {out.shape}, expected {ref.shape}; "
                "the graph does not compute this model's classes."
            )
        diff = float(np.max(np.abs(out - ref))) if np.all(np.isfinite(out)) else float("inf")
        same = int(np.sum(out.argmax(-1) == ref.argmax(-1)))
        max_diff = max(max_diff, diff)
        agree += same
        total += len(ref)
        if case.as_given:
            agree_given += same
            total_given += len(ref)
        case = per_case.setdefault(case_name, {"rows": 0, "max_abs_diff": 0.0, "agreeing": 0})
        case["rows"] += len(ref)
        case["agreeing"] += same
        case["max_abs_diff"] = max(case["max_abs_diff"], diff)
        predicted.setdefault(case_name, []).append(out.argmax(-1))
        expected.setdefault(case_name, []).append(ref.argmax(-1))

    accuracy_torch = accuracy_onnx = None
    if labels is not None and accuracy_case in predicted:
        y = np.asarray(labels)
        accuracy_torch = float(np.mean(np.concatenate(expected[accuracy_case]) == y))
        accuracy_onnx = float(np.mean(np.concatenate(predicted[accuracy_case]) == y))

    agreement = agree_given / total_given if total_given else 0.0
    strict = VARIANTS[variant].parity == "strict"
    failure = None
    if strict and not max_diff <= tolerance:
        failure = (
            f"max |Δ{OUTPUT_NAME}| {max_diff:.3g} exceeds the tolerance {tolerance:g} "
            f"(PyTorch vs ONNX Runtime on {provider})"
        )
    elif strict and agree != total:
        failure = f"{total - agree} of {total} predicted labels differ from PyTorch"
    elif not strict and agreement < min_label_agreement:
        failure = (
            f"label agreement {agreement:.2%} on the parity texts is under the required "
            f"{min_label_agreement:.0%} "
            f"(max |Δ{OUTPUT_NAME}| {max_diff:.3g})"
        )
    return VariantParity(
        variant=variant,
        file=file.name,
        size_bytes=file.stat().st_size,
        provider=provider,
        rows=total,
        max_abs_diff=max_diff,
        label_agreement=agreement,
        accuracy_torch=accuracy_torch,
        accuracy_onnx=accuracy_onnx,
        ms_per_batch=1000 * float(np.median(timings)) if timings else float("nan"),
        batch_size=timed_batch,
        tolerance=tolerance if strict else None,
        passed=failure is None,
        failure=failure,
        cases={
            name: {
                "rows": c["rows"],
                "max_abs_diff": c["max_abs_diff"],
                "label_agreement": c["agreeing"] / c["rows"],
            }
            for name, c in per_case.items()
        },
    )


def load_parity_texts(
    run_dir: Path | None, parity_file: Path | None, pre: PreprocessingConfig, limit: int
) -> tuple[list[str], list[int] | None, str]:
    """(texts, labels or None, where they came from) for the parity check: `parity_file`
    (texts only), else the run's validation sample (texts and labels).

    Raises:
        InputError: neither source has texts.
    """
    if parity_file is not None:
        return _texts_of_file(parity_file, pre, limit, "parity check"), None, str(parity_file)
    sample = RunFolder(run_dir).parity_sample if run_dir is not None else None
    if sample is None or not sample.is_file():
        raise InputError(
            "No texts for the parity check: the checkpoint has no run folder with "
            "parity_sample.jsonl; pass --parity-file with real texts."
        )
    texts, labels = read_parity_sample(sample.parent, limit)
    if not texts:
        raise InputError(f"{sample} holds no texts; pass --parity-file.")
    return texts, labels, f"{sample} (rows kept by the training run)"


def has_calibration_texts(run_dir: Path | None, calibration_file: Path | None) -> bool:
    """Whether there are training texts to calibrate static quantization on: a
    `calibration_file`, or the run's calibration sample."""
    if calibration_file is not None:
        return True
    return run_dir is not None and RunFolder(run_dir).calibration_sample.is_file()


def load_calibration_texts(
    run_dir: Path | None, calibration_file: Path | None, pre: PreprocessingConfig, limit: int
) -> tuple[list[str], str]:
    """(texts, where they came from) to calibrate static int8 on: `calibration_file`, else
    the run's calibration sample (training rows, never validation or test rows).

    Raises:
        InputError: neither source has texts.
    """
    if calibration_file is not None:
        return _texts_of_file(calibration_file, pre, limit, "calibration"), str(calibration_file)
    sample = RunFolder(run_dir).calibration_sample if run_dir is not None else None
    if sample is None or not sample.is_file():
        raise InputError(
            "No texts to calibrate openvino-int8 on: the run has no calibration_sample.jsonl "
            "(runs trained before newsclf 0.3); pass --calibration-file with training rows."
        )
    texts = read_calibration_sample(sample.parent)[:limit]
    if not texts:
        raise InputError(f"{sample} holds no texts; pass --calibration-file.")
    return texts, f"{sample} (training rows kept by the run)"


def _texts_of_file(path: Path, pre: PreprocessingConfig, limit: int, purpose: str) -> list[str]:
    columns, chunk = read_table(path)
    text_columns = choose_text_columns(columns, trained=pre.text_columns, where=str(path))
    texts = texts_from_rows(
        chunk.rows[:limit], text_columns, clean=pre.clean, separator=pre.text_separator
    )
    kept = [t for t in texts if t]
    if not kept:
        raise InputError(f"{path}: no non-empty texts for the {purpose}.")
    return kept


class ParityChecker:
    """PyTorch's outputs on the parity cases, computed once; `check` compares one variant.

    Where each variant is checked: on `settings.device` where the variant runs there (else
    on the CPU); with `auto`, on the device it is made for (fp16: CUDA) when that device works,
    else on the CPU.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        pre: PreprocessingConfig,
        input_names: list[str],
        texts: list[str],
        labels: list[int] | None,
        settings: ExportConfig,
    ) -> None:
        self.settings = settings
        self.labels = labels
        odd = max(b for b in settings.parity_batch_sizes if b > 1)
        self.cases = parity_cases(texts, pre.max_length, odd_batch=odd)
        self.reference = Reference.compute(
            model, tokenizer, self.cases, input_names, pre.max_length, labels
        )

    def device_for(self, variant: str) -> str:
        spec = VARIANTS[variant]
        if self.settings.device == "auto":
            return "auto" if spec.devices[0] == "cuda" else "cpu"
        return self.settings.device if spec.runs_on(self.settings.device) else "cpu"

    def check(self, variant: str, path: Path, recipe: str | None = None) -> VariantParity:
        """Compare the variant's file at `path` with PyTorch; `recipe` names the converter's
        recipe that made it (recorded)."""
        spec = VARIANTS[variant]
        # Strict variants are held to a 1e-4 tolerance: no TF32 on CUDA for them.
        opened = open_session(
            lambda _device: path,
            self.device_for(variant),
            exact_fp32=spec.parity == "strict",
            openvino_on_cpu=spec.runtime == "openvino",
        )
        result = check_variant(
            variant,
            opened.session,
            path,
            opened.provider,
            self.reference,
            accuracy_case=self.cases[1].name,
            labels=self.labels,
            tolerance=self.settings.fp32_tolerance,
            min_label_agreement=self.settings.min_label_agreement,
        )
        # A weights file beside the graph (OpenVINO IR's .bin) counts in the variant's size.
        weights = path.with_name(spec.data_file) if spec.data_file else None
        size = result.size_bytes + (weights.stat().st_size if weights else 0)
        return replace(
            result, size_bytes=size, fallback_reason=opened.fallback_reason, recipe=recipe
        )
