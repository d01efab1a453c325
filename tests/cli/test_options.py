"""Each option is defined once, in its config dataclass: `train` and `tune` show and parse the
same training options, the command `tune` prints recreates the config, help is grouped and
plain text, and an option a command cannot honour is an error."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from newsclf.artifacts import PreprocessingConfig
from newsclf.cli import app
from newsclf.training import NewsTrainer, TrainingConfig
from newsclf.tuning import SEARCHED, train_command


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


def _capture_training(monkeypatch: pytest.MonkeyPatch) -> list[TrainingConfig]:
    captured: list[TrainingConfig] = []

    class Capture(NewsTrainer):
        def train(self, on_start: Any = None) -> Any:
            captured.append(self.config)
            raise SystemExit(0)

    monkeypatch.setattr("newsclf.cli.train.NewsTrainer", Capture)
    return captured


def test_train_and_tune_show_every_training_option_from_the_config() -> None:
    train_help, tune_help = _help("train"), _help("tune")
    specs = TrainingConfig.option_specs()
    assert {s.name for s in specs} >= {"learning_rate", "clean", "text_columns", "rdrop"}
    for spec in specs:
        flag = spec.flag.split("/")[0]
        assert flag in train_help, flag
        assert spec.help.split(".")[0] in train_help, spec.name  # the config's own help
        if spec.name not in (*SEARCHED, "resume"):
            assert flag in tune_help, flag
    # The searched parameters are ranges in tune, not train's single values.
    assert "--lr-range" in tune_help and "--learning-rate " not in tune_help


def test_the_printed_train_command_recreates_every_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every training option set away from its default goes through `train_command` and the
    command line back to the same TrainingConfig."""
    config = TrainingConfig(
        model="embedded",
        dataset="someone/news",
        train_file=tmp_path / "train data.csv",
        validation_file=tmp_path / "validation.csv",
        test_file=tmp_path / "test.csv",
        output_dir=tmp_path / "run",
        learning_rate=3.1622776601683795e-05,
        batch_size=16,
        eval_batch_size=8,
        epochs=2.5,
        weight_decay=0.02,
        grad_accum=1,
        warmup_ratio=0.1,
        patience=3,
        eval_steps=50,
        metric="accuracy",
        validation_fraction=0.1,
        seed=7,
        train_seed=3,
        max_train_samples=1000,
        precision="fp32",
        group_by_length=False,
        merge_accumulation=False,
        rdrop=1.0,
        preprocessing=PreprocessingConfig(
            clean=False, max_length=64, text_columns=["title", "description"], label_column="y"
        ),
    )
    default = TrainingConfig()
    changed = [
        s.name
        for s in TrainingConfig.option_specs()
        if s.name != "resume"
        and getattr(config, s.name, getattr(config.preprocessing, s.name, None))
        == getattr(default, s.name, getattr(default.preprocessing, s.name, None))
    ]
    assert changed == [], f"the test leaves {changed} at their default"
    command = train_command(config)
    captured = _capture_training(monkeypatch)
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert captured == [config]


def test_help_is_grouped_and_plain_text() -> None:
    text = _help("classify")
    for panel in ("Input and output", "Runtime", "Reports", "Ray (--engine ray)"):
        assert panel in text
    assert "pip install 'newsclf[ray]'" in text  # not eaten as markup
    assert all(panel in _help("train") for panel in ("Data", "Recipe", "Hardware"))


def test_options_a_command_cannot_honour_are_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "in.csv"
    data.write_text("text\nhello\n", encoding="utf-8")
    local = runner.invoke(app, ["classify", str(data), "--workers", "2"])
    assert local.exit_code == 2 and "--engine ray" in local.output
    ray = runner.invoke(
        app, ["classify", str(data), "--engine", "ray", "--threads", "2", "--model", str(tmp_path)]
    )
    assert ray.exit_code == 2 and "--threads-per-worker" in ray.output
    # Beside --resume, an option is refused even when it names its default value.
    for value in ("1e-3", "2e-05"):
        resumed = runner.invoke(
            app, ["train", "--resume", "--output-dir", str(tmp_path), "--learning-rate", value]
        )
        assert resumed.exit_code == 2 and "--learning-rate" in resumed.output
        assert "saved configuration" in " ".join(resumed.output.split())
