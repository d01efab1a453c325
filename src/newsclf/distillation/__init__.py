"""Distillation: a smaller student of a trained run (K of the teacher's encoder layers, its
weights to start from) that learns the teacher's soft targets and the true labels; its run
folder is like `train`'s, so `export` and `classify` take it unchanged."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "DistillConfig": "config",
        "RECIPE_FIELDS": "config",
        "Distiller": "distiller",
        "DistillPlan": "distiller",
        "DistillResult": "distiller",
        "SplitComparison": "distiller",
        "distill": "distiller",
        "distillation_loss": "losses",
        "student_loss": "losses",
        "NO_LABEL": "losses",
        "make_student": "student",
        "spread_layers": "student",
        "encoder_layers": "student",
        "Teacher": "teacher",
        "find_teacher": "teacher",
    },
)

if TYPE_CHECKING:
    from newsclf.distillation.config import RECIPE_FIELDS, DistillConfig
    from newsclf.distillation.distiller import (
        Distiller,
        DistillPlan,
        DistillResult,
        SplitComparison,
        distill,
    )
    from newsclf.distillation.losses import NO_LABEL, distillation_loss, student_loss
    from newsclf.distillation.student import encoder_layers, make_student, spread_layers
    from newsclf.distillation.teacher import Teacher, find_teacher
