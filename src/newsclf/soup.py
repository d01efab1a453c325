"""`newsclf soup`: combine several runs fine-tuned from the same model on the same data into
one model: the average of their weights (a "model soup", Wortsman et al. 2022) or, with
`ensemble`, of their predictions.

Uniform by default: every run goes in, so nothing is chosen on a validation split too small to
rank runs (benchmarks/NOTES.md). Greedy on request: score each run on the shared validation
split, start from the best, and add each next-best run only if the average with it scores at
least as well. Both averages are scored on validation whichever is kept. A soup is an ordinary
run folder (best/, metrics.json, parity_sample.jsonl, README.md); an ensemble keeps every
member (`newsclf.ensemble`); `newsclf export` takes either. The test split is read only for the
final report, when a test file is given.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from newsclf.atomic import write_json_atomic, write_text_atomic
from newsclf.config import PreprocessingConfig, TrainingConfig
from newsclf.ensemble import ENSEMBLE_FILE, MEMBERS_DIR, PredictionEnsemble
from newsclf.environment import machine_summary
from newsclf.errors import InputError, ModelError
from newsclf.metrics import ClassificationMetrics, classification_metrics
from newsclf.runs import (
    BEST_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    PARITY_SAMPLE_FILE,
)
from newsclf.techniques import WeightSnapshot, average_weights
from newsclf.training import load_training_data, predict_logits

# What runs must share for their weights to be averaged and scored on one validation split.
_SAME_DATA = (
    "train_file",
    "dataset",
    "validation_file",
    "validation_fraction",
    "seed",
    "model",
)


@dataclass(frozen=True)
class SoupIngredient:
    run_dir: Path
    # The run alone, fp32, on the shared validation split (None: the runs have none).
    validation_score: float | None
    used: bool


@dataclass(frozen=True)
class SoupResult:
    """The combined model's run folder, its ingredients and scores; `to_dict()` is its
    metrics.json."""

    run_dir: Path
    # The soup's Hugging Face folder (RUN/best); None for an ensemble, whose members are in
    # RUN/members (export takes the run folder either way).
    best_dir: Path | None
    metric: str
    # "uniform" or "greedy" (weights averaged), or "ensemble" (predictions averaged).
    method: str
    ingredients: list[SoupIngredient]
    # On the validation split (fp32), for the runs used: their weights averaged (the soup:
    # at least the best run's for greedy) and their probabilities averaged (the ensemble, one
    # forward pass per run and row). None for runs trained with --validation-fraction 0.
    soup_validation_score: float | None
    ensemble_validation_score: float | None
    validation_rows: int
    label_names: list[str]
    test: ClassificationMetrics | None
    created: str

    @property
    def used(self) -> list[SoupIngredient]:
        return [i for i in self.ingredients if i.used]

    @property
    def validation_score(self) -> float | None:
        """The validation score of the model this run folder holds."""
        if self.method == "ensemble":
            return self.ensemble_validation_score
        return self.soup_validation_score

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "kind": "soup",
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
    greedy: bool = False,
    ensemble: bool = False,
    test_file: Path | None = None,
) -> SoupResult:
    """Average the best weights (or, with `ensemble`, the predictions) of `runs` into a new
    run folder `output_dir`.

    Args:
        runs: newsclf run folders, trained from the same model on the same data and
            validation split (same train file or dataset, validation fraction and seed).
        output_dir: the new run folder; must not hold a finished run.
        greedy: greedy soup (ingredients kept only when they help on validation) instead of
            the average of every run (uniform soup).
        ensemble: keep every run and average their class probabilities (one forward pass per
            run and row) instead of their weights.
        test_file: labelled rows for the final report only.

    Returns:
        `SoupResult`: ingredients with their validation scores, the soup's and the
        ensemble's, and test metrics.

    Raises:
        InputError: fewer than two runs, runs that differ in data, labels or preprocessing,
            greedy with ensemble, or an output folder that holds a finished run.
        ModelError: runs whose weights have different names or shapes.
    """
    runs = [Path(r) for r in runs]
    output_dir = Path(output_dir)
    if len(runs) < 2:
        raise InputError("newsclf soup needs at least two run folders.")
    if greedy and ensemble:
        raise InputError("--greedy chooses runs for a weight average; --ensemble keeps them all.")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise InputError(f"{output_dir} is not empty; choose a new --output-dir for the soup.")
    hf_logging.disable_progress_bar()  # the caller reports progress; the bars would repeat it
    configs = [_run_config(r) for r in runs]
    metric = configs[0].metric
    pre = PreprocessingConfig.load(runs[0] / BEST_DIR)
    _check_same(runs, configs, pre)
    data = load_training_data(replace(configs[0], test_file=test_file))
    tokenizer = AutoTokenizer.from_pretrained(str(runs[0] / BEST_DIR))
    models = [_load_model(r) for r in runs]
    _check_compatible(runs, models, data.label_names)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer = models[0].to(device)
    batch = configs[0].eval_batch_size

    def probabilities(weights: dict[str, torch.Tensor]) -> np.ndarray:
        """The validation rows' class probabilities under `weights` (fp32)."""
        scorer.load_state_dict(weights)
        logits = predict_logits(scorer, tokenizer, data.validation.texts, batch, pre.max_length)
        return torch.from_numpy(logits).softmax(-1).numpy()

    def metric_of(probs: np.ndarray) -> float:
        scores = classification_metrics(
            data.validation.labels, np.argmax(probs, axis=-1), data.label_names
        )
        return float(getattr(scores, metric))

    snapshots = [WeightSnapshot(0, _cpu_weights(m)) for m in models]
    if len(data.validation):
        choice = _choose(snapshots, greedy, probabilities, metric_of)
    elif greedy:
        raise InputError(
            "--greedy chooses runs on the validation split, and these runs have none "
            "(--validation-fraction 0); a uniform soup needs none."
        )
    else:
        choice = _Choice([None] * len(runs), list(range(len(runs))), None, None)
    if ensemble:
        for model, snapshot in zip(models, snapshots, strict=True):
            model.load_state_dict(snapshot.weights)  # the scorer held other weights meanwhile
        combined: torch.nn.Module = PredictionEnsemble(models).to(device)
    else:
        scorer.load_state_dict(average_weights([snapshots[i] for i in choice.chosen]))
        combined = scorer

    test = None
    if data.test is not None:
        logits = predict_logits(combined, tokenizer, data.test.texts, batch, pre.max_length)
        test = classification_metrics(
            data.test.labels, np.argmax(logits, axis=-1), data.label_names
        )
    result = SoupResult(
        run_dir=output_dir,
        best_dir=None if ensemble else output_dir / BEST_DIR,
        metric=metric,
        method="ensemble" if ensemble else "greedy" if greedy else "uniform",
        ingredients=[
            SoupIngredient(run_dir=r, validation_score=choice.alone[i], used=i in choice.chosen)
            for i, r in enumerate(runs)
        ],
        soup_validation_score=choice.soup,
        ensemble_validation_score=choice.ensemble,
        validation_rows=len(data.validation),
        label_names=data.label_names,
        test=test,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _write_run_folder(result, combined, tokenizer, pre, runs)
    return result


@dataclass(frozen=True)
class _Choice:
    # Each run alone, the runs chosen, the soup of those and their ensemble, on validation.
    alone: list[float | None]
    chosen: list[int]
    soup: float | None
    ensemble: float | None


def _choose(
    snapshots: list[WeightSnapshot],
    greedy: bool,
    probabilities: Callable[[dict[str, torch.Tensor]], np.ndarray],
    metric_of: Callable[[np.ndarray], float],
) -> _Choice:
    """Every run (uniform), or greedily from the best run on: each next-best run joins only if
    the average with it scores at least as well on validation."""
    each = [probabilities(s.weights) for s in snapshots]
    scores = [metric_of(p) for p in each]
    order = sorted(range(len(snapshots)), key=lambda i: -scores[i])
    if greedy:
        chosen = [order[0]]
        soup = scores[order[0]]
        for index in order[1:]:
            weights = average_weights([snapshots[i] for i in [*chosen, index]])
            candidate = metric_of(probabilities(weights))
            if candidate >= soup:
                chosen.append(index)
                soup = candidate
    else:
        chosen = order
        soup = metric_of(probabilities(average_weights(snapshots)))
    ensemble = metric_of(np.mean([each[i] for i in chosen], axis=0))
    alone: list[float | None] = list(scores)
    return _Choice(alone, chosen, soup, ensemble)


def soup_card(result: SoupResult) -> str:
    """The soup's model card: what went in, how each scored, how to use it."""
    what = (
        f"The ensemble of {len(result.used)} runs (their class probabilities averaged, one "
        "forward pass per run and row); each run alone on validation "
        if result.method == "ensemble"
        else f"The {result.method} average of {len(result.used)} of {len(result.ingredients)} "
        f"runs' best weights, chosen on validation "
    )
    lines = [
        "# newsclf soup",
        "",
        f"{what}{result.metric} ({result.validation_rows:,} rows):",
        "",
    ]
    for item in result.ingredients:
        mark = "used" if item.used else "left out"
        lines.append(f"- {item.run_dir}: {_pct(item.validation_score)} ({mark})")
    lines += [
        "",
        f"Validation {result.metric}: the weights averaged (soup) "
        f"{_pct(result.soup_validation_score)}, the predictions averaged (ensemble, "
        f"{len(result.used)} forward passes per row) {_pct(result.ensemble_validation_score)}; "
        f"this folder holds the {'ensemble' if result.method == 'ensemble' else 'soup'}.",
    ]
    if result.test:
        lines.append(
            f"Test accuracy {100 * result.test.accuracy:.2f}%, macro-F1 "
            f"{100 * result.test.f1_macro:.2f}% ({result.test.rows:,} rows)."
        )
    lines += [
        "",
        "```",
        f"newsclf export --onnx --checkpoint {result.run_dir}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _save_model_folder(
    folder: Path, model: torch.nn.Module, tokenizer: Any, pre: PreprocessingConfig
) -> None:
    folder.mkdir(parents=True)
    model.save_pretrained(str(folder))  # type: ignore[operator]
    tokenizer.save_pretrained(str(folder))
    pre.save(folder)


def _pct(value: float | None) -> str:
    return "n/a (no validation split)" if value is None else f"{100 * value:.2f}%"


def _run_config(run: Path) -> TrainingConfig:
    if not (run / BEST_DIR / "config.json").is_file() or not (run / CONFIG_FILE).is_file():
        raise InputError(f"{run} is not a finished newsclf run (no {BEST_DIR}/ or {CONFIG_FILE}).")
    return TrainingConfig.load(run / CONFIG_FILE)


def _check_same(
    runs: list[Path], configs: list[TrainingConfig], first_pre: PreprocessingConfig
) -> None:
    first = configs[0]
    for run, config in zip(runs[1:], configs[1:], strict=True):
        for name in _SAME_DATA:
            if getattr(config, name) != getattr(first, name):
                raise InputError(
                    f"{run} and {runs[0]} differ in {name} ({getattr(config, name)!r} vs "
                    f"{getattr(first, name)!r}): a soup needs runs from the same model, data "
                    "and validation split."
                )
        pre = PreprocessingConfig.load(run / BEST_DIR)
        if pre != first_pre:
            raise InputError(f"{run} and {runs[0]} preprocess text differently.")
        if config.metric != first.metric:
            raise InputError(
                f"{run} chose its checkpoint on {config.metric}, {runs[0]} on {first.metric}."
            )


def _load_model(run: Path) -> torch.nn.Module:
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(run / BEST_DIR), dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load {run / BEST_DIR}: {exc}") from exc


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


def _write_run_folder(
    result: SoupResult,
    model: torch.nn.Module,
    tokenizer: Any,
    pre: PreprocessingConfig,
    runs: list[Path],
) -> None:
    """Everything goes to a hidden folder first, renamed into place at the end: an interrupted
    soup leaves no run folder that looks finished."""
    target = result.run_dir
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if isinstance(model, PredictionEnsemble):
        names = [str(i) for i in range(len(model.members))]
        for name, member in zip(names, model.members, strict=True):
            _save_model_folder(staging / MEMBERS_DIR / name, member, tokenizer, pre)
        description = {"members": names, "runs": [str(r) for r in runs]}
        write_json_atomic(staging / ENSEMBLE_FILE, description)
    else:
        _save_model_folder(staging / BEST_DIR, model, tokenizer, pre)
    # The ingredients share one validation split, so the first run's sample is the soup's too.
    shutil.copyfile(runs[0] / PARITY_SAMPLE_FILE, staging / PARITY_SAMPLE_FILE)
    write_json_atomic(staging / METRICS_FILE, result.to_dict())
    write_text_atomic(staging / MODEL_CARD_FILE, soup_card(result))
    if target.exists():
        target.rmdir()  # checked empty before the work began
    staging.rename(target)
