"""newsclf distill: the layer choice, a student that starts from the teacher's chosen layers,
the soft-target loss by its definition, a real tiny distillation (the loss falls, test rows
never train, transfer texts labelled once and reused on --resume, metrics and model card,
an export with parity), an ensemble teacher, and the command line's errors."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, TrainerCallback
from typer.testing import CliRunner

import newsclf.distillation.distiller
import newsclf.training.trainer
from newsclf.cli import app
from newsclf.distillation import (
    DistillConfig,
    Distiller,
    distill,
    distillation_loss,
    find_teacher,
    make_student,
    spread_layers,
)
from newsclf.errors import InputError
from newsclf.io import clean_text
from newsclf.training import NewsTrainer, load_training_data
from tests.conftest import (
    SAMPLE_DIR,
    sample_rows,
    save_tiny_bert,
    tiny_training_config,
    write_csv,
)

MARKER = "testonlyrow"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 4-layer tiny BERT (the conftest one has 2)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert4"), layers=4)


@pytest.fixture(scope="module")
def marked_test_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample test rows, each carrying a word no training row has."""
    folder = tmp_path_factory.mktemp("marked")
    return write_csv(
        folder / "test.csv",
        ["label", "title", "description"],
        [
            [row["label"], f"{MARKER}{i} {row['title']}", row["description"]]
            for i, row in enumerate(sample_rows("test.csv"))
        ],
    )


@pytest.fixture(scope="module")
def teacher4(
    tiny_bert4_dir: Path, marked_test_file: Path, tmp_path_factory: pytest.TempPathFactory
):  # type: ignore[no-untyped-def]
    """A finished 4-layer teacher run on the sample data, tested on the marked test rows."""
    run_dir = tmp_path_factory.mktemp("teachers") / "teacher4"
    config = tiny_training_config(tiny_bert4_dir, run_dir, test_file=marked_test_file)
    return NewsTrainer(config).train()


def _transfer_file(folder: Path, marked_test_file: Path) -> tuple[Path, list[str]]:
    """Unlabelled texts: training titles paired with other rows' descriptions (new texts of
    the same topics), plus two test rows and one validation row, which must be left out."""
    rows = sample_rows("train.csv")
    mixed = [[rows[i]["title"], rows[(i + 7) % len(rows)]["description"]] for i in range(40)]
    with open(marked_test_file, newline="", encoding="utf-8") as handle:
        test_rows = list(csv.DictReader(handle))[:2]
    held_out = [[r["title"], r["description"]] for r in test_rows]
    data = load_training_data(
        tiny_training_config(Path("unused"), folder / "unused", test_file=None)
    )
    title, _, description = data.validation.texts[0].partition(" ")
    held_out.append([title, description])
    path = write_csv(folder / "transfer.csv", ["title", "description"], mixed + held_out)
    return path, [clean_text(f"{a} {b}") for a, b in mixed]


class _Losses(TrainerCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class _InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


class _RemoveAfterFirstStep(TrainerCallback):
    """Deletes a folder after the first step: as the Trainer does with a resumed checkpoint
    once newer ones exist (save_total_limit)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _TeacherCalls:
    """Records the texts of every teacher forward (predict_logits on the teacher's model)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[list[str]] = []
        real = newsclf.distillation.distiller.predict_logits

        def recording(model: Any, tokenizer: Any, texts: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(model.config, "num_hidden_layers", None) == 4:  # the teacher
                self.texts.append(list(texts))
            return real(model, tokenizer, texts, *args, **kwargs)

        monkeypatch.setattr(newsclf.distillation.distiller, "predict_logits", recording)

    def count(self, text: str) -> int:
        return sum(call.count(text) for call in self.texts)


@pytest.fixture(scope="module")
def student(teacher4, marked_test_file: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A 2-layer student of the 4-layer teacher, with transfer texts; what it trained on, its
    logged losses and its teacher's forwards recorded."""
    monkeypatch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("student")
    transfer, transfer_texts = _transfer_file(folder, marked_test_file)
    trained_texts: list[list[str]] = []
    real_tokenized = newsclf.training.trainer.TokenizedTexts.__init__

    def recording_tokenized(self: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        trained_texts.append(list(data.texts))
        real_tokenized(self, data, *args, **kwargs)

    monkeypatch.setattr(newsclf.training.trainer.TokenizedTexts, "__init__", recording_tokenized)
    calls = _TeacherCalls(monkeypatch)
    losses = _Losses()
    config = DistillConfig(
        teacher=teacher4.run_dir,
        layers=2,
        output_dir=folder / "run",
        transfer_file=transfer,
        epochs=6,
        learning_rate=1e-3,
    )
    try:
        result = distill(config, callbacks=[losses])
    finally:
        monkeypatch.undo()
    return {
        "result": result,
        "trained_texts": trained_texts,
        "transfer_texts": transfer_texts,
        "losses": losses.losses,
        "calls": calls,
    }


# -- the layer choice and the student's start -----------------------------------------------


def test_layers_are_spread_over_the_depth_first_and_last_kept() -> None:
    assert spread_layers(6, 4) == [0, 1, 3, 5]
    assert spread_layers(6, 3) == [0, 2, 5]
    assert spread_layers(6, 2) == [0, 5]
    assert spread_layers(6, 1) == [5]
    assert spread_layers(4, 2) == [0, 3] and spread_layers(4, 3) == [0, 1, 3]
    assert spread_layers(12, 6) == [0, 2, 4, 6, 8, 11]
    with pytest.raises(InputError, match=r"the teacher has 6 encoder layers.*1 to 5"):
        spread_layers(6, 6)
    with pytest.raises(InputError, match="at least 1"):
        spread_layers(6, 0)
    with pytest.raises(InputError, match="at least 1"):
        DistillConfig(teacher=Path("t"), layers=0)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_student_starts_from_the_chosen_teacher_layers(teacher4, layers: int) -> None:  # type: ignore[no-untyped-def]
    teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher4.best_dir))
    kept = spread_layers(4, layers)
    student = make_student(teacher, kept)
    assert student.config.num_hidden_layers == layers == len(student.bert.encoder.layer)
    t, s = teacher.state_dict(), student.state_dict()
    for j, i in enumerate(kept):
        prefix_s, prefix_t = f"bert.encoder.layer.{j}.", f"bert.encoder.layer.{i}."
        names = [k for k in s if k.startswith(prefix_s)]
        assert names
        for name in names:
            assert torch.equal(s[name], t[prefix_t + name[len(prefix_s) :]]), name
    for name in s:
        if not name.startswith("bert.encoder.layer."):  # embeddings, pooler, head
            assert torch.equal(s[name], t[name]), name
    assert any(k.startswith("bert.embeddings.") for k in s)
    assert "classifier.weight" in s and "bert.pooler.dense.weight" in s
    # A teacher's layer not kept is nowhere in the student.
    dropped = next(i for i in range(4) if i not in kept)
    weight = t[f"bert.encoder.layer.{dropped}.attention.self.query.weight"]
    assert not any(torch.equal(weight, v) for v in s.values() if v.shape == weight.shape)


# -- the loss ---------------------------------------------------------------------------------


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def test_soft_target_loss_equals_its_definition_on_a_hand_made_batch() -> None:
    student = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-2.0, 3.0, 1.0]]
    teacher = [[3.0, -2.0, 0.0], [1.0, 0.0, -1.0], [0.0, 2.5, 2.0]]
    labels = [0, -100, 1]  # the middle row is a transfer text: no label
    t, w = 3.0, 0.7

    kl_rows = []
    for s_row, t_row in zip(student, teacher, strict=True):
        p, q = _softmax(t_row, t), _softmax(s_row, t)
        kl_rows.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)))
    soft = t * t * sum(kl_rows) / len(kl_rows)
    ce = [
        -math.log(_softmax(s_row, 1.0)[label])
        for s_row, label in zip(student, labels, strict=True)
        if label != -100
    ]
    expected = w * soft + (1 - w) * sum(ce) / len(ce)

    got = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, w
    )
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # Soft weight 1: the T^2-scaled KL alone; 0: the labelled rows' cross-entropy alone.
    only_soft = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, 1.0
    )
    assert float(only_soft) == pytest.approx(soft, rel=1e-5)
    only_hard = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, 0.0
    )
    assert float(only_hard) == pytest.approx(sum(ce) / len(ce), rel=1e-5)
    # A batch of transfer texts only: the soft term alone, and it has gradients.
    logits = torch.tensor(student, requires_grad=True)
    unlabelled = distillation_loss(logits, torch.tensor(teacher), torch.tensor([-100] * 3), t, w)
    unlabelled.backward()
    assert float(unlabelled.detach()) == pytest.approx(w * soft, rel=1e-5)
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    # Equal distributions: no soft loss.
    same = distillation_loss(
        torch.tensor(teacher), torch.tensor(teacher), torch.tensor(labels), t, 1.0
    )
    assert abs(float(same)) < 1e-6


# -- a real tiny distillation -----------------------------------------------------------------


def test_student_run_folder_metrics_and_card(student, teacher4) -> None:  # type: ignore[no-untyped-def]
    result = student["result"]
    run = result.run_dir
    for name in (
        "metrics.json",
        "distill_config.json",
        "parity_sample.jsonl",
        "validation.jsonl",
        "calibration_sample.jsonl",
        "README.md",
        "teacher_logits.safetensors",
    ):
        assert (run / name).is_file(), name
    assert not (run / "train_config.json").exists()  # train --resume cannot take a student
    assert not (run / "checkpoints").exists()
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == "distill"
    d = metrics["distill"]
    assert d["teacher"] == str(teacher4.run_dir.absolute())
    assert (d["teacher_kind"], d["teacher_layers"], d["layers"]) == ("train", 4, 2)
    assert d["kept_layers"] == [0, 3]
    assert d["transfer_rows"] == 40 and d["transfer_rows_left_out"] == 3
    assert 0 <= d["agreement"]["validation"] <= 1 and 0 <= d["agreement"]["test"] <= 1
    assert d["test"]["rows"] == 100 and d["validation"]["rows"] == 32
    assert d["test"]["student_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert d["test"]["teacher_accuracy"] == pytest.approx(teacher4.test.accuracy)
    assert metrics["test"]["accuracy"] > 0.5  # the student learned the topics
    assert metrics["data"]["validation_rows"] == 32 and metrics["best"]["value"] is not None

    card = (run / "README.md").read_text()
    assert card.startswith(
        f"# newsclf distilled student: 2 layers of {teacher4.run_dir.absolute()}"
    )
    assert "A distilled student of" in card and "with 2 encoder layers" in card
    assert "layers 0, 3" in card and "agrees with the teacher" in card


def test_the_loss_falls(student) -> None:  # type: ignore[no-untyped-def]
    losses = student["losses"]
    assert len(losses) >= 3
    assert losses[-1] < losses[0]


def test_test_rows_never_reach_training_and_the_split_is_the_teachers(student, teacher4) -> None:  # type: ignore[no-untyped-def]
    trained = student["trained_texts"]
    assert len(trained) == 2  # train (+ transfer) and validation
    for texts in trained:
        assert texts and not any(MARKER in text for text in texts)
    teacher_split = load_training_data(teacher4.config)
    train_texts, validation_texts = trained
    labelled = len(teacher_split.train)
    assert train_texts[:labelled] == teacher_split.train.texts  # the teacher's training rows
    assert train_texts[labelled:] == student["transfer_texts"]  # then the transfer texts
    assert validation_texts == teacher_split.validation.texts
    # The teacher labelled each training row and transfer text once, before training; it saw
    # the test rows once, after training, for the report.
    calls = student["calls"]
    assert all(calls.count(text) == 1 for text in student["transfer_texts"])
    test_calls = [c for c in calls.texts if any(MARKER in text for text in c)]
    assert len(test_calls) == 1 and all(MARKER in text for text in test_calls[0])
    assert calls.texts.index(test_calls[0]) == len(calls.texts) - 1


def test_the_student_exports_with_parity_and_classifies(student, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from newsclf.export import ExportConfig, export_onnx
    from newsclf.inference import Classifier, ClassifierConfig

    result = student["result"]
    exported = export_onnx(result.run_dir, tmp_path / "onnx", ExportConfig(variants=["optimized"]))
    assert all(v.passed for v in exported.variants)
    clf = Classifier(exported.output_dir, ClassifierConfig(device="cpu", variant="fp32"))
    rows = sample_rows("test.csv")
    texts = [f"{r['title']} {r['description']}" for r in rows]
    predictions = clf.predict(texts)
    accuracy = np.mean([p == r["label"] for p, r in zip(predictions.labels, rows, strict=True)])
    assert accuracy > 0.5


def test_transfer_texts_are_labelled_once_and_reused_on_resume(
    teacher4, marked_test_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    transfer, transfer_texts = _transfer_file(tmp_path, marked_test_file)
    calls = _TeacherCalls(monkeypatch)
    run_dir = tmp_path / "run"
    # The teacher as typed, relative to the working folder; --resume reads it back absolute.
    monkeypatch.chdir(teacher4.run_dir.parent)
    config = DistillConfig(
        teacher=Path(teacher4.run_dir.name),
        layers=3,
        output_dir=run_dir,
        transfer_file=transfer,
        epochs=2,
        eval_steps=4,
        patience=10,
        max_train_samples=64,
    )
    with pytest.raises(KeyboardInterrupt):
        distill(config, callbacks=[_InterruptAfterFirstSave()])
    cache = run_dir / "teacher_logits.safetensors"
    assert cache.is_file() and (run_dir / "checkpoints" / "checkpoint-4").is_dir()
    assert not (run_dir / "best").exists()
    first_mtime = cache.stat().st_mtime_ns
    assert all(calls.count(text) == 1 for text in transfer_texts)

    with pytest.raises(InputError, match="--resume"):
        distill(DistillConfig(output_dir=tmp_path / "elsewhere", resume=True))
    plans = []
    monkeypatch.chdir(tmp_path)  # resumed from another folder
    rotated = _RemoveAfterFirstStep(run_dir / "checkpoints" / "checkpoint-4")
    result = distill(
        DistillConfig(output_dir=run_dir, resume=True), callbacks=[rotated], on_start=plans.append
    )
    assert plans[0].teacher_logits_cached and plans[0].training.resumed_from.endswith(
        "checkpoint-4"
    )
    assert cache.stat().st_mtime_ns == first_mtime  # not rewritten
    assert all(calls.count(text) == 1 for text in transfer_texts)  # not labelled again
    assert result.train_rows == 64 and result.layers == 3 and result.kept_layers == [0, 1, 3]
    assert result.training.training.resumed_from.endswith("checkpoint-4")
    assert result.training.training.samples_per_s > 0  # the resumed checkpoint was gone
    assert (run_dir / "best" / "config.json").is_file()
    with pytest.raises(InputError, match="already finished"):
        distill(DistillConfig(output_dir=run_dir, resume=True))
    with pytest.raises(InputError, match="already holds a finished run"):
        Distiller(DistillConfig(teacher=teacher4.run_dir, layers=2, output_dir=run_dir))


def test_an_interruption_before_the_first_checkpoint_resumes_from_the_cache(
    teacher4, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    class _InterruptAtOnce(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

    calls = _TeacherCalls(monkeypatch)
    run_dir = tmp_path / "run"
    config = DistillConfig(
        teacher=teacher4.run_dir, layers=1, output_dir=run_dir, epochs=1, max_train_samples=32
    )
    with pytest.raises(KeyboardInterrupt):
        distill(config, callbacks=[_InterruptAtOnce()])
    assert len(calls.texts) == 2  # train and validation (no transfer texts): labelled once
    result = distill(DistillConfig(output_dir=run_dir, resume=True))
    assert len(calls.texts) == 3  # + the test rows, for the report; the cache was reused
    assert result.training.training.resumed_from is None and result.kept_layers == [3]


def test_an_ensemble_teacher_gives_a_student_of_member_0(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from newsclf.combine import make_soup

    runs = []
    for seed in (1, 2):
        config = tiny_training_config(
            tiny_bert_dir, tmp_path / f"run{seed}", train_seed=seed, epochs=2
        )
        runs.append(NewsTrainer(config).train().run_dir)
    ensemble = make_soup(
        runs, tmp_path / "ensemble", ensemble=True, test_file=SAMPLE_DIR / "test.csv"
    )
    teacher = find_teacher(ensemble.run_dir)
    assert teacher.kind == "ensemble" and teacher.depth == 2
    assert teacher.training.train_file == (SAMPLE_DIR / "train.csv").absolute()
    result = distill(
        DistillConfig(teacher=ensemble.run_dir, layers=1, output_dir=tmp_path / "s", epochs=2)
    )
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["distill"]["teacher_kind"] == "ensemble"
    # The report's teacher is the ensemble itself (its averaged probabilities).
    assert metrics["distill"]["test"]["teacher_accuracy"] == pytest.approx(ensemble.test.accuracy)
    # The student's embeddings are member 0's.
    member0 = AutoModelForSequenceClassification.from_pretrained(str(runs[0] / "best"))
    saved = json.loads((result.run_dir / "best" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 1
    assert member0.config.num_hidden_layers == 2
    assert "(ensemble, 2 layers)" in (result.run_dir / "README.md").read_text()


# -- the command line ---------------------------------------------------------------------------


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, ["distill", *args], env={"COLUMNS": "200"})
    result.text = re.sub(r"\s+", " ", result.output)
    return result


def test_cli_refuses_a_teacher_that_is_not_a_run(
    tiny_bert_dir: Path, tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "out")
    missing = _run("--teacher", str(tmp_path / "nope"), "--layers", "1", "--output-dir", out)
    assert missing.exit_code == 3 and "no such folder" in missing.text
    model = _run("--teacher", str(tiny_bert_dir), "--layers", "1", "--output-dir", out)
    assert model.exit_code == 3 and "a Hugging Face model folder, not a newsclf run" in model.text
    export = _run("--teacher", str(tiny_export.output_dir), "--layers", "1", "--output-dir", out)
    assert export.exit_code == 3 and "an ONNX export (newsclf export), not a run" in export.text
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "train_config.json").write_text("{}")
    half = _run("--teacher", str(unfinished), "--layers", "1", "--output-dir", out)
    assert half.exit_code == 3 and "an unfinished run" in half.text
    runs = _run("--teacher", str(tiny_export.output_dir.parent.parent), "--layers", "1")
    assert runs.exit_code == 3 and "a folder of runs" in runs.text
    assert not (tmp_path / "out").exists()


def test_cli_refuses_k_not_below_the_depth_and_k_below_1(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "out")
    deep = _run("--teacher", str(tiny_run.run_dir), "--layers", "2", "--output-dir", out)
    assert deep.exit_code == 2
    assert "--layers 2: the teacher has 2 encoder layers; a student needs fewer (1)" in deep.text
    zero = _run("--teacher", str(tiny_run.run_dir), "--layers", "0", "--output-dir", out)
    assert zero.exit_code == 2 and "--layers must be at least 1" in zero.text
    none = _run("--teacher", str(tiny_run.run_dir), "--output-dir", out)
    assert none.exit_code == 2 and "Give --layers" in none.text
    resume = _run("--resume", "--output-dir", out, "--layers", "1")
    assert resume.exit_code == 2 and "--layers" in resume.text
    assert not (tmp_path / "out").exists()


def test_cli_distills_with_progress_and_a_summary(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "student"
    result = _run(
        "--teacher", str(tiny_run.run_dir), "--layers", "1", "--output-dir", str(out),
        "--epochs", "1", "--max-train-samples", "48", "--temperature", "4", "--soft-weight", "0.8",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "The teacher labels 80 rows (48 training, 0 transfer, 32 validation)" in result.text
    assert "a student of 1 layer (the teacher's 1)" in result.text
    assert "agrees with the teacher on" in result.text and "Confusion matrix" in result.text
    saved = DistillConfig.load(out / "distill_config.json")
    assert (saved.temperature, saved.soft_weight, saved.max_train_samples) == (4.0, 0.8, 48)
    assert saved.learning_rate is None  # the teacher's
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["learning_rate"] == tiny_run.config.learning_rate
    assert metrics["config"]["epochs"] == 1


def test_a_teacher_trained_on_a_text_column_with_a_title_description_test_file(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """The AG News layout: train.csv has `text`, test.csv `title` + `description`. The
    student reads both as its teacher's run did (the text columns found in each file)."""
    rows = sample_rows("train.csv")
    train = write_csv(
        tmp_path / "train.csv",
        ["text", "label"],
        [[f"{r['title']} {r['description']}", r["label"]] for r in rows],
    )
    config = tiny_training_config(
        tiny_bert_dir, tmp_path / "teacher", train_file=train, epochs=1, max_train_samples=64
    )
    teacher = NewsTrainer(config).train()
    transfer = write_csv(tmp_path / "transfer.csv", ["text"], [["stocks rally on rate hopes"]])
    result = distill(
        DistillConfig(
            teacher=teacher.run_dir,
            layers=1,
            output_dir=tmp_path / "student",
            transfer_file=transfer,
            epochs=1,
            max_train_samples=64,
        )
    )
    assert result.test is not None and result.test.rows == 100
    assert result.transfer_rows == 1 and result.training.data.text_columns == ["text"]
