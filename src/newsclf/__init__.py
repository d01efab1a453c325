"""newsclf: fine-tune BERT on news topics, export to ONNX with proven parity, classify fast.

    from newsclf import Classifier, TrainingConfig, train, export_onnx

    run = train(TrainingConfig(model="embedded", train_file="train.csv", test_file="test.csv"))
    export = export_onnx(run.run_dir, config=ExportConfig(quantize="int8"))
    clf = Classifier(export.output_dir)
    clf.predict(["Stocks rally as rates fall"]).labels

Names are imported on first use, so `import newsclf` stays light (no torch, no CUDA).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Public name -> module that defines it.
_EXPORTS = {
    "Classifier": "newsclf.classifier",
    "Predictions": "newsclf.classifier",
    "ClassifierInfo": "newsclf.classifier",
    "classify_file": "newsclf.classify",
    "ClassifyResult": "newsclf.classify",
    "train": "newsclf.training",
    "NewsTrainer": "newsclf.training",
    "TrainResult": "newsclf.training",
    "TrainingPlan": "newsclf.training",
    "export_onnx": "newsclf.export",
    "ExportResult": "newsclf.export",
    "ExportFolder": "newsclf.export_folder",
    "make_soup": "newsclf.soup",
    "SoupResult": "newsclf.soup",
    "PredictionEnsemble": "newsclf.ensemble",
    "TrainingConfig": "newsclf.config",
    "PreprocessingConfig": "newsclf.config",
    "ExportConfig": "newsclf.config",
    "ClassifierConfig": "newsclf.config",
    "ClassifyConfig": "newsclf.config",
    "ClassificationMetrics": "newsclf.metrics",
    "NewsclfError": "newsclf.errors",
    "InputError": "newsclf.errors",
    "ModelError": "newsclf.errors",
    "OfflineError": "newsclf.errors",
    "ParityError": "newsclf.errors",
    "ProviderError": "newsclf.errors",
}
__all__ = [
    "ClassificationMetrics",
    "Classifier",
    "ClassifierConfig",
    "ClassifierInfo",
    "ClassifyConfig",
    "ClassifyResult",
    "ExportConfig",
    "ExportFolder",
    "ExportResult",
    "InputError",
    "ModelError",
    "NewsTrainer",
    "NewsclfError",
    "OfflineError",
    "ParityError",
    "PredictionEnsemble",
    "Predictions",
    "PreprocessingConfig",
    "ProviderError",
    "SoupResult",
    "TrainResult",
    "TrainingConfig",
    "TrainingPlan",
    "classify_file",
    "export_onnx",
    "make_soup",
    "train",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'newsclf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from newsclf.classifier import Classifier, ClassifierInfo, Predictions
    from newsclf.classify import ClassifyResult, classify_file
    from newsclf.config import (
        ClassifierConfig,
        ClassifyConfig,
        ExportConfig,
        PreprocessingConfig,
        TrainingConfig,
    )
    from newsclf.errors import (
        InputError,
        ModelError,
        NewsclfError,
        OfflineError,
        ParityError,
        ProviderError,
    )
    from newsclf.export import ExportResult, export_onnx
    from newsclf.export_folder import ExportFolder
    from newsclf.metrics import ClassificationMetrics
    from newsclf.soup import SoupResult, make_soup
    from newsclf.training import NewsTrainer, TrainingPlan, TrainResult, train
