"""fp32 predictions of a PyTorch classifier: the figures export and classify reproduce (the
Trainer's own forward runs under autocast)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from newsclf.metrics import ClassificationMetrics, classification_metrics
from newsclf.training.data import LabeledTexts


def predict_logits(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
) -> np.ndarray:
    """fp32 logits for `texts`, batched by length, returned in the texts' order."""
    model.eval()
    device = next(model.parameters()).device
    texts = list(texts)
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
    order = np.argsort(lengths, kind="stable")
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            logits[rows] = model(**batch).logits.float().cpu().numpy()
    return logits


def evaluate(
    model: PreTrainedModel | torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: LabeledTexts,
    label_names: list[str],
    batch_size: int,
    max_length: int,
) -> ClassificationMetrics:
    """Metrics of an fp32 forward of `model` on labelled rows."""
    logits = predict_logits(model, tokenizer, data.texts, batch_size, max_length)
    return classification_metrics(data.labels, np.argmax(logits, axis=-1), label_names)
