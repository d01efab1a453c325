"""Every configuration dataclass validates itself, round-trips through JSON and gives the
command line its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsclf.artifacts import PreprocessingConfig
from newsclf.errors import InputError
from newsclf.export import ExportConfig
from newsclf.inference import ClassifierConfig, ClassifyConfig
from newsclf.training import TrainingConfig

# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainingConfig(batch_size=0), "--batch-size must be positive"),
        (lambda: TrainingConfig(metric="auc"), "--metric must be one of accuracy"),  # type: ignore[arg-type]
        (lambda: TrainingConfig(precision="fp8"), "--precision must be one of auto"),  # type: ignore[arg-type]
        (lambda: TrainingConfig(warmup_ratio=1.5), "--warmup-ratio"),
        (lambda: TrainingConfig(validation_fraction=1.0), "--validation-fraction"),
        (lambda: PreprocessingConfig(max_length=0), "--max-length must be positive"),
        (lambda: ExportConfig(variants=["int4"]), "--variants must be one of fp32"),
        (lambda: ExportConfig(variants=["+int8", "fp16"]), "not both"),
        (lambda: ExportConfig(variants=["-fp32"]), "always made"),
        (lambda: ExportConfig(device="tpu"), "--device must be one of"),  # type: ignore[arg-type]
        (lambda: ClassifierConfig(max_batch_tokens=-1), "--max-batch-tokens must be positive"),
        (lambda: ClassifyConfig(on_error="ignore"), "--on-error must be one of raise, skip"),  # type: ignore[arg-type]
    ],
)
def test_configs_validate_themselves(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        make()


def test_training_config_round_trips_and_refuses_unknown_keys(tmp_path: Path) -> None:
    config = TrainingConfig(
        model="embedded",
        train_file=Path("a.csv"),
        learning_rate=5e-5,
        preprocessing=PreprocessingConfig(max_length=64, text_columns=["title", "description"]),
    )
    path = config.save(tmp_path / "train_config.json")
    loaded = TrainingConfig.load(path)
    # Saved with absolute paths: --resume and soup work from any folder.
    assert loaded == config.absolute() and loaded.train_file == Path("a.csv").absolute()
    assert isinstance(loaded.preprocessing, PreprocessingConfig)
    with pytest.raises(InputError, match=r"unknown setting.*learning_rat"):
        TrainingConfig.from_dict({"learning_rat": 1e-3})


def test_defaults_are_held_once_and_the_cli_agrees() -> None:
    import inspect

    from newsclf.artifacts import PARITY_ROWS
    from newsclf.cli.export import export

    parameters = inspect.signature(export).parameters
    assert parameters["device"].default == ExportConfig().device == "auto"
    assert parameters["opset"].default == ExportConfig().opset
    assert ExportConfig().parity_rows == PARITY_ROWS
