"""R-Drop (Liang et al. 2021), newsclf's one optional training technique: it measured a gain on
validation for both train seeds compared (benchmarks/NOTES.md), so it stays; the others tried
(layer-wise decay, checkpoint averaging, masked-LM pre-training, greedy soups) did not, and
went. It plugs into the trainer as a loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

# (model, inputs with "labels") -> (loss, outputs)
LossFunction = Callable[[torch.nn.Module, dict[str, Any]], tuple[torch.Tensor, Any]]


def rdrop_loss(
    logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor, alpha: float
) -> torch.Tensor:
    """The mean cross-entropy of two forward passes that differ only in their dropout masks,
    plus `alpha` times the mean of the two KL divergences between their predictions (the
    paper's loss, halved so that alpha 0 is the plain loss)."""
    logits_a, logits_b = logits_a.float(), logits_b.float()
    cross_entropy = (F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_b, labels)) / 2
    log_a, log_b = F.log_softmax(logits_a, dim=-1), F.log_softmax(logits_b, dim=-1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(P_a || P_b)
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")  # KL(P_b || P_a)
    return cross_entropy + alpha * (kl_ab + kl_ba) / 4


def rdrop(alpha: float) -> LossFunction:
    """The R-Drop training loss with weight `alpha`: the batch goes through the model twice
    in one forward (two dropout masks, one pass through the kernels)."""

    def loss(model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        labels = inputs["labels"]
        doubled = {k: torch.cat([v, v]) for k, v in inputs.items() if k != "labels"}
        outputs = model(**doubled)
        logits_a, logits_b = outputs.logits.chunk(2)
        return rdrop_loss(logits_a, logits_b, labels, alpha), outputs

    return loss
