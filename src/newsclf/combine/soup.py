"""`newsclf soup`: combine several runs fine-tuned from the same model on the same data into
one model: the average of their weights (a uniform "model soup", Wortsman et al. 2022) or,
with `ensemble`, of their predictions.

Every run goes in with equal weight: nothing is chosen on a validation split too small to rank
runs (a greedy soup kept the run best on validation and worst on test: benchmarks/NOTES.md).
Both averages are scored on the runs' shared validation split whichever is kept. A soup is an
ordinary run folder; an ensemble keeps every member; `newsclf export` takes either. The test
split is read only for the final report, when a test file is given.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from newsclf.artifacts import (
    PreprocessingConfig,
    RunFolder,
    model_card,
    write_ensemble_description,
)
from newsclf.combine.ensemble import PredictionEnsemble
from newsclf.environment import machine_summary
from newsclf.errors import InputError, ModelError
from newsclf.io import atomic_directory, write_json_atomic, write_text_atomic
from newsclf.metrics import ClassificationMetrics, classification_metrics
from newsclf.training import TrainingConfig, evaluate, load_training_data, predict_logits

# What runs must share for their weights to be averaged and scored on one validation split.
_SAME_DATA = ("train_file", "dataset", "validation_file", "validation_fraction", "seed", "model")


@dataclass(frozen=True)
class SoupIngredient:
    run_dir: Path
    # The run alone, fp32, on the shared validation split (None: the runs have none).
    validation_score: float | None


@dataclass(frozen=True)
class SoupResult:
    """The combined model's run folder, its ingredients and scores; `to_dict()` is its
    metrics.json."""

    run_dir: Path
    # The soup's Hugging Face folder (RUN/best); None for an ensemble, whose members are in
    # RUN/members (export takes the run folder either way).
    best_dir: Path | None
    metric: str
    # "uniform" (weights averaged) or "ensemble" (predictions averaged).
    method: str
    ingredients: list[SoupIngredient]
    # On the validation split (fp32): the runs' weights averaged (the soup) and their
    # probabilities averaged (the ensemble, one forward pass per run and row). None for runs
    # trained with --validation-fraction 0.
    soup_validation_score: float | None
    ensemble_validation_score: float | None
    validation_rows: int
    label_names: list[str]
    test: ClassificationMetrics | None
    created: str

    @property
    def validation_score(self) -> float | None:
        """The validation score of the model this run folder holds."""
        if self.method == "ensemble":
            return self.ensemble_validation_score
        return self.soup_validation_score

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "soup",
            "created": self.created,
            "label_names": self.label_names,
            "soup": {
                "method": self.method,
                "metric": self.metric,
                "validation_rows": self.validation_rows,
                "validation_score": self.validation_score,
                "soup_validation_score": self.soup_validation_score,
                "ensemble_validation_score": self.ensemble_validation_score,
                "ingredients": [{**asdict(i), "run_dir": str(i.run_dir)} for i in self.ingredients],
            },
            "test": self.test.to_dict() if self.test else None,
            "environment": machine_summary(),
        }


def make_soup(
    runs: Sequence[Path],
    output_dir: Path,
    *,
    ensemble: bool = False,
    test_file: Path | None = None,
) -> SoupResult:
    """Average the best weights (or, with `ensemble`, the predictions) of `runs` into a new
    run folder `output_dir`.

    Args:
        runs: newsclf run folders, trained from the same model on the same data and
            validation split (same train file or dataset, validation fraction and seed).
        output_dir: the new run folder; must not exist or be empty.
        ensemble: keep every run and average their class probabilities (one forward pass per
            run and row) instead of their weights.
        test_file: labelled rows for the final report only.

    Returns:
        `SoupResult`: ingredients with their validation scores, the soup's and the
        ensemble's, and test metrics.

    Raises:
        InputError: fewer than two runs, runs that differ in data, labels or preprocessing,
            or an output folder that is not empty.
        ModelError: runs whose weights have different names or shapes.
    """
    runs = [Path(r) for r in runs]
    output_dir = Path(output_dir)
    if len(runs) < 2:
        raise InputError("newsclf soup needs at least two run folders.")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise InputError(f"{output_dir} is not empty; choose a new --output-dir for the soup.")
    hf_logging.disable_progress_bar()  # the caller reports progress; the bars would repeat it
    configs = [_run_config(r) for r in runs]
    pre = PreprocessingConfig.load(RunFolder(runs[0]).best_dir)
    _check_same(runs, configs, pre)
    data = load_training_data(replace(configs[0], test_file=test_file))
    if test_file is None:
        # A hub dataset brings its test split; the soup reads test rows only when asked to.
        data = replace(data, test=None)
    tokenizer = AutoTokenizer.from_pretrained(str(RunFolder(runs[0]).best_dir))
    models = [_load_model(r) for r in runs]
    _check_compatible(runs, models, data.label_names)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    members = [m.to(device) for m in models]
    souped = copy.deepcopy(members[0])
    souped.load_state_dict(average_weights([_cpu_weights(m) for m in members]))
    metric, batch = configs[0].metric, configs[0].eval_batch_size

    alone: list[float | None] = [None] * len(runs)
    soup_score = ensemble_score = None
    if len(data.validation):
        texts, labels = data.validation.texts, data.validation.labels
        probabilities = [
            torch.from_numpy(predict_logits(m, tokenizer, texts, batch, pre.max_length))
            .softmax(-1)
            .numpy()
            for m in members
        ]
        alone = [_score(p, labels, data.label_names, metric) for p in probabilities]
        ensemble_score = _score(np.mean(probabilities, axis=0), labels, data.label_names, metric)
        soup_metrics = evaluate(
            souped, tokenizer, data.validation, data.label_names, batch, pre.max_length
        )
        soup_score = float(getattr(soup_metrics, metric))
    combined: torch.nn.Module = PredictionEnsemble(members) if ensemble else souped
    test = None
    if data.test is not None:
        test = evaluate(combined, tokenizer, data.test, data.label_names, batch, pre.max_length)
    result = SoupResult(
        run_dir=output_dir,
        best_dir=None if ensemble else RunFolder(output_dir).best_dir,
        metric=metric,
        method="ensemble" if ensemble else "uniform",
        ingredients=[SoupIngredient(r, score) for r, score in zip(runs, alone, strict=True)],
        soup_validation_score=soup_score,
        ensemble_validation_score=ensemble_score,
        validation_rows=len(data.validation),
        label_names=data.label_names,
        test=test,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _write_run_folder(result, combined, tokenizer, pre, runs)
    return result


def average_weights(weights: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the floating-point tensors (in fp32); other tensors (integer
    buffers such as position ids) are taken from the last."""
    if not weights:
        raise ModelError("A weight average needs at least one set of weights.")
    averaged: dict[str, torch.Tensor] = {}
    for key, last in weights[-1].items():
        if last.is_floating_point():
            total = torch.zeros_like(last, dtype=torch.float32)
            for item in weights:
                total += item[key].float()
            averaged[key] = (total / len(weights)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def _score(
    probabilities: np.ndarray, labels: list[int], label_names: list[str], metric: str
) -> float:
    scores = classification_metrics(labels, np.argmax(probabilities, axis=-1), label_names)
    return float(getattr(scores, metric))


def _run_config(run: Path) -> TrainingConfig:
    folder = RunFolder(run)
    if not (folder.best_dir / "config.json").is_file() or not folder.config_file.is_file():
        raise InputError(
            f"{run} is not a finished newsclf training run (no best/ or train_config.json)."
        )
    return TrainingConfig.load(folder.config_file)


def _check_same(
    runs: list[Path], configs: list[TrainingConfig], first_pre: PreprocessingConfig
) -> None:
    first = configs[0]
    for run, config in zip(runs[1:], configs[1:], strict=True):
        for name in _SAME_DATA:
            if _comparable(getattr(config, name)) != _comparable(getattr(first, name)):
                raise InputError(
                    f"{run} and {runs[0]} differ in {name} ({getattr(config, name)!r} vs "
                    f"{getattr(first, name)!r}): a soup needs runs from the same model, data "
                    "and validation split."
                )
        if PreprocessingConfig.load(RunFolder(run).best_dir) != first_pre:
            raise InputError(f"{run} and {runs[0]} preprocess text differently.")
        if config.metric != first.metric:
            raise InputError(
                f"{run} chose its checkpoint on {config.metric}, {runs[0]} on {first.metric}."
            )


def _comparable(value: Any) -> Any:
    # Runs saved before 0.3 hold paths as typed; later ones absolute.
    return Path(value).resolve() if isinstance(value, Path) else value


def _load_model(run: Path) -> torch.nn.Module:
    best = RunFolder(run).best_dir
    try:
        return AutoModelForSequenceClassification.from_pretrained(str(best), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load {best}: {exc}") from exc


def _check_compatible(
    runs: list[Path], models: list[torch.nn.Module], label_names: list[str]
) -> None:
    expected = {k: v.shape for k, v in models[0].state_dict().items()}
    for run, model in zip(runs, models, strict=True):
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if labels != label_names:
            raise InputError(f"{run} has classes {labels}, the data {label_names}.")
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        if shapes != expected:
            raise ModelError(f"{run}'s weights differ in names or shapes from {runs[0]}'s.")


def _cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_model_folder(
    folder: Path, model: torch.nn.Module, tokenizer: Any, pre: PreprocessingConfig
) -> None:
    folder.mkdir(parents=True)
    model.save_pretrained(str(folder))  # type: ignore[operator]
    tokenizer.save_pretrained(str(folder))
    pre.save(folder)


def _write_run_folder(
    result: SoupResult,
    model: torch.nn.Module,
    tokenizer: Any,
    pre: PreprocessingConfig,
    runs: list[Path],
) -> None:
    """Staged in a hidden folder, renamed into place at the end: an interrupted soup leaves
    no run folder that looks finished."""
    with atomic_directory(result.run_dir) as staging:
        folder = RunFolder(staging)
        if isinstance(model, PredictionEnsemble):
            names = [str(i) for i in range(len(model.members))]
            for name, member in zip(names, model.members, strict=True):
                _save_model_folder(folder.members_dir / name, member, tokenizer, pre)
            write_ensemble_description(staging, names, runs)
        else:
            _save_model_folder(folder.best_dir, model, tokenizer, pre)
        # The ingredients share one validation split, so the first run's sample is the soup's.
        shutil.copyfile(RunFolder(runs[0]).parity_sample, folder.parity_sample)
        first = RunFolder(runs[0])
        for name in ("calibration_sample", "validation_rows"):
            if getattr(first, name).is_file():
                shutil.copyfile(getattr(first, name), getattr(folder, name))
        metrics = result.to_dict()
        write_json_atomic(folder.metrics_file, metrics)
        write_text_atomic(folder.model_card, model_card(result.run_dir, metrics))
