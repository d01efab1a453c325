"""The distillation loss (Hinton, Vinyals & Dean 2015): the student matches the teacher's
temperature-softened class distribution, and the true labels where a row has one."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from newsclf.training import LossFunction

# The label of a row without one (a transfer text): ignored by the cross-entropy.
NO_LABEL = -100
TEACHER_LOGITS = "teacher_logits"


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    soft_weight: float,
) -> torch.Tensor:
    """soft_weight * T^2 * KL(p_teacher || p_student) + (1 - soft_weight) * cross-entropy.

    p_teacher and p_student are softmax(logits / T); the KL divergence is summed over the
    classes and averaged over the batch's rows (every row has a teacher's distribution). T^2
    keeps the soft term's gradients the size of the hard term's whatever T (Hinton et al.).
    The cross-entropy (at temperature 1) is averaged over the rows that have a label; rows
    labelled -100 (transfer texts) have none, and a batch of only those has no hard term.
    """
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    t = float(temperature)
    log_student = F.log_softmax(student_logits / t, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    # KL(P_teacher || P_student), summed over classes, averaged over rows.
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    soft = kl * t * t
    labelled = labels != NO_LABEL
    if bool(labelled.any()):
        hard = F.cross_entropy(student_logits[labelled], labels[labelled])
    else:
        hard = student_logits.sum() * 0.0
    return soft_weight * soft + (1.0 - soft_weight) * hard


def student_loss(temperature: float, soft_weight: float) -> LossFunction:
    """The training loss of a student: each batch brings the teacher's logits of its rows
    (column "teacher_logits"), which the model's forward does not take."""

    def loss(model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        teacher = inputs.pop(TEACHER_LOGITS)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        value = distillation_loss(outputs.logits, teacher, labels, temperature, soft_weight)
        return value, outputs

    return loss
