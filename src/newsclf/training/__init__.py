"""Fine-tuning: the recipe (`TrainingConfig`), the data, the hardware choices and `NewsTrainer`,
which writes a run folder and returns a `TrainResult`."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "TrainingConfig": "config",
        "DEFAULT_MODEL": "config",
        "DEFAULT_DATASET": "config",
        "EMBEDDED_MODEL": "config",
        "Metric": "config",
        "Precision": "config",
        "LabeledTexts": "data",
        "TrainingData": "data",
        "load_training_data": "data",
        "load_local_data": "data",
        "HardwareSetup": "hardware",
        "hardware_setup": "hardware",
        "world_size": "hardware",
        "is_main_process": "hardware",
        "embedded_model_dir": "hub",
        "resolve_model": "hub",
        "predict_logits": "predict",
        "evaluate": "predict",
        "rdrop_loss": "losses",
        "rdrop": "losses",
        "LossFunction": "losses",
        "StepPlan": "results",
        "TrainingPlan": "results",
        "TrainResult": "results",
        "NewsTrainer": "trainer",
        "StepClock": "trainer",
        "TokenizedTexts": "trainer",
        "train": "trainer",
        "default_run_dir": "trainer",
    },
)

if TYPE_CHECKING:
    from newsclf.training.config import (
        DEFAULT_DATASET,
        DEFAULT_MODEL,
        EMBEDDED_MODEL,
        Metric,
        Precision,
        TrainingConfig,
    )
    from newsclf.training.data import (
        LabeledTexts,
        TrainingData,
        load_local_data,
        load_training_data,
    )
    from newsclf.training.hardware import (
        HardwareSetup,
        hardware_setup,
        is_main_process,
        world_size,
    )
    from newsclf.training.hub import embedded_model_dir, resolve_model
    from newsclf.training.losses import LossFunction, rdrop, rdrop_loss
    from newsclf.training.predict import evaluate, predict_logits
    from newsclf.training.results import StepPlan, TrainingPlan, TrainResult
    from newsclf.training.trainer import (
        NewsTrainer,
        StepClock,
        TokenizedTexts,
        default_run_dir,
        train,
    )
