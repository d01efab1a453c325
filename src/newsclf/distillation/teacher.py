"""The teacher of a distillation: a newsclf run folder (a training run, a soup, an ensemble, or
an earlier student), what it was trained on, and its model.

A folder that is not a run is refused with what it is (an export, a model folder, a search,
an unfinished run, a folder of runs), since the student needs the teacher's own data and
validation split, which only a run records.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from newsclf.artifacts import (
    PreprocessingConfig,
    RunFolder,
    is_export,
    label_names_of,
    read_model_config,
)
from newsclf.combine import PredictionEnsemble
from newsclf.errors import InputError, ModelError
from newsclf.training import TrainingConfig


@dataclass(frozen=True)
class Teacher:
    """A finished run folder to distil.

    Attributes:
        run_dir: the run folder.
        kind: "train", "soup" (weights averaged), "ensemble" (predictions averaged) or
            "distill" (an earlier student).
        model_dirs: its Hugging Face folder (best/), or an ensemble's members in order.
        training: the configuration it was trained with (data, split, recipe); for a soup or
            an ensemble, its first ingredient's.
        preprocessing: how it turns rows into model inputs.
        label_names: its classes, in class-index order.
        depth: encoder layers of its (first) model.
    """

    run_dir: Path
    kind: str
    model_dirs: list[Path]
    training: TrainingConfig
    preprocessing: PreprocessingConfig
    label_names: list[str]
    depth: int

    @property
    def student_source(self) -> Path:
        """The model whose architecture and weights the student starts from (an ensemble's
        member 0)."""
        return self.model_dirs[0]

    def load(self) -> tuple[torch.nn.Module, Any]:
        """(model, tokenizer): the model in fp32 and eval mode; an ensemble as one
        `PredictionEnsemble` whose logits are the log of its members' mean probability.

        Raises:
            ModelError: a model cannot be loaded.
        """
        from transformers import AutoTokenizer

        models = [load_classifier(folder) for folder in self.model_dirs]
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.student_source))
        except (OSError, ValueError) as exc:
            raise ModelError(f"Cannot load the tokenizer of {self.student_source}: {exc}") from None
        model = PredictionEnsemble(models) if self.kind == "ensemble" else models[0]
        return model.eval(), tokenizer


def load_classifier(folder: Path) -> Any:
    """A sequence classifier in fp32 from a Hugging Face folder (safetensors only).

    Raises:
        ModelError: it cannot be loaded.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), dtype=torch.float32, use_safetensors=True, local_files_only=True
        )
    except Exception as exc:  # safetensors, torch and transformers raise many kinds
        raise ModelError(f"Cannot load the model {folder}: {exc}") from None
    return model.eval()


def find_teacher(path: Path) -> Teacher:
    """The teacher run in `path` (a run folder, or its best/ folder).

    Raises:
        ModelError: `path` is not a finished newsclf run (the message says what it is), or
            the run's records are damaged.
    """
    path = Path(path)
    run = RunFolder(path)
    if path.name == "best" and (path / "config.json").is_file() and _is_run(path.parent):
        run = RunFolder(path.parent)
    elif not _is_run(path):
        raise ModelError(f"--teacher {path}: {_what_it_is(path)}")
    kind, training = _kind_and_training(run)
    model_dirs = run.member_dirs() if run.is_ensemble else [run.best_dir]
    preprocessing = PreprocessingConfig.load(model_dirs[0])
    config = read_model_config(model_dirs[0])
    label_names = label_names_of(config, model_dirs[0])
    depth = _depth(model_dirs[0])
    return Teacher(run.path, kind, model_dirs, training, preprocessing, label_names, depth)


def _is_run(path: Path) -> bool:
    return RunFolder(path).is_finished


def _depth(model_dir: Path) -> int:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read {model_dir}/config.json: {exc}") from None
    depth = getattr(config, "num_hidden_layers", None)
    if not isinstance(depth, int) or depth < 1:
        raise ModelError(
            f"{model_dir}: its config.json does not say how many encoder layers the model has "
            "(num_hidden_layers), so no student can be cut from it."
        )
    return depth


def _read_metrics(run: RunFolder) -> dict[str, Any] | None:
    if not run.metrics_file.is_file():
        return None
    try:
        metrics = json.loads(run.metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{run.metrics_file} is not readable JSON ({exc}).") from None
    return metrics if isinstance(metrics, dict) else None


def _kind_and_training(run: RunFolder) -> tuple[str, TrainingConfig]:
    """What kind of run it is, and the training configuration of its data and split."""
    metrics = _read_metrics(run) or {}
    kind = str(metrics.get("kind") or ("soup" if run.is_ensemble else "train"))
    try:
        if kind == "distill":
            return kind, TrainingConfig.from_dict(metrics["config"], str(run.metrics_file))
        if kind == "soup":
            method = (metrics.get("soup") or {}).get("method")
            ensemble = run.is_ensemble or method == "ensemble"
            return ("ensemble" if ensemble else "soup"), _first_ingredient_config(run, metrics)
    except (KeyError, TypeError, InputError) as exc:
        raise ModelError(
            f"{run.metrics_file}: cannot tell what the teacher trained on ({exc})."
        ) from None
    if not run.config_file.is_file():
        raise ModelError(
            f"--teacher {run.path}: a model without its training record ({run.config_file.name} "
            "is missing): the student needs the teacher's data and validation split."
        )
    try:
        return "train", TrainingConfig.load(run.config_file)
    except InputError as exc:
        raise ModelError(str(exc)) from None


def _first_ingredient_config(run: RunFolder, metrics: dict[str, Any]) -> TrainingConfig:
    """A soup's or ensemble's data and split: those of its first ingredient (soup checked
    that all share them)."""
    sources = [i["run_dir"] for i in (metrics.get("soup") or {}).get("ingredients", [])]
    if not sources and run.is_ensemble:
        sources = json.loads(run.ensemble_file.read_text(encoding="utf-8")).get("runs", [])
    if not sources:
        raise ModelError(f"{run.path}: the soup does not name the runs it was made of.")
    first = RunFolder(Path(sources[0]))
    if not first.config_file.is_file():
        raise ModelError(
            f"--teacher {run.path}: its first ingredient {first.path} (or its "
            f"{first.config_file.name}) is gone; the student needs the data and validation "
            "split the soup's runs were trained on."
        )
    try:
        return TrainingConfig.load(first.config_file)
    except InputError as exc:
        raise ModelError(str(exc)) from None


def _what_it_is(path: Path) -> str:
    """Why `path` is not a teacher, in words."""
    run = RunFolder(path)
    hint = "pass a run folder written by newsclf train or newsclf soup"
    if not path.exists():
        return f"no such folder; {hint}."
    if not path.is_dir():
        return f"a file, not a run folder; {hint}."
    if is_export(path):
        return (
            "an ONNX export (newsclf export), not a run: distillation needs the PyTorch weights "
            f"and the training data; pass the run folder it was exported from (usually "
            f"{path.parent})."
        )
    if (path / "config.json").is_file():
        return (
            "a Hugging Face model folder, not a newsclf run: the student needs the teacher's "
            "training data and validation split, which only a run records; fine-tune it with "
            "newsclf train first."
        )
    if path.name == "tune" or run.study_file.is_file():
        return (
            "a search (newsclf tune) without a trained model; train its best recipe first "
            "(newsclf tune --train-best, or the newsclf train command it printed)."
        )
    if run.distill_config_file.is_file():
        return (
            f"an unfinished distillation (no best/ yet); finish it with newsclf distill --resume "
            f"--output-dir {path}."
        )
    if run.config_file.is_file() or run.checkpoints_dir.is_dir():
        return (
            f"an unfinished run (no best/ yet); finish it with newsclf train --resume "
            f"--output-dir {path}."
        )
    runs = sorted(p.name for p in path.iterdir() if p.is_dir() and _is_run(p))
    if runs:
        shown = ", ".join(runs[:5]) + (", ..." if len(runs) > 5 else "")
        return f"a folder of runs ({shown}), not a run itself; pass one of them."
    return f"not a newsclf run folder (no best/ or ensemble.json); {hint}."
