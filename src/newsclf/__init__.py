"""newsclf: fine-tune BERT on news topics, export to ONNX with proven parity, classify fast.

    from newsclf import Classifier, ExportConfig, TrainingConfig, export_onnx, train

    run = train(TrainingConfig(model="embedded", train_file="train.csv", test_file="test.csv"))
    export = export_onnx(run.run_dir, config=ExportConfig())  # fp16 and the CPU variant
    Classifier(export.output_dir).predict(["Stocks rally as rates fall"]).labels

Names are imported on first use, so `import newsclf` stays light (no torch, no CUDA).
"""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__version__ = "0.3.0"

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        # training
        "TrainingConfig": "training",
        "train": "training",
        "NewsTrainer": "training",
        "TrainResult": "training",
        "TrainingPlan": "training",
        # tuning, combining and distilling runs
        "TuneConfig": "tuning",
        "TuneResult": "tuning",
        "tune": "tuning",
        "make_soup": "combine",
        "SoupResult": "combine",
        "PredictionEnsemble": "combine",
        "DistillConfig": "distillation",
        "DistillResult": "distillation",
        "distill": "distillation",
        # export
        "ExportConfig": "export",
        "ExportResult": "export",
        "export_onnx": "export",
        # inference
        "Classifier": "inference",
        "ClassifierConfig": "inference",
        "ClassifierInfo": "inference",
        "Predictions": "inference",
        "ClassifyConfig": "inference",
        "ClassifyResult": "inference",
        "classify_file": "inference",
        # Ray
        "RayConfig": "integrations.ray",
        "RayClassifyResult": "integrations.ray",
        "classify_with_ray": "integrations.ray",
        # formats and shared types
        "PreprocessingConfig": "artifacts",
        "ExportFolder": "artifacts",
        "RunFolder": "artifacts",
        "ClassificationMetrics": "metrics",
        # errors, each with its exit code
        "NewsclfError": "errors",
        "InputError": "errors",
        "ModelError": "errors",
        "OfflineError": "errors",
        "ParityError": "errors",
        "ProviderError": "errors",
        "SearchError": "errors",
    },
)

if TYPE_CHECKING:
    from newsclf.artifacts import ExportFolder, PreprocessingConfig, RunFolder
    from newsclf.combine import PredictionEnsemble, SoupResult, make_soup
    from newsclf.distillation import DistillConfig, DistillResult, distill
    from newsclf.errors import (
        InputError,
        ModelError,
        NewsclfError,
        OfflineError,
        ParityError,
        ProviderError,
        SearchError,
    )
    from newsclf.export import ExportConfig, ExportResult, export_onnx
    from newsclf.inference import (
        Classifier,
        ClassifierConfig,
        ClassifierInfo,
        ClassifyConfig,
        ClassifyResult,
        Predictions,
        classify_file,
    )
    from newsclf.integrations.ray import RayClassifyResult, RayConfig, classify_with_ray
    from newsclf.metrics import ClassificationMetrics
    from newsclf.training import NewsTrainer, TrainingConfig, TrainingPlan, TrainResult, train
    from newsclf.tuning import TuneConfig, TuneResult, tune
