"""Every default of newsclf, once, in dataclasses that validate themselves.

`PreprocessingConfig` travels with a model (saved beside its weights, reused by export and
classify); `TrainingConfig` is the fine-tuning recipe; `ExportConfig` the export and its parity
rules; `ClassifierConfig` how an export runs; `ClassifyConfig` how a file is read and written.
The CLI takes its defaults and its choices (the `Literal` types below) from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

from newsclf.errors import InputError, ModelError

# Name of the file that carries the preprocessing settings inside a model or export folder.
PREPROCESSING_FILE = "newsclf_preprocessing.json"

DEFAULT_MODEL = "bert-base-uncased"
DEFAULT_DATASET = "fancyzhx/ag_news"
EMBEDDED_MODEL = "embedded"

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Metric = Literal["accuracy", "f1_macro", "f1_weighted"]
Device = Literal["auto", "cuda", "cpu"]
Variant = Literal["auto", "fp32", "optimized", "fp16", "int8", "openvino"]
OnError = Literal["raise", "skip"]
Quantize = Literal["int8"]
TableFormat = Literal["csv", "tsv", "jsonl", "parquet"]
Sampler = Literal["tpe", "random", "grid"]
Engine = Literal["local", "ray"]

# Validation rows a training run keeps (parity_sample.jsonl) and export checks parity on.
PARITY_ROWS = 256

C = TypeVar("C")


def check_choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")


def check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise InputError(f"{name} must be positive, not {value}.")


def _from_dict(cls: type[C], raw: dict[str, Any], where: str) -> C:
    """A dataclass from JSON-like data; unknown keys are an error (a typo would otherwise
    silently fall back to a default)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{where}: unknown setting(s) {', '.join(unknown)}.")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from exc


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


@dataclass
class PreprocessingConfig:
    """How raw rows become model inputs; saved with the model so nobody re-types it."""

    clean: bool = True
    max_length: int = 128
    # Columns joined (with `text_separator`) into the model's text; empty means auto-detect.
    text_columns: list[str] = field(default_factory=list)
    text_separator: str = " "
    label_column: str = "label"

    def __post_init__(self) -> None:
        check_positive("max_length", self.max_length)
        self.text_columns = list(self.text_columns)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: Path) -> Path:
        from newsclf.atomic import write_json_atomic

        return write_json_atomic(Path(directory) / PREPROCESSING_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: Path) -> PreprocessingConfig:
        path = Path(directory) / PREPROCESSING_FILE
        if not path.is_file():
            raise ModelError(
                f"{directory} has no {PREPROCESSING_FILE}: it was not written by newsclf "
                "(train or export), so its text cleaning and tokenization settings are unknown."
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from exc
        try:
            return _from_dict(cls, raw, str(path))
        except InputError as exc:
            raise ModelError(str(exc)) from None


@dataclass
class TrainingConfig:
    """The fine-tuning recipe. Defaults are the design's recipe for bert-base-uncased."""

    model: str = DEFAULT_MODEL
    dataset: str | None = DEFAULT_DATASET
    train_file: Path | None = None
    validation_file: Path | None = None
    test_file: Path | None = None
    output_dir: Path | None = None
    learning_rate: float = 2e-5
    batch_size: int = 64
    eval_batch_size: int = 32
    epochs: float = 4.0
    weight_decay: float = 0.01
    grad_accum: int = 2
    warmup_ratio: float = 0.06
    patience: int = 2
    # Evaluate (and checkpoint) every N optimizer steps; 0 means once per epoch.
    eval_steps: int = 0
    metric: Metric = "f1_macro"
    # Share of train carved out as validation when there is no validation split; 0 trains on
    # every row (no early stopping; the last weights are kept), e.g. to refit a chosen recipe.
    validation_fraction: float = 0.05
    # Data split, the classifier head's initial weights and, unless train_seed says
    # otherwise, data order and dropout.
    seed: int = 42
    # Data order and dropout only: runs that differ in it alone share the validation split and
    # the initial weights, so their weights can be averaged (`newsclf soup`).
    train_seed: int | None = None
    max_train_samples: int | None = None
    # "auto": bf16 where the hardware runs it natively (CUDA bf16, or a CPU with AVX512-BF16/AMX),
    # fp16 on older CUDA GPUs, fp32 otherwise.
    precision: Precision = "auto"
    group_by_length: bool = True
    # Layer-wise learning-rate decay: the head trains at learning_rate, each layer below it at
    # this factor times the rate of the layer above (1.0: one rate for every layer).
    layer_decay: float = 1.0
    # Average the weights of the last N evaluations (0: off); the average replaces the best
    # checkpoint only if it scores at least as well on validation.
    average_last: int = 0
    # R-Drop: weight of the consistency term between two dropout passes (0: off; each
    # training step then costs about twice as much).
    rdrop: float = 0.0
    # Within-task pre-training: epochs of masked-LM training on the training split's texts
    # before fine-tuning, at the same learning rate and batch size (0: off).
    mlm_epochs: float = 0.0
    resume: bool = False
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)

    def __post_init__(self) -> None:
        for name in ("train_file", "validation_file", "test_file", "output_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        if isinstance(self.preprocessing, dict):
            self.preprocessing = _from_dict(
                PreprocessingConfig, self.preprocessing, "preprocessing"
            )
        for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum"):
            check_positive(f"--{name.replace('_', '-')}", getattr(self, name))
        check_positive("--max-train-samples", self.max_train_samples, allow_none=True)
        if self.learning_rate < 0:
            raise InputError(f"--learning-rate must not be negative, not {self.learning_rate}.")
        if self.weight_decay < 0:
            raise InputError(f"--weight-decay must not be negative, not {self.weight_decay}.")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}.")
        if self.patience < 1:
            raise InputError(f"--patience must be at least 1, not {self.patience}.")
        if self.eval_steps < 0:
            raise InputError(
                f"--eval-steps must be 0 (every epoch) or more, not {self.eval_steps}."
            )
        if not 0 <= self.validation_fraction < 1:
            raise InputError(
                f"--validation-fraction must be in [0, 1), not {self.validation_fraction}."
            )
        # Every row trains: nothing to stop early on, choose a checkpoint or average by.
        if self.validation_fraction == 0 and self.validation_file is None and self.average_last:
            raise InputError(
                "--average-last chooses by the validation split, and --validation-fraction 0 "
                "has none."
            )
        if not 0 < self.layer_decay <= 1:
            raise InputError(f"--layer-decay must be in (0, 1], not {self.layer_decay}.")
        if self.rdrop < 0:
            raise InputError(f"--rdrop must not be negative, not {self.rdrop}.")
        if self.mlm_epochs < 0:
            raise InputError(f"--mlm-epochs must not be negative, not {self.mlm_epochs}.")
        if self.average_last < 0 or self.average_last == 1:
            raise InputError(
                f"--average-last must be 0 (off) or at least 2 evaluations, not "
                f"{self.average_last}."
            )
        check_choice("--metric", self.metric, Metric)
        check_choice("--precision", self.precision, Precision)

    @property
    def data_order_seed(self) -> int:
        """The seed of the Trainer: data order and dropout."""
        return self.seed if self.train_seed is None else self.train_seed

    def to_dict(self) -> dict[str, Any]:
        data = _jsonable(asdict(self))
        data["preprocessing"] = self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "training config") -> TrainingConfig:
        return _from_dict(cls, dict(raw), where)

    def save(self, path: Path) -> Path:
        from newsclf.atomic import write_json_atomic

        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TrainingConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"Cannot read the training config {path}: {exc}") from exc
        return cls.from_dict(raw, str(path))

    def replace(self, **changes: Any) -> TrainingConfig:
        return replace(self, **changes)


@dataclass
class ExportConfig:
    """`newsclf export --onnx`: which variants, and the parity rules they must pass."""

    optimize: bool = False
    fp16: bool = False
    quantize: Quantize | None = None
    # The fp32 graph on OpenVINO (bf16 on CPUs that have it), checked like fp16 and int8.
    openvino: bool = False
    opset: int = 18
    # Texts for the parity check; None: the run's validation sample (parity_sample.jsonl).
    parity_file: Path | None = None
    # Where parity runs: auto checks fp16 on CUDA when CUDA works, everything else on the CPU.
    device: Device = "auto"
    # fp32 export must match PyTorch this closely (max |logit difference|) with identical labels.
    fp32_tolerance: float = 1e-4
    # Reduced-precision variants (fp16, int8) must agree with PyTorch on this share of labels.
    min_label_agreement: float = 0.99
    parity_rows: int = PARITY_ROWS
    parity_batch_sizes: tuple[int, ...] = (1, 17)

    def __post_init__(self) -> None:
        if self.quantize is not None:
            check_choice("--quantize", self.quantize, Quantize)
        check_choice("--device", self.device, Device)
        check_positive("--opset", self.opset)
        check_positive("--tolerance", self.fp32_tolerance)
        check_positive("parity_rows", self.parity_rows)
        if not 0 < self.min_label_agreement <= 1:
            raise InputError(
                f"min_label_agreement must be in (0, 1], not {self.min_label_agreement}."
            )
        if self.parity_file is not None:
            self.parity_file = Path(self.parity_file)
        self.parity_batch_sizes = tuple(self.parity_batch_sizes)
        if not any(b > 1 for b in self.parity_batch_sizes):
            raise InputError("parity_batch_sizes needs one batch size above 1.")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class ClassifierConfig:
    """How an export runs: device, variant, batching, threads."""

    device: Device = "auto"
    variant: Variant = "auto"
    # Rows per batch (rows are sorted by length first, so batches pad little); None: the
    # device's default below.
    batch_size: int | None = None
    # Cap on padded tokens (rows x longest row) per batch; None: the device's default below.
    max_batch_tokens: int | None = None
    # CPU threads for inference; None: one per core.
    threads: int | None = None

    # Defaults per device. On the CPU, 32 rows (larger batches were slower: cache); on CUDA,
    # large batches bounded by tokens so that long and short rows cost the GPU alike.
    CPU_BATCH: ClassVar[tuple[int, int | None]] = (32, None)
    CUDA_BATCH: ClassVar[tuple[int, int | None]] = (1024, 65536)

    def __post_init__(self) -> None:
        check_choice("--device", self.device, Device)
        check_choice("--variant", self.variant, Variant)
        check_positive("--batch-size", self.batch_size, allow_none=True)
        check_positive("--max-batch-tokens", self.max_batch_tokens, allow_none=True)
        check_positive("--threads", self.threads, allow_none=True)

    def batching_for(self, device: str) -> tuple[int, int | None]:
        """(rows, padded tokens) per batch on `device` ('cpu' or 'cuda')."""
        rows, tokens = self.CUDA_BATCH if device == "cuda" else self.CPU_BATCH
        if self.batch_size is not None:
            rows = self.batch_size
            # An explicit row count alone means exactly that many rows.
            tokens = self.max_batch_tokens
        elif self.max_batch_tokens is not None:
            tokens = self.max_batch_tokens
        return rows, tokens


@dataclass
class ClassifyConfig:
    """How `newsclf classify` reads a file and writes its predictions."""

    format: TableFormat | None = None
    # Text columns; empty: as the model was trained, else auto-detected.
    text_columns: list[str] = field(default_factory=list)
    label_column: str = "label"
    probabilities: bool = False
    on_error: OnError = "raise"
    # Rows read, tokenized, sorted by length and written as one unit; bounds memory.
    chunk_rows: int = 4096

    def __post_init__(self) -> None:
        if self.format is not None:
            check_choice("--format", self.format, TableFormat)
        check_choice("--on-error", self.on_error, OnError)
        check_positive("--chunk-rows", self.chunk_rows)
        self.text_columns = list(self.text_columns)


@dataclass
class RayConfig:
    """`newsclf classify --engine ray`: which Ray cluster, how many workers, how each runs."""

    # Actors, each holding one Classifier; None: as many as the cluster's CPUs allow at
    # `threads_per_worker` each (with --device cuda, one per GPU).
    workers: int | None = None
    # ONNX Runtime threads per actor, also the CPUs each actor asks Ray for.
    threads_per_worker: int = 1
    # None: start a local cluster for this run; "auto" or an address joins a running one.
    address: str | None = None
    # Rows per Ray batch (one actor call, sorted by length inside): small enough to spread the
    # work over the actors, large enough to pad little.
    batch_rows: int = 1024

    def __post_init__(self) -> None:
        check_positive("--workers", self.workers, allow_none=True)
        check_positive("--threads-per-worker", self.threads_per_worker)
        check_positive("batch_rows", self.batch_rows)
        if self.address is not None and not str(self.address).strip():
            self.address = None
