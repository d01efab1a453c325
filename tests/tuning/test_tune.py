"""newsclf tune: a real tiny search (study, best.json, trials.csv), resume, pruning, fresh early
stopping per trial, the test split never reaching a trial, and the CLI."""

from __future__ import annotations

import csv
import json
import re
import shlex
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import newsclf.training.data
import newsclf.training.predict
import newsclf.training.trainer
from newsclf.cli import app
from newsclf.errors import InputError, SearchError
from newsclf.training import NewsTrainer, TrainingConfig, load_local_data
from newsclf.tuning import SEARCHED, TuneConfig, best_training_config, train_command, tune
from tests.conftest import SAMPLE_DIR, sample_rows, tiny_training_config, write_csv

pytest.importorskip("optuna")


def _search(model_dir: Path, run_dir: Path, *, trials: int = 2, **overrides: Any) -> TuneConfig:
    """A tiny search: 64 training rows, 1-2 epochs of 4 steps, every knob small."""
    recipe = {"max_train_samples": 64, "eval_steps": 0, "patience": 1, "precision": "fp32"}
    training = tiny_training_config(
        model_dir, run_dir, **{**recipe, **overrides.pop("training", {})}
    )
    settings: dict[str, Any] = {
        "training": training,
        "trials": trials,
        "sampler": "random",
        "learning_rate": (1e-3, 5e-3),
        "batch_size": (16, 32),
        "epochs": (1, 2),
        "weight_decay": (0.0, 0.1),
        "warmup_ratio": (0.0, 0.1),
    }
    settings.update(overrides)
    return TuneConfig(**settings)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _study_trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_tiny_search_writes_study_best_and_trials_and_never_sees_the_test_split(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files_read: list[Path] = []
    real_read_table = newsclf.training.data.read_table

    def recording_read_table(path: Any, *args: Any, **kwargs: Any) -> Any:
        files_read.append(Path(path))
        return real_read_table(path, *args, **kwargs)

    trial_texts: list[list[str]] = []
    real_tokenized = newsclf.training.trainer.TokenizedTexts.__init__

    def recording_tokenized(self: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        trial_texts.append(list(data.texts))
        real_tokenized(self, data, *args, **kwargs)

    def no_test_predictions(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a trial evaluated a test split")

    monkeypatch.setattr(newsclf.training.data, "read_table", recording_read_table)
    monkeypatch.setattr(newsclf.training.trainer.TokenizedTexts, "__init__", recording_tokenized)
    monkeypatch.setattr(newsclf.training.predict, "predict_logits", no_test_predictions)

    # A test file whose every row carries a marker no training row has.
    test_file = write_csv(
        tmp_path / "test.csv",
        ["label", "title", "description"],
        [
            [row["label"], f"testonlyrow{i} {row['title']}", row["description"]]
            for i, row in enumerate(sample_rows("test.csv"))
        ],
    )
    config = _search(tiny_bert_dir, tmp_path / "run", trials=2, training={"test_file": test_file})
    seen: list[int] = []
    result = tune(config, on_trial=lambda record: seen.append(record.number))

    tune_dir = tmp_path / "run" / "tune"
    assert [state for _, state in _study_trials(tune_dir / "study.db")] == ["COMPLETE"] * 2
    trials = _rows(tune_dir / "trials.csv")
    assert [row["number"] for row in trials] == ["0", "1"]
    assert all(row["state"] == "complete" and float(row["value"]) > 0 for row in trials)
    best = json.loads((tune_dir / "best.json").read_text())
    values = [float(row["value"]) for row in trials]
    assert best["value"] == pytest.approx(max(values)) == pytest.approx(result.best_value)
    assert best["trial"] == result.best_trial == values.index(max(values))
    assert set(best["params"]) == set(SEARCHED) and best["metric"] == "f1_macro"
    assert best["params"] == result.best_params
    assert 1e-3 <= best["params"]["learning_rate"] <= 5e-3
    assert best["params"]["batch_size"] in (16, 32) and best["params"]["epochs"] in (1, 2)
    assert result.states == {"complete": 2} and sorted(set(seen)) == [0, 1]

    # The test file was never read, and no text a trial trained or validated on is a test
    # row: each is a training row, from the same train/validation split as `newsclf train`.
    assert files_read and test_file not in files_read
    split = load_local_data(
        SAMPLE_DIR / "train.csv",
        None,
        None,
        text_columns=[],
        label_column="label",
        clean=True,
        separator=" ",
        validation_fraction=0.1,
        seed=42,
    )
    assert len(trial_texts) == 4  # train and validation, for each of the two trials
    for texts in trial_texts:
        assert texts and not any("testonlyrow" in text for text in texts)
    for train_texts, validation_texts in (trial_texts[:2], trial_texts[2:]):
        assert train_texts == split.train.texts[:64] and validation_texts == split.validation.texts

    # Only the best trial keeps a model; the others keep their config and metrics.
    kept = sorted(p.parent.name for p in (tune_dir / "trials").glob("*/best"))
    assert kept == [f"{result.best_trial:03d}"]
    assert len(list((tune_dir / "trials").glob("*/metrics.json"))) == 2
    assert not list((tune_dir / "trials").glob("*/checkpoints"))
    assert (
        "--test-file" in result.train_command and "--max-train-samples" not in result.train_command
    )


def test_resume_adds_trials_to_the_same_study(tiny_bert_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(InputError, match="--resume"):
        tune(_search(tiny_bert_dir, run_dir, trials=1, resume=True))
    first = tune(_search(tiny_bert_dir, run_dir, trials=1))
    assert first.states == {"complete": 1}
    with pytest.raises(InputError, match="already holds a search"):
        tune(_search(tiny_bert_dir, run_dir, trials=1))

    resumed = tune(_search(tiny_bert_dir, run_dir, trials=2, resume=True))
    assert _study_trials(run_dir / "tune" / "study.db") == [(0, "COMPLETE"), (1, "COMPLETE")]
    assert [r.number for r in resumed.trials] == [0, 1]
    assert resumed.trials[0] == first.trials[0]
    assert len(_rows(run_dir / "tune" / "trials.csv")) == 2
    # The reseeded sampler proposes a new point instead of replaying the first session's.
    assert resumed.trials[1].params["learning_rate"] != first.trials[0].params["learning_rate"]
    # Already at its target: nothing more runs.
    again = tune(_search(tiny_bert_dir, run_dir, trials=2, resume=True))
    assert again.trials == resumed.trials


def test_a_clearly_worse_trial_is_pruned(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # Trial 0 learns (lr 3e-3); trial 1 cannot (lr 0: the random model's metric), so against
    # the median of one finished trial it is pruned at the first evaluation where trial 0 had
    # done better, before its last evaluation, and keeps no model.
    prune = {"pruning": True, "prune_startup_trials": 1, "prune_from_evaluation": 1}
    run_dir = tmp_path / "run"
    fixed = {"batch_size": 16, "epochs": 3, "weight_decay": 0.0, "warmup_ratio": 0.0}
    training = {"max_train_samples": 160, "patience": 3}
    good = tune(
        _search(
            tiny_bert_dir,
            run_dir,
            trials=1,
            fixed={**fixed, "learning_rate": 3e-3},
            training=training,
            **prune,
        )
    )
    assert good.states == {"complete": 1} and good.trials[0].evaluations == 3
    result = tune(
        _search(
            tiny_bert_dir,
            run_dir,
            trials=2,
            fixed={**fixed, "learning_rate": 0.0},
            training=training,
            resume=True,
            **prune,
        )
    )
    pruned = result.trials[1]
    assert pruned.state == "pruned" and 1 <= pruned.evaluations < 3  # before its last one
    good_history = json.loads((run_dir / "tune" / "trials" / "000" / "metrics.json").read_text())
    good_value = good_history["validation"][pruned.evaluations - 1]["f1_macro"]
    assert pruned.value is not None and pruned.value < good_value
    assert "below the median" in pruned.note
    assert result.best_trial == 0 and result.states == {"complete": 1, "pruned": 1}
    row = _rows(run_dir / "tune" / "trials.csv")[1]
    assert row["state"] == "pruned" and row["value"] == ""
    assert row["evaluations"] == str(pruned.evaluations)
    assert not (run_dir / "tune" / "trials" / "001" / "best").exists()
    assert (run_dir / "tune" / "trials" / "000" / "best" / "config.json").is_file()


def test_each_trial_starts_early_stopping_afresh(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # lr 0 never improves after the first evaluation: with patience 1 every trial must stop at
    # its second evaluation. A patience counter carried over would stop trial 1 at its first.
    config = _search(
        tiny_bert_dir,
        tmp_path / "run",
        trials=2,
        fixed={"learning_rate": 0.0, "batch_size": 16, "epochs": 4},
        pruning=False,
        training={"eval_steps": 2},
    )
    result = tune(config)
    assert [(r.state, r.evaluations) for r in result.trials] == [("complete", 2)] * 2
    for number in (0, 1):
        metrics = json.loads(
            (tmp_path / "run" / "tune" / "trials" / f"{number:03d}" / "metrics.json").read_text()
        )
        assert metrics["stopped_early"] is True and metrics["steps"] == 4


def test_a_search_where_every_trial_fails_says_so_and_exits_non_zero(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr("newsclf.training.trainer.NewsTrainer.train", out_of_memory)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--model",
            str(tiny_bert_dir),
            "--train-file",
            str(SAMPLE_DIR / "train.csv"),
            "--output-dir",
            str(run_dir),
            "--trials",
            "2",
        ],
    )
    assert result.exit_code == SearchError.exit_code == 7
    text = re.sub(r"\s+", " ", result.output)
    assert "No trial completed (2 fail)" in text and "simulated" in text
    assert [row["state"] for row in _rows(run_dir / "tune" / "trials.csv")] == ["fail", "fail"]
    assert not (run_dir / "tune" / "best.json").exists()

    # --resume takes the saved settings (without them: the hub dataset, offline, exit 4).
    resumed = CliRunner().invoke(
        app, ["tune", "--resume", "--output-dir", str(run_dir), "--trials", "1"]
    )
    assert resumed.exit_code == 7, resumed.output
    assert "saved settings" in resumed.output and "(3 fail)" in resumed.output
    assert len(_rows(run_dir / "tune" / "trials.csv")) == 3


def test_cli_tune_then_train_best_and_the_printed_command_is_that_recipe(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    args = [
        "tune",
        "--model",
        str(tiny_bert_dir),
        "--train-file",
        str(SAMPLE_DIR / "train.csv"),
        "--test-file",
        str(SAMPLE_DIR / "test.csv"),
        "--output-dir",
        str(run_dir),
        "--trials",
        "2",
        "--max-train-samples",
        "48",
        "--max-length",
        "64",
        "--grad-accum",
        "1",
        "--precision",
        "fp32",
        "--sampler",
        "grid",
        "--lr-range",
        "1e-3",
        "3e-3",
        "--batch-sizes",
        "16",
        "--epochs-range",
        "1",
        "1",
        "--fix",
        "weight_decay=0.01",
        "--warmup-range",
        "0",
        "0",
        "--grid-points",
        "2",
        "--train-best",
    ]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", result.output)
    assert "Trials (validation f1_macro)" in text and "best trial" in text
    best = json.loads((run_dir / "tune" / "best.json").read_text())
    assert best["searched"] == ["learning_rate"]
    assert best["params"]["learning_rate"] in (1e-3, 3e-3)  # the grid's two ends
    assert best["params"]["weight_decay"] == 0.01 and best["params"]["batch_size"] == 16

    # --train-best trained the best recipe on all rows into the run dir, with the test report.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["learning_rate"] == best["params"]["learning_rate"]
    assert metrics["config"]["max_train_samples"] is None
    assert metrics["data"]["train_rows"] > 48 and metrics["test"]["rows"] == 100
    assert (run_dir / "best" / "config.json").is_file()

    # The printed command builds exactly the configuration --train-best ran.
    command = best["train_command"]
    assert command in result.output  # on one line, to copy
    saved = TuneConfig.load(run_dir / "tune" / "tune_config.json")
    expected = best_training_config(saved, best["params"])
    captured: list[TrainingConfig] = []

    class Capture(NewsTrainer):
        def train(self, on_start: Any = None) -> Any:
            captured.append(self.config)
            raise SystemExit(0)

    monkeypatch.setattr("newsclf.cli.train.NewsTrainer", Capture)
    CliRunner().invoke(app, shlex.split(command)[1:])
    assert captured == [expected]
    assert TrainingConfig.load(run_dir / "train_config.json") == expected


def test_tune_config_validates_and_fixes() -> None:
    with pytest.raises(InputError, match="low <= high"):
        TuneConfig(learning_rate=(1e-4, 1e-5))
    with pytest.raises(InputError, match="log-uniform"):
        TuneConfig(learning_rate=(0.0, 1e-4))
    with pytest.raises(InputError, match="Cannot fix dropout"):
        TuneConfig(fixed={"dropout": 0.1})
    with pytest.raises(InputError, match="--warmup-ratio"):
        TuneConfig(warmup_ratio=(0.0, 1.5))
    with pytest.raises(InputError, match="--sampler"):
        TuneConfig(sampler="bayes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="validation metric"):
        TuneConfig(training=TrainingConfig(validation_fraction=0.0))
    config = TuneConfig(epochs=(3, 3), batch_size=(32,), fixed={"learning_rate": 5e-5})
    assert config.fixed_params() == {"epochs": 3, "batch_size": 32, "learning_rate": 5e-5}
    assert config.searched() == ["weight_decay", "warmup_ratio"]
    grid = TuneConfig(grid_points=3).grid()
    assert grid["learning_rate"] == [1e-5, 3.16e-5, 1e-4]
    assert grid["epochs"] == [2, 3, 4, 5] and grid["batch_size"] == [16, 32, 64]
    assert grid["weight_decay"] == [0.0, 0.05, 0.1]
    assert train_command(TrainingConfig(output_dir=Path("r"))) == (
        "newsclf train --model bert-base-uncased --output-dir r --learning-rate 2e-05 "
        "--batch-size 64 --epochs 4 --weight-decay 0.01 --warmup-ratio 0.06"
    )


def test_without_optuna_the_message_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    config = TuneConfig(training=TrainingConfig(output_dir=tmp_path / "run"))
    with pytest.raises(InputError, match=re.escape("pip install 'newsclf[tune]'")):
        tune(config)
    assert not (tmp_path / "run").exists()


def test_cli_tune_on_a_bad_file_exits_like_train(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": \n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["tune", "--train-file", str(bad), "--output-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "bad.jsonl, line 2: not valid JSON" in re.sub(r"\s+", " ", result.output)
    assert not (tmp_path / "r").exists()
