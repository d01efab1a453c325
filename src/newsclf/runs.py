"""The run folder format: what `newsclf train` writes and `newsclf export` reads.

RUN/best/                 a standard Hugging Face folder + newsclf_preprocessing.json
RUN/metrics.json          validation history, test metrics, speed, device, versions, config
RUN/train_config.json     the configuration, for --resume
RUN/parity_sample.jsonl   labelled rows export checks parity on (validation; train without one)
RUN/README.md             a short model card
RUN/checkpoints/          Trainer checkpoints while training (removed at the end)
RUN/mlm/                  the encoder after within-task masked-LM pre-training (--mlm-epochs)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from newsclf.atomic import write_text_atomic
from newsclf.config import EMBEDDED_MODEL
from newsclf.errors import InputError, ModelError

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
BEST_DIR = "best"
MLM_DIR = "mlm"
CHECKPOINTS_DIR = "checkpoints"
PARITY_SAMPLE_FILE = "parity_sample.jsonl"
MODEL_CARD_FILE = "README.md"


def default_run_dir(model: str, models_dir: Path = Path("models")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    short = Path(model).name if model != EMBEDDED_MODEL else "minilm-embedded"
    return models_dir / f"{stamp}-{short.replace('/', '-')}"


def latest_run(models_dir: Path = Path("models")) -> Path:
    runs = sorted(p.parent for p in Path(models_dir).glob(f"*/{BEST_DIR}/config.json"))
    if not runs:
        raise ModelError(
            f"No trained run under {models_dir}/; pass --checkpoint or run newsclf train."
        )
    return max(runs, key=lambda p: (p / BEST_DIR).stat().st_mtime)


def resolve_checkpoint(checkpoint: Path) -> tuple[Path, Path | None]:
    """(model folder, run folder or None) from a run folder, its best/ folder, or any
    Hugging Face model folder."""
    checkpoint = Path(checkpoint)
    if (checkpoint / BEST_DIR / "config.json").is_file():
        return checkpoint / BEST_DIR, checkpoint
    if (checkpoint / "config.json").is_file():
        parent = checkpoint.parent
        return checkpoint, parent if (parent / METRICS_FILE).is_file() else None
    raise ModelError(
        f"{checkpoint} is neither a newsclf run folder (with {BEST_DIR}/) nor a model folder "
        "(with config.json)."
    )


def write_parity_sample(
    run_dir: Path, texts: Sequence[str], labels: Sequence[int], rows: int
) -> Path:
    lines = [
        json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n"
        for text, label in zip(texts[:rows], labels[:rows], strict=True)
    ]
    return write_text_atomic(Path(run_dir) / PARITY_SAMPLE_FILE, "".join(lines))


def read_parity_sample(run_dir: Path, limit: int) -> tuple[list[str], list[int]]:
    """The run's non-empty parity texts and their labels, at most `limit`."""
    path = Path(run_dir) / PARITY_SAMPLE_FILE
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = str(row["text"]), int(row["label"])
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}, line {number}: not a parity row ({exc}).") from None
            if text:
                texts.append(text)
                labels.append(label)
            if len(texts) >= limit:
                break
    return texts, labels
