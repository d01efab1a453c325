"""The student: the teacher's architecture with fewer encoder layers, started from the teacher's
weights (embeddings, the layers kept, pooler and classification head).

Which layers: the first and the last of the teacher's, and the others evenly spaced between
them (`spread_layers`). The first layer is the one that was trained on the embeddings' output,
the last the one the pooler and head were trained on, so both ends of the student start where
the teacher's were; the layers between sample the depth evenly, as the "skip" strategy of
patient distillation (Sun et al. 2019) and DistilBERT's every-other-layer start do.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from newsclf.errors import InputError, ModelError


def spread_layers(depth: int, layers: int) -> list[int]:
    """The teacher's layer indices a student of `layers` layers keeps, out of `depth`: the
    first and the last, the rest evenly spaced (rounded down). 6 layers -> 4: 0, 1, 3, 5;
    3: 0, 2, 5; 2: 0, 5. One layer: the last.

    Raises:
        InputError: `layers` is below 1 or not below `depth`.
    """
    if layers < 1:
        raise InputError(f"--layers must be at least 1, not {layers}.")
    if layers >= depth:
        raise InputError(
            f"--layers {layers}: the teacher has {depth} encoder layers; a student needs fewer "
            f"({'1' if depth == 2 else f'1 to {depth - 1}'})."
            if depth > 1
            else f"--layers {layers}: the teacher has a single encoder layer; no student can "
            "be smaller."
        )
    if layers == 1:
        return [depth - 1]
    return [i * (depth - 1) // (layers - 1) for i in range(layers)]


def encoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """(state-dict prefix, module list) of the model's stack of encoder layers: the one
    ModuleList named `layer` or `layers` with num_hidden_layers entries.

    Raises:
        ModelError: there is no such list, or more than one.
    """
    depth = getattr(model.config, "num_hidden_layers", None)
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList)
        and len(module) == depth
        and name.rsplit(".", 1)[-1] in ("layer", "layers")
    ]
    if len(found) != 1:
        raise ModelError(
            f"Cannot find the encoder layers of a {type(model).__name__} ({len(found)} "
            "candidate lists): distillation supports BERT-like encoders (BERT, MiniLM, "
            "RoBERTa, DistilBERT, ...)."
        )
    return found[0]


def make_student(teacher: Any, kept: list[int]) -> Any:
    """A new classifier of the teacher's architecture with the encoder layers `kept` (teacher
    indices, in order), every weight copied from the teacher: embeddings, those layers,
    pooler and head.

    Args:
        teacher: a Hugging Face sequence classifier (not an ensemble: pass a member).
        kept: teacher layer indices, e.g. `spread_layers(depth, k)`.

    Returns:
        The student, in fp32, in training mode.

    Raises:
        ModelError: the architecture's layers cannot be found or its weights do not map.
    """
    from transformers import AutoModelForSequenceClassification

    depth = teacher.config.num_hidden_layers
    prefix, _ = encoder_layers(teacher)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(kept)
    # Per-layer settings (e.g. layer_types), where an architecture has them.
    for name, value in config.to_diff_dict().items():
        if isinstance(value, list) and len(value) == depth and name != "id2label":
            setattr(config, name, [value[i] for i in kept])
    student = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    source = teacher.state_dict()
    weights = {}
    try:
        for key in student.state_dict():
            if key.startswith(prefix + "."):
                index, rest = key[len(prefix) + 1 :].split(".", 1)
                weights[key] = source[f"{prefix}.{kept[int(index)]}.{rest}"]
            else:
                weights[key] = source[key]
        student.load_state_dict(weights, strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelError(
            f"Cannot start a {len(kept)}-layer student from the teacher's weights: {exc}"
        ) from None
    return student.float().train()
