"""Optional fine-tuning techniques: layer-wise learning-rate decay, R-Drop and checkpoint
averaging.

All are off in the default recipe; `TrainingConfig.layer_decay`, `rdrop` and `average_last`
turn them on. Averaging is kept only when it scores at least as well on validation as the best
checkpoint, so it can never make a run worse by the run's own measure.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from newsclf.errors import ModelError, NewsclfError

# "encoder.layer.3.", "transformer.layer.3.", "layers.3.": the transformer block a weight is in.
_LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def layer_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter: 0 for the embeddings, i + 1 for transformer block i, and
    num_layers + 1 for everything above the blocks (pooler, classifier)."""
    match = _LAYER_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings" in name:
        return 0
    return num_layers + 1


def layer_decay_groups(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    layer_decay: float,
    decay_names: Iterable[str],
) -> list[dict[str, Any]]:
    """Optimizer parameter groups in which the head trains at `learning_rate` and each level
    below it at `layer_decay` times the level above (Howard & Ruder 2018; Clark et al. 2020).

    The head's groups come first, so that the Trainer's logged learning rate is the peak one.

    Raises:
        ModelError: the model's parameter names show no numbered transformer blocks.
    """
    num_layers = int(getattr(model.config, "num_hidden_layers", 0))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if num_layers < 1 or not any(_LAYER_INDEX.search(n) for n, _ in named):
        raise ModelError(
            "--layer-decay needs a model whose parameters name numbered layers "
            "('encoder.layer.N.'); this one has none. Use --layer-decay 1."
        )
    decayed = set(decay_names)
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, param in named:
        key = (layer_depth(name, num_layers), name in decayed)
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": learning_rate * layer_decay ** (num_layers + 1 - depth),
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (depth, decays), params in sorted(groups.items(), key=lambda kv: -kv[0][0])
    ]


def rdrop_loss(
    logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor, alpha: float
) -> torch.Tensor:
    """R-Drop (Liang et al. 2021): the mean cross-entropy of two forward passes that differ
    only in their dropout masks, plus `alpha` times the mean of the two KL divergences between
    their predictions (the paper's loss, halved so that alpha 0 is the plain loss)."""
    logits_a, logits_b = logits_a.float(), logits_b.float()
    cross_entropy = (F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_b, labels)) / 2
    log_a, log_b = F.log_softmax(logits_a, dim=-1), F.log_softmax(logits_b, dim=-1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(P_a || P_b)
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")  # KL(P_b || P_a)
    return cross_entropy + alpha * (kl_ab + kl_ba) / 4


class NewsclfTrainer(Trainer):
    """The Trainer with newsclf's optional techniques: layer-wise learning-rate decay (1.0:
    the Trainer's own optimizer) and R-Drop (alpha 0: the model's own loss)."""

    def __init__(
        self, *args: Any, layer_decay: float = 1.0, rdrop: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.layer_decay = layer_decay
        self.rdrop = rdrop
        # The sequence-classification losses are means over the micro-batch. The Trainer
        # infers from the forward's **kwargs that the model normalises by the whole
        # accumulated batch, and would then add up the micro-batches' means instead of
        # averaging them (gradient accumulation N = N times the gradient).
        self.model_accepts_loss_kwargs = False

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        if self.rdrop == 0 or not model.training or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        # One forward over the batch twice: two dropout masks, one pass through the kernels.
        doubled = {k: torch.cat([v, v]) for k, v in inputs.items() if k != "labels"}
        outputs = model(**doubled)
        logits_a, logits_b = outputs.logits.chunk(2)
        loss = rdrop_loss(logits_a, logits_b, labels, self.rdrop)
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.layer_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        target = self.model if model is None else model
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
        groups = layer_decay_groups(
            target,
            self.args.learning_rate,
            self.args.weight_decay,
            self.layer_decay,
            self.get_decay_parameter_names(target),
        )
        self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer


@dataclass(frozen=True)
class WeightSnapshot:
    step: int
    weights: dict[str, torch.Tensor]


class WeightSnapshots(TrainerCallback):
    """Copies of the model's weights (on the CPU) at the last `keep` evaluations."""

    def __init__(self, keep: int) -> None:
        self.snapshots: deque[WeightSnapshot] = deque(maxlen=keep)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = kwargs["model"]
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.snapshots.append(WeightSnapshot(state.global_step, weights))


def average_weights(snapshots: Iterable[WeightSnapshot]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the snapshots' floating-point tensors (in fp32); other tensors
    (integer buffers such as position ids) are taken from the last snapshot."""
    items = list(snapshots)
    if not items:
        raise NewsclfError("Checkpoint averaging needs at least one snapshot of the weights.")
    averaged: dict[str, torch.Tensor] = {}
    for key, last in items[-1].weights.items():
        if last.is_floating_point():
            total = torch.zeros_like(last, dtype=torch.float32)
            for item in items:
                total += item.weights[key].float()
            averaged[key] = (total / len(items)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


@dataclass(frozen=True)
class AveragingResult:
    """Checkpoint averaging's outcome: both candidates scored in fp32 on the validation split."""

    steps: list[int]
    metric: str
    best_checkpoint: float
    average: float
    kept: bool
