"""Prediction ensembles: several classifiers of one tokenizer and label set as one model.

`newsclf soup --ensemble` writes an ensemble run folder (`newsclf.artifacts.RunFolder`);
`newsclf export` turns it into one ONNX graph that runs every member and averages their
probabilities, so that classify, Ray and the other runtimes treat it like any export. It costs
one forward pass per member and row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from newsclf.errors import ModelError


class PredictionEnsemble(torch.nn.Module):
    """Members whose class probabilities are averaged.

    The output `logits` are the log of the mean probability, so softmax(logits) is the
    ensemble's distribution and argmax its vote. (Computed as a log-sum-exp of the members'
    log-probabilities: no log of an underflowed zero.)

    Args:
        members: sequence classifiers with the same labels and inputs.
    """

    def __init__(self, members: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ModelError("An ensemble needs at least one member.")
        self.members = torch.nn.ModuleList(members)
        self.config = members[0].config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        log_probabilities = torch.stack(
            [member(**inputs).logits.float().log_softmax(dim=-1) for member in self.members]
        )
        mean = torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))
        return SequenceClassifierOutput(logits=mean)
