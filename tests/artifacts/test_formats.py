"""The run folder's layout, the newest run and export, and the one model-card writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from newsclf.artifacts import (
    RunFolder,
    latest_run,
    model_card,
    read_parity_sample,
    resolve_checkpoint,
    write_parity_sample,
)
from newsclf.errors import InputError, ModelError


def _finished(run: Path, mtime: float) -> Path:
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text("{}")
    os.utime(run / "best" / "config.json", (mtime, mtime))
    return run


def test_latest_run_is_the_newest_finished_run_or_ensemble(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No trained run"):
        latest_run(tmp_path)
    old = _finished(tmp_path / "a", 1_000)
    new = _finished(tmp_path / "b", 2_000)
    (tmp_path / "c").mkdir()  # unfinished: no best/
    assert latest_run(tmp_path) == new
    ensemble = tmp_path / "d"
    ensemble.mkdir()
    (ensemble / "ensemble.json").write_text('{"members": []}')
    os.utime(ensemble / "ensemble.json", (3_000, 3_000))
    assert latest_run(tmp_path) == ensemble
    os.utime(old / "best" / "config.json", (4_000, 4_000))
    assert latest_run(tmp_path) == old


def test_run_folder_paths_and_checkpoint_resolution(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    assert run.best_dir == tmp_path / "run" / "best"
    assert run.trial_dir(7) == tmp_path / "run" / "tune" / "trials" / "007"
    assert not run.is_finished
    _finished(run.path, 1)
    (run.metrics_file).write_text("{}")
    assert run.is_finished
    assert resolve_checkpoint(run.path) == (run.best_dir, run.path)
    assert resolve_checkpoint(run.best_dir) == (run.best_dir, run.path)
    with pytest.raises(ModelError, match="neither a newsclf run folder"):
        resolve_checkpoint(tmp_path)


def test_an_ensemble_names_its_members_or_says_which_are_missing(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.ensemble_file.write_text(json.dumps({"members": ["0", "1"]}))
    (run.members_dir / "0").mkdir(parents=True)
    (run.members_dir / "0" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"members missing: .*members/1"):
        run.member_dirs()
    run.ensemble_file.write_text("not json")
    with pytest.raises(ModelError, match="not a newsclf ensemble"):
        run.member_dirs()


def test_parity_sample_round_trips_and_names_a_bad_line(tmp_path: Path) -> None:
    write_parity_sample(tmp_path, ["a [b] text", "", "third"], [0, 1, 2], rows=3)
    assert read_parity_sample(tmp_path) == (["a [b] text", "third"], [0, 2])
    (tmp_path / "parity_sample.jsonl").write_text('{"text": "x", "label": 1}\n{"text": 2}\n')
    with pytest.raises(InputError, match="line 2"):
        read_parity_sample(tmp_path)


def _training_metrics(**changes: object) -> dict:
    metrics = {
        "kind": "train",
        "model": "embedded",
        "label_names": ["Business", "Sports"],
        "data": {
            "source": "train.csv",
            "validation_source": "5% of train.csv",
            "text_columns": ["title", "description"],
            "train_rows": 95,
            "validation_rows": 5,
        },
        "best": {"metric": "f1_macro", "value": 0.9134, "step": 12},
        "stopped_early": False,
        "training": {
            "wall_time_s": 3.2,
            "samples_per_s": 40.0,
            "device": "cpu",
            "precision": "bf16",
        },
        "test": {"accuracy": 0.91, "f1_macro": 0.905, "rows": 100},
        "config": {
            "learning_rate": 5e-5,
            "batch_size": 16,
            "grad_accum": 1,
            "eval_batch_size": 32,
            "epochs": 4.0,
            "weight_decay": 0.01,
            "warmup_ratio": 0.06,
            "patience": 2,
            "metric": "f1_macro",
            "seed": 42,
            "train_seed": None,
            "rdrop": 1.0,
            "preprocessing": {"clean": True, "max_length": 128},
        },
    }
    metrics.update(changes)
    return metrics


def test_one_model_card_for_training_runs_and_soups(tmp_path: Path) -> None:
    card = model_card(tmp_path / "run", _training_metrics())
    assert card.startswith("# newsclf run: embedded")
    assert "best validation f1_macro 91.34% at step 12" in card
    assert "R-Drop 1.0" in card and "test accuracy 91.00%" in card
    assert f"newsclf export --onnx --checkpoint {tmp_path / 'run'}" in card

    soup = {
        "kind": "soup",
        "soup": {
            "method": "ensemble",
            "metric": "accuracy",
            "validation_rows": 0,
            "soup_validation_score": None,
            "ensemble_validation_score": None,
            "ingredients": [
                {"run_dir": "models/a", "validation_score": None},
                {"run_dir": "models/b", "validation_score": None},
            ],
        },
        "test": None,
    }
    card = model_card(tmp_path / "soup", soup)
    assert card.startswith("# newsclf soup") and "ensemble of 2 runs" in card
    assert "models/b: n/a (no validation split)" in card
