"""`newsclf tune`: an Optuna search over the training recipe, on training data only."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "TuneConfig": "config",
        "Sampler": "config",
        "SEARCHED": "config",
        "tune": "search",
        "TuneResult": "search",
        "TrialRecord": "search",
        "train_command": "search",
        "best_training_config": "search",
        "load_search_data": "search",
        "trials_csv": "search",
    },
)

if TYPE_CHECKING:
    from newsclf.tuning.config import SEARCHED, Sampler, TuneConfig
    from newsclf.tuning.search import (
        TrialRecord,
        TuneResult,
        best_training_config,
        load_search_data,
        train_command,
        trials_csv,
        tune,
    )
