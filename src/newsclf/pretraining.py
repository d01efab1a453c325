"""Within-task further pre-training (Sun et al. 2019, "How to Fine-Tune BERT for Text
Classification?"): masked-language-model steps on the run's own training texts before
fine-tuning, so that the encoder adapts to the domain's words and style.

Only the training split's texts are used (never validation or test rows, labels never). The
encoder weights it produces go into the classifier that fine-tuning starts from; the pooler
and the new head are left as they were, since a masked-LM model has no pooler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback

from newsclf.atomic import write_json_atomic
from newsclf.config import TrainingConfig
from newsclf.errors import ModelError

# The share of tokens masked per sequence, as in BERT's own pre-training.
MLM_PROBABILITY = 0.15
ENCODER_FILE = "encoder.safetensors"
STATS_FILE = "mlm.json"


@dataclass(frozen=True)
class PretrainingStats:
    """How the masked-LM step went: its rows, steps, loss at the start and end, time."""

    rows: int
    epochs: float
    steps: int
    first_loss: float | None
    last_loss: float | None
    seconds: float
    reused: bool = False


class _MaskedTexts(torch.utils.data.Dataset):
    def __init__(self, texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int):
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        keys = list(encoded.keys())
        self.features = [{k: encoded[k][i] for k in keys} for i in range(len(texts))]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def further_pretrain(
    source: str,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    cfg: TrainingConfig,
    training_args: dict[str, Any],
    pad_to_multiple_of: int | None,
    output_dir: Path,
    hub_kwargs: dict[str, bool],
    write: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> tuple[dict[str, torch.Tensor], PretrainingStats]:
    """`cfg.mlm_epochs` of masked-LM training of `source` on `texts`.

    Returns the encoder's weights (the masked-LM model's base model) and the step's stats;
    writes both under `output_dir` when `write` (the main process), so that a resumed run
    reuses them instead of training again.

    Args:
        training_args: TrainingArguments keywords for the hardware (precision, optimizer, CPU).
    """
    saved = load_pretrained_encoder(output_dir)
    if saved is not None:
        return saved
    started = time.perf_counter()
    set_seed(cfg.seed)
    try:
        model = AutoModelForMaskedLM.from_pretrained(source, dtype=torch.float32, **hub_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load {source} as a masked-language model: {exc}") from exc
    args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.mlm_epochs,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        save_strategy="no",
        seed=cfg.data_order_seed,
        logging_steps=10,
        disable_tqdm=True,
        report_to="none",
        dataloader_num_workers=0,
        **training_args,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_MaskedTexts(texts, tokenizer, cfg.preprocessing.max_length),
        data_collator=DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=MLM_PROBABILITY, pad_to_multiple_of=pad_to_multiple_of
        ),
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    stats = PretrainingStats(
        rows=len(texts),
        epochs=cfg.mlm_epochs,
        steps=trainer.state.global_step,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    encoder = _encoder_weights(model)
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_file(encoder, str(output_dir / ENCODER_FILE))
        # Written last: its presence says the weights beside it are complete.
        write_json_atomic(output_dir / STATS_FILE, asdict(stats))
    return encoder, stats


def load_pretrained_encoder(
    output_dir: Path,
) -> tuple[dict[str, torch.Tensor], PretrainingStats] | None:
    """The weights and stats of an earlier masked-LM step in `output_dir`, if it finished."""
    stats_path = output_dir / STATS_FILE
    if not stats_path.is_file() or not (output_dir / ENCODER_FILE).is_file():
        return None
    raw = json.loads(stats_path.read_text(encoding="utf-8"))
    stats = PretrainingStats(**{**raw, "reused": True})
    return load_file(str(output_dir / ENCODER_FILE)), stats


def load_encoder_into(classifier: PreTrainedModel, encoder: dict[str, torch.Tensor]) -> None:
    """Put the masked-LM step's encoder weights into `classifier`'s base model.

    Raises:
        ModelError: the weights do not fit (other than the pooler, which masked-LM lacks).
    """
    result = classifier.base_model.load_state_dict(encoder, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise ModelError(
            "The masked-LM encoder does not fit the classifier: missing "
            f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}."
        )


def _encoder_weights(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    # Copies: tied tensors (word embeddings and the LM decoder) cannot be saved as views.
    weights = model.base_model.state_dict()
    return {k: v.detach().cpu().clone().contiguous() for k, v in weights.items()}
