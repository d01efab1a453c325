"""Every default of newsclf in one place.

`TrainingConfig` holds the fine-tuning recipe; `PreprocessingConfig` is what travels with a
model (saved beside its weights, reused by export and classify); `ClassifyConfig` and
`ExportConfig` hold the inference-side defaults. The CLI reads its defaults from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from newsclf.errors import ModelError

# Name of the file that carries the preprocessing settings inside a model or export folder.
PREPROCESSING_FILE = "newsclf_preprocessing.json"
# Validation rows a training run keeps so that `export` can prove parity on real texts.
PARITY_SAMPLE_FILE = "parity_sample.jsonl"

DEFAULT_MODEL = "bert-base-uncased"
DEFAULT_DATASET = "fancyzhx/ag_news"
EMBEDDED_MODEL = "embedded"


@dataclass
class PreprocessingConfig:
    """How raw rows become model inputs; saved with the model so nobody re-types it."""

    clean: bool = True
    max_length: int = 128
    # Columns joined (with `text_separator`) into the model's text; empty means auto-detect.
    text_columns: list[str] = field(default_factory=list)
    text_separator: str = " "
    label_column: str = "label"

    def save(self, directory: Path) -> Path:
        path = Path(directory) / PREPROCESSING_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

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
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


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
    metric: str = "f1_macro"
    validation_fraction: float = 0.05
    seed: int = 42
    max_train_samples: int | None = None
    # "auto": bf16 where the hardware runs it natively (CUDA bf16, or a CPU with AVX512-BF16/AMX),
    # fp16 on older CUDA GPUs, fp32 otherwise.
    precision: str = "auto"
    group_by_length: bool = True
    resume: bool = False
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        return data


@dataclass
class ExportConfig:
    """Defaults for `newsclf export --onnx` and its parity check."""

    opset: int = 18
    # fp32 export must match PyTorch this closely (max |logit difference|) with identical labels.
    fp32_tolerance: float = 1e-4
    # Reduced-precision variants (fp16, int8) must agree with PyTorch on this share of labels.
    min_label_agreement: float = 0.99
    parity_rows: int = 256
    parity_batch_sizes: tuple[int, ...] = (1, 17)


@dataclass
class ClassifyConfig:
    """Defaults for `newsclf classify`."""

    batch_size: int = 32
    # Rows read, tokenized, sorted by length and written as one unit; bounds memory.
    chunk_rows: int = 4096
    device: str = "auto"
    variant: str = "auto"
    label_column: str = "label"
