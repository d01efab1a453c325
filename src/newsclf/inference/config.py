"""How an export runs (`ClassifierConfig`) and how a file is read and written
(`ClassifyConfig`): every classify option, its default and its help, once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from newsclf.artifacts import VARIANTS, check_variant_name
from newsclf.errors import InputError
from newsclf.io import TableFormat, parse_text_columns
from newsclf.options import check_choice, check_positive, check_range, option

Device = Literal["auto", "cuda", "cpu"]
# "auto" or a name of the variant registry (newsclf.artifacts.VARIANTS), which checks it.
Variant: TypeAlias = str
OnError = Literal["raise", "skip"]
PoolKind = Literal["auto", "threads", "processes"]

RUNTIME = "Runtime"
FILES = "Input and output"
REVIEW = "Review"

# Where --label-column is not given, a column of this name makes the run an evaluation.
DEFAULT_LABEL_COLUMN = "label"


@dataclass
class ClassifierConfig:
    """How an export runs: device, variant, batching, threads."""

    device: Device = option(
        "auto", help="Where to run: auto (CUDA when it works), cuda, cpu.", panel=RUNTIME
    )
    variant: Variant = option(
        "auto",
        help=f"Model variant: auto, {', '.join(VARIANTS)}. auto: the fastest the export holds "
        "for the device among those that give a row the same label in any batch.",
        panel=RUNTIME,
    )
    # Rows per batch (rows are sorted by length first, so batches pad little).
    batch_size: int | None = option(
        None,
        help="Rows per inference batch. Default: 32 on the CPU, 1024 on CUDA.",
        panel=RUNTIME,
    )
    max_batch_tokens: int | None = option(
        None,
        help="Padded tokens (rows x longest row) per batch. Default: no cap on the CPU, "
        "65536 on CUDA.",
        panel=RUNTIME,
    )
    threads: int | None = option(
        None, help="CPU threads for inference. Default: one per core.", panel=RUNTIME
    )
    # The export's temperature (fitted on validation rows at export time) scales the logits:
    # confidences that match how often predictions are right. Labels are the same either way.
    calibrate: bool = option(
        True,
        help="Confidences calibrated with the export's temperature; --no-calibrate: the raw "
        "softmax. Labels are the same either way.",
        panel=RUNTIME,
    )

    # Defaults per device. On the CPU, 32 rows (larger batches were slower: cache); on CUDA,
    # large batches bounded by tokens so that long and short rows cost the GPU alike.
    CPU_BATCH: ClassVar[tuple[int, int | None]] = (32, None)
    CUDA_BATCH: ClassVar[tuple[int, int | None]] = (1024, 65536)

    def __post_init__(self) -> None:
        check_choice("--device", self.device, Device)
        check_variant_name("--variant", self.variant, allow_auto=True)
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
    """How a file is read and its predictions written."""

    format: TableFormat | None = option(
        None, help="Input format (default: from the extension; sniffed on stdin).", panel=FILES
    )
    text_columns: list[str] = option(
        default_factory=list,
        help="Text column(s), comma-separated. Default: the columns the model was trained on, "
        "else 'text', else 'title'+'description'.",
        flag="--text-column",
        panel=FILES,
        cli_type=str | None,
        parse=parse_text_columns,
    )
    label_column: str | None = option(
        None,
        help="Label column: the run is then also an evaluation. Default: 'label' where the "
        "input has it; a column named here must exist.",
        panel=FILES,
    )
    probabilities: bool = option(
        False, help="Add one probability column per class.", flag="--probabilities", panel=FILES
    )
    on_error: OnError = option(
        "raise", help="Malformed rows: raise (stop) or skip (report their lines).", panel=FILES
    )
    # Rows read, tokenized, sorted by length and written as one unit; bounds memory.
    chunk_rows: int = option(
        4096, help="Rows read, sorted and written together (bounds memory).", panel=RUNTIME
    )
    # Preparing (reading, cleaning, tokenizing) beside inference: worker processes where
    # cleaning holds the GIL, threads where the work releases it (newsclf.inference.prepare).
    prepare_workers: int | None = option(
        None,
        help="Workers that clean and tokenize beside inference; 0: in turn. Default: on CUDA "
        "every core but two, on the CPU none (inference uses every core).",
        panel=RUNTIME,
    )
    prepare_pool: PoolKind = option(
        "auto",
        help="Where --prepare-workers run: threads, processes, or auto (processes where the "
        "model cleans its text, which holds Python's lock; threads where it does not).",
        panel=RUNTIME,
    )
    # Every row stays in the output; those under P are flagged (and, with --review-output,
    # also written to a file of their own). With labels, the report gives the coverage and
    # accuracy at P and at the standard thresholds.
    min_confidence: float | None = option(
        None,
        help="Review threshold P in [0, 1]: adds a needs_review column, true where the "
        "confidence is under P; with labels, the report gives the share of rows accepted and "
        "their accuracy at P.",
        panel=REVIEW,
    )

    def __post_init__(self) -> None:
        if self.min_confidence is not None:
            check_range("--min-confidence", self.min_confidence, 0.0, 1.0, high_open=False)
            self.min_confidence = float(self.min_confidence)
        if self.format is not None:
            check_choice("--format", self.format, TableFormat)
        check_choice("--on-error", self.on_error, OnError)
        check_choice("--prepare-pool", self.prepare_pool, PoolKind)
        check_positive("--chunk-rows", self.chunk_rows)
        if self.prepare_workers is not None and self.prepare_workers < 0:
            raise InputError(f"--prepare-workers must be 0 or more, not {self.prepare_workers}.")
        self.text_columns = list(self.text_columns)
